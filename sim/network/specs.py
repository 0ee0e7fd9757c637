"""Validated specs of the network: link types, cluster files, NCCL's tuning constants.

Every file goes through ``sim.schema`` (``load_yaml`` then ``validate``), so a
bad key or value is one ``SpecError`` line naming the file and the key.

- Link types (``topologies/links/NAME.yaml``, ``LinkType``): a kind of link
  (NVLink3, NVLink4, InfiniBand HDR / NDR) with its line rate, the fraction
  of it applications see, a wire latency for the alpha-beta algorithms, the
  NCCL link class it belongs to (``nvlink``, ``pci`` or ``net``) and, per NCCL
  protocol, the hop latency and bandwidth factor the NCCL execution model
  uses on it, and optionally the ``energy`` per byte carried over one link of
  the type (``sim.energy.model.LinkEnergySpec``). Figures and their sources
  are in each file.
- Cluster files (``topologies/clusters/NAME.yaml``): a generator with its
  options (``GeneratorOptions``) or explicit devices, switches, NICs and links
  (``ExplicitCluster``), plus an optional ``nccl`` section (``NcclSystem``:
  GPU architecture, host CPU, NVLink SHARP, in-network reduction).
- NCCL's tuning constants (``topologies/nccl/tuning.yaml``, ``NcclTuning``).
"""

from __future__ import annotations

import os

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

from pydantic import Field

from sim.energy.model import LinkEnergySpec
from sim.errors import SpecError
from sim.paths import topologies_dir, yaml_catalog
from sim.schema import (Bool, Bytes, Float, Fraction, Int, NonNegativeFloat, NonNegativeInt, PositiveFloat,
                        PositiveInt, Rate, Seconds, StrictModel, load_yaml, validate)

PROTOCOLS = ("LL", "LL128", "Simple")
LINK_CLASSES = ("nvlink", "pci", "net")
ARCHS = ("volta", "ampere", "hopper", "blackwell")
Protocol = Literal["LL", "LL128", "Simple"]


class ProtocolOnLink(StrictModel):
    """How one NCCL protocol runs on a link type."""

    hop_latency: Seconds
    bandwidth_factor: Fraction = 1.0


class LinkType(StrictModel):
    """A kind of link; ``bandwidth`` is per direction at line rate."""

    name: str
    source: str = ""
    nccl_class: Literal["nvlink", "pci", "net"]
    bandwidth: Rate
    efficiency: Fraction = 1.0
    latency: Seconds = 0.0
    protocols: dict[Protocol, ProtocolOnLink]
    energy: Optional[LinkEnergySpec] = None     # pJ per byte carried (sim.energy)

    def protocol(self, name: str) -> ProtocolOnLink:
        return self.protocols[name]


class NcclSystem(StrictModel):
    """What NCCL's tuner needs to know about the machines beyond the links:
    ``arch`` selects its per-architecture tables, ``cpu`` its multi-node LL cap
    and network overhead, ``nvls`` whether the NVSwitches reduce (NVLink SHARP,
    third-generation NVSwitch: H100 and later), ``collnet`` whether the
    network switches reduce (InfiniBand SHARP), ``host_call_overhead`` the host
    time of one NCCL call from one CPU thread (launch and enqueue), which
    bounds a benchmark that drives several GPUs from one thread (nccl-tests
    ``-g N``)."""

    arch: Literal["volta", "ampere", "hopper", "blackwell"] = "ampere"
    cpu: Literal["intel", "amd"] = "intel"
    nvls: Bool = False
    collnet: Bool = False
    host_call_overhead: Seconds = 0.0


class GeneratorOptions(StrictModel):
    """Options of a parametric topology (``kind:SIZE``); which apply depends on the kind."""

    device: str = ""
    ecmp: Optional[Bool] = None
    bandwidth_bytes_per_s: Optional[Rate] = None
    latency_s: Optional[Seconds] = None
    efficiency: Optional[Fraction] = None
    arity: Optional[Annotated[Int, Field(ge=2, le=1024)]] = None
    nvlink: Optional[str] = None
    nic: Optional[str] = None
    nvlink_bandwidth: Optional[Rate] = None
    nvlink_latency: Optional[Seconds] = None
    nvlink_efficiency: Optional[Fraction] = None
    nic_bandwidth: Optional[Rate] = None
    nic_latency: Optional[Seconds] = None
    nic_efficiency: Optional[Fraction] = None
    nics_per_leaf: Optional[PositiveInt] = None
    rails: Optional[Bool] = None
    nccl: Optional[NcclSystem] = None


class GeneratorCluster(GeneratorOptions):
    """A cluster file naming a generator."""

    name: str = ""
    source: str = ""
    note: str = ""
    generator: str


class DeviceEntry(StrictModel):
    name: str
    device: str = ""
    node: NonNegativeInt = 0


class LinkEntry(StrictModel):
    a: str
    b: str
    bandwidth_bytes_per_s: Rate
    latency_s: Seconds = 0.0
    efficiency: Fraction = 1.0
    type: Optional[str] = None


class ExplicitCluster(StrictModel):
    """A cluster file listing its devices, switches, NICs and links. ``node``
    of a device names its machine (for NCCL's intra- / inter-node split);
    ``devices_forward: false`` keeps routes from passing through devices."""

    name: str = ""
    source: str = ""
    note: str = ""
    device: str = ""
    devices: list[Union[str, DeviceEntry]] = Field(min_length=1)
    switches: list[str] = []
    nics: list[str] = []
    links: list[LinkEntry] = []
    ecmp: Bool = False
    devices_forward: Bool = True
    nccl: Optional[NcclSystem] = None


# ---------------------------------------------------------------- link types


def link_catalog() -> dict[str, Path]:
    return yaml_catalog("links")


@lru_cache(maxsize=None)
def _load_link_type(path: str) -> LinkType:
    spec = validate(LinkType, load_yaml(path, SpecError), path, SpecError)
    missing = [p for p in PROTOCOLS if p not in spec.protocols]
    if missing:
        raise SpecError(f"{path}: protocols: missing {missing[0]!r}; expected LL, LL128 and Simple")
    return spec


def link_type(name: str, where: str) -> LinkType:
    """A link type by catalog name or file path; ``where`` names the referring key."""
    path = Path(name)
    if not path.is_file():
        path = link_catalog().get(name)
        if path is None:
            raise SpecError(f"{where}: link type {name!r} is neither a file nor one of the catalog "
                            f"names {sorted(link_catalog())}")
    return _load_link_type(str(path))


def generic_link_type(nccl_class: str = "nvlink") -> LinkType:
    """The link type of links that name none: NCCL's own ring hop latencies
    for the class (hwLat[class][Ring], tuning.yaml) at full payload rate."""
    tuning = nccl_tuning()
    hops = tuning.hop_latency[nccl_class]["ring"]
    return LinkType(name=f"generic-{nccl_class}", nccl_class=nccl_class, bandwidth=1.0,
                    protocols={p: ProtocolOnLink(hop_latency=hops[p]) for p in PROTOCOLS},
                    source="NCCL tuning model hop latencies (topologies/nccl/tuning.yaml)")


# ---------------------------------------------------------------- NCCL tuning constants


class ArchTables(StrictModel):
    ring_ll128_per_channel_gb_per_s: list[NonNegativeFloat] = Field(min_length=3, max_length=3)
    tree_ll128_per_channel_gb_per_s: list[NonNegativeFloat] = Field(min_length=3, max_length=3)
    tree_per_channel_gb_per_s: list[NonNegativeFloat] = Field(min_length=3, max_length=3)
    nvls_tree_per_channel_gb_per_s: list[NonNegativeFloat] = Field(min_length=3, max_length=3)
    nvls_efficiency: Float
    speeds: Literal["pre_sm90", "sm90"]


class SpeedArrays(StrictModel):
    intra: list[Float] = Field(min_length=1)
    inter: list[Float] = Field(min_length=1)


class NcclTuning(StrictModel):
    """NCCL's tuning constants (topologies/nccl/tuning.yaml, cited there)."""

    name: str = ""
    source: str = ""
    base_latency: dict[str, dict[Protocol, Seconds]]
    hop_latency: dict[Literal["nvlink", "pci", "net"], dict[str, dict[Protocol, Seconds]]]
    net_overhead: dict[Literal["intel", "amd"], Seconds]
    collnet_arity_latency: Seconds
    ll_max_bw_single_node_gb_per_s: dict[Literal["volta", "ampere", "hopper", "blackwell"], PositiveFloat]
    ll_max_bw_multi_node_gb_per_s: dict[Literal["intel", "amd"], list[PositiveFloat]]
    arch: dict[Literal["volta", "ampere", "hopper", "blackwell"], ArchTables]
    speeds: dict[Literal["pre_sm90", "sm90"], SpeedArrays]
    search_max_channels: PositiveInt
    duplicate_above: Float
    tree_correction: dict[Protocol, list[Float]]
    ring_plateau_factor: Float
    steps: PositiveInt
    buffer: dict[Protocol, Bytes]
    payload_fraction: dict[Protocol, Fraction]
    ring_chunk_steps: PositiveInt
    threads: dict[Protocol, PositiveInt]
    thread_threshold: dict[Protocol, PositiveInt]
    nvls_channels: dict[str, PositiveInt]
    nvls_chunk: Bytes
    p2p_chunk: dict[Literal["nvlink", "pci", "net"], Bytes]


def nccl_tuning_path() -> Path:
    return topologies_dir() / "nccl" / "tuning.yaml"


@lru_cache(maxsize=None)
def _load_tuning(path: str) -> NcclTuning:
    return validate(NcclTuning, load_yaml(path, SpecError), path, SpecError)


def nccl_tuning() -> NcclTuning:
    return _tuning_under(os.environ.get("ACCSIM_TOPOLOGIES"))


@lru_cache(maxsize=None)
def _tuning_under(topologies: str | None) -> NcclTuning:
    """The tuning file's contents while ``$ACCSIM_TOPOLOGIES`` is ``topologies``
    (its path looked up once: 17 us a call, and building a generated run's
    schedules asks thousands of times)."""
    return _load_tuning(str(nccl_tuning_path()))
