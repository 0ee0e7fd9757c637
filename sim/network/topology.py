"""Cluster topologies as graphs.

A cluster is an undirected graph (``sim.network.graph.Graph``, networkx's
interface and order without importing networkx): device nodes (``kind:
device``, with a ``rank`` and the ``spec`` of the device), switch nodes
(``kind: switch``) and NIC nodes (``kind: nic``). Every edge is a full-duplex
link with ``bandwidth_bytes_per_s`` per direction, ``latency_s``, an
``efficiency`` (the fraction of line rate an application sees after protocol
overhead; effective capacity = bandwidth x efficiency) and a ``link_type``
naming its kind (``topologies/links/``: NVLink3, InfiniBand NDR, ...), which
carries the NCCL link class and per-protocol figures. Each direction of a
link is a separate shared resource in simulation.

Clusters come from YAML files (``topologies/clusters/*.yaml``, naming a
generator with options or listing devices, switches, NICs and links) or from
parametric names: ``ring:N``, ``fully_connected:N``, ``switch:N``,
``tree:N``, ``torus:AxB[xC]``, ``cluster:NODESxGPUS``, ``ideal:N``; at most
``MAX_DEVICES`` devices.

``cluster:NODESxGPUS`` is a DGX-style machine room: per node an NVSwitch
joining its GPUs, one NIC per GPU, and the NICs in a two-level leaf/spine fat
tree. With ``rails`` (the default) the fat tree is rail-optimised as DGX
SuperPODs are cabled: NIC i of every node plugs into the leaf switches of
rail i, so traffic between GPUs of the same local index never leaves its
rail's leaf. GPUs do not forward traffic: a route from a GPU to another
node's GPU goes through its own NIC (NCCL's PXN relays through a peer GPU
explicitly, in sim/network/nccl_schedules.py).
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from sim.errors import SpecError
from sim.network.graph import Graph, components
from sim.network.specs import (ExplicitCluster, GeneratorCluster, GeneratorOptions, LinkType,
                               NcclSystem, generic_link_type, link_type)
from sim.paths import yaml_catalog
from sim.schema import load_yaml, validate as validate_model

DEFAULT_BANDWIDTH = 100e9
DEFAULT_LATENCY = 1e-6
MAX_DEVICES = 32768        # a bound on parametric sizes: larger graphs take minutes just to build


@dataclass(frozen=True)
class Cluster:
    """A validated topology: the graph, the device nodes in rank order, and
    what NCCL's model needs beyond the links (``nccl``, ``link_types`` by name)."""

    name: str
    graph: Graph
    ranks: tuple[str, ...]
    source: str = ""
    node_of_rank: tuple[int, ...] = field(default=())
    ecmp: bool = False
    nccl: NcclSystem = field(default_factory=NcclSystem)
    link_types: Mapping[str, LinkType] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.ranks)

    def device_spec(self, rank: int) -> str:
        return self.graph.nodes[self.ranks[rank]].get("spec", "")

    def machine(self, rank: int) -> int:
        """Index of the machine (node) holding ``rank``; 0 for single-level topologies."""
        return self.node_of_rank[rank] if self.node_of_rank else 0

    def link_type(self, a: str, b: str) -> LinkType:
        """The kind of the link between nodes ``a`` and ``b`` (generic NVLink-class if unnamed)."""
        name = self.graph.edges[a, b].get("link_type", "")
        found = self.link_types.get(name)
        return found if found is not None else generic_link_type()


def _link(graph: Graph, a: str, b: str, bandwidth: float, latency: float,
          efficiency: float = 1.0, kind: str = "") -> None:
    graph.add_edge(a, b, bandwidth_bytes_per_s=float(bandwidth), latency_s=float(latency),
                   efficiency=float(efficiency), link_type=kind)


def _devices(graph: Graph, names: list[str], spec: str) -> None:
    for rank, name in enumerate(names):
        graph.add_node(name, kind="device", rank=rank, spec=spec)


def _check_size(kind: str, count: int) -> None:
    if count > MAX_DEVICES:
        raise SpecError(f"topology {kind}: {count} devices; at most {MAX_DEVICES} are supported")


def _numbered_devices(n: int, spec: str, kind: str = "") -> tuple[Graph, list[str]]:
    """A graph holding devices dev0 .. dev{n-1} (ranks in that order) and no links yet."""
    _check_size(f"{kind}:{n}", n)
    graph = Graph()
    names = [f"dev{i}" for i in range(n)]
    _devices(graph, names, spec)
    return graph, names


def ring(n: int, bandwidth: float = DEFAULT_BANDWIDTH, latency: float = DEFAULT_LATENCY,
         spec: str = "", efficiency: float = 1.0) -> Cluster:
    """``n`` devices in a bidirectional ring."""
    graph, names = _numbered_devices(n, spec, "ring")
    for i in range(n):
        if n > 1 and not graph.has_edge(names[i], names[(i + 1) % n]):
            _link(graph, names[i], names[(i + 1) % n], bandwidth, latency, efficiency)
    return Cluster(f"ring:{n}", graph, tuple(names))


def fully_connected(n: int, bandwidth: float = DEFAULT_BANDWIDTH, latency: float = DEFAULT_LATENCY,
                    spec: str = "", efficiency: float = 1.0) -> Cluster:
    """``n`` devices with a direct link between every pair."""
    if n * (n - 1) // 2 > 4 * MAX_DEVICES:
        raise SpecError(f"topology fully_connected:{n}: {n * (n - 1) // 2} links; at most "
                        f"{4 * MAX_DEVICES} are supported")
    graph, names = _numbered_devices(n, spec, "fully_connected")
    for i in range(n):
        for j in range(i + 1, n):
            _link(graph, names[i], names[j], bandwidth, latency, efficiency)
    return Cluster(f"fully_connected:{n}", graph, tuple(names))


def switch(n: int, bandwidth: float = DEFAULT_BANDWIDTH, latency: float = DEFAULT_LATENCY,
           spec: str = "", efficiency: float = 1.0) -> Cluster:
    """``n`` devices on one crossbar switch (such as an NVSwitch): one link each.
    ``latency`` is per link, so device to device costs two links."""
    graph, names = _numbered_devices(n, spec, "switch")
    graph.add_node("switch", kind="switch")
    for name in names:
        _link(graph, name, "switch", bandwidth, latency, efficiency)
    return Cluster(f"switch:{n}", graph, tuple(names))


def tree(n: int, bandwidth: float = DEFAULT_BANDWIDTH, latency: float = DEFAULT_LATENCY,
         spec: str = "", efficiency: float = 1.0, arity: int = 2) -> Cluster:
    """``n`` devices as leaves of an ``arity``-ary tree of switches (arity >= 2):
    each leaf switch holds ``arity`` devices and every switch level above joins
    ``arity`` switches, up to one root. Every link has the same bandwidth, so
    upper links are oversubscribed, as in a plain tree."""
    if arity < 2:
        raise SpecError(f"topology tree:{n}: arity must be at least 2, got {arity}")
    graph, names = _numbered_devices(n, spec, "tree")
    level = 0
    children = names
    while len(children) > 1 or level == 0:
        parents = []
        for index in range(math.ceil(len(children) / arity)):
            parent = f"sw{level}.{index}"
            graph.add_node(parent, kind="switch")
            for child in children[index * arity:(index + 1) * arity]:
                _link(graph, child, parent, bandwidth, latency, efficiency)
            parents.append(parent)
        children = parents
        level += 1
    return Cluster(f"tree:{n}", graph, tuple(names))


def torus(dims: tuple[int, ...], bandwidth: float = DEFAULT_BANDWIDTH,
          latency: float = DEFAULT_LATENCY, spec: str = "", efficiency: float = 1.0) -> Cluster:
    """A 2D or 3D torus (TPU-style): each device links to its +-1 neighbour in
    every dimension, with wraparound. Ranks are in row-major order."""
    if len(dims) not in (2, 3) or any(d < 1 for d in dims):
        raise SpecError(f"torus: expected 2 or 3 positive dimensions, got {dims}")
    _check_size("torus:" + "x".join(map(str, dims)), math.prod(dims))
    graph = Graph()
    coords = list(_coords(dims))
    names = ["chip" + ".".join(map(str, c)) for c in coords]
    _devices(graph, names, spec)
    index = {c: name for c, name in zip(coords, names)}
    for c in coords:
        for axis, size in enumerate(dims):
            if size == 1:
                continue
            neighbour = list(c)
            neighbour[axis] = (c[axis] + 1) % size
            other = index[tuple(neighbour)]
            if not graph.has_edge(index[c], other):
                _link(graph, index[c], other, bandwidth, latency, efficiency)
    return Cluster("torus:" + "x".join(map(str, dims)), graph, tuple(names))


def _coords(dims: tuple[int, ...]):
    if not dims:
        yield ()
        return
    for head in range(dims[0]):
        for tail in _coords(dims[1:]):
            yield (head,) + tail


# Link kinds of `cluster:` when the options name no link type: the figures this generator
# always had, with NCCL's own per-protocol hop latencies for the class.
def _default_kind(name: str, nccl_class: str, bandwidth: float, latency: float) -> LinkType:
    base = generic_link_type(nccl_class)
    return LinkType(name=name, nccl_class=nccl_class, bandwidth=bandwidth, latency=latency,
                    protocols=base.protocols, source=base.source)


def multi_node(nodes: int, gpus: int, nvlink: LinkType | None = None, nic: LinkType | None = None,
               nvlink_bandwidth: float | None = None, nvlink_latency: float | None = None,
               nvlink_efficiency: float | None = None, nic_bandwidth: float | None = None,
               nic_latency: float | None = None, nic_efficiency: float | None = None,
               nics_per_leaf: int = 32, rails: bool = True, spec: str = "",
               nccl: NcclSystem | None = None) -> Cluster:
    """``nodes`` machines of ``gpus`` GPUs: inside a machine every GPU links to
    the machine's NVSwitch (link type ``nvlink``); every GPU has its own NIC
    (link type ``nic``, also used for the GPU-NIC PCIe hop), and the NICs hang
    off a two-level leaf/spine fat tree. A leaf takes up to ``nics_per_leaf``
    NICs and has one uplink to each spine, as many spines as NICs on the
    fullest leaf, so the tree is non-blocking. With ``rails`` the leaves are
    per rail: NIC g of node n plugs into leaf ``g * L + n // nics_per_leaf``
    (L leaves per rail); without, NICs fill leaves in rank order. Explicit
    ``nvlink_*`` / ``nic_*`` figures override the link types'. Routing uses
    ECMP, as fat trees do (``ecmp: false`` for one fixed path per pair)."""
    _check_size(f"cluster:{nodes}x{gpus}", nodes * gpus)
    nvlink = nvlink or _default_kind("nvlink", "nvlink", 300e9, 1e-6)
    nic = nic or _default_kind("nic", "net", 25e9, 2e-6)
    nv = (nvlink_bandwidth or nvlink.bandwidth, nvlink.latency if nvlink_latency is None else nvlink_latency,
          nvlink_efficiency or nvlink.efficiency, nvlink.name)
    net = (nic_bandwidth or nic.bandwidth, nic.latency if nic_latency is None else nic_latency,
           nic_efficiency or nic.efficiency, nic.name)
    graph = Graph(devices_forward=False)
    names = [f"node{n}/gpu{g}" for n in range(nodes) for g in range(gpus)]
    _devices(graph, names, spec)
    leaf_of = _leaf_assignment(nodes, gpus, nics_per_leaf, rails)
    leaves = max(leaf_of.values()) + 1
    fullest = max(sum(1 for v in leaf_of.values() if v == leaf) for leaf in range(leaves))
    spines = fullest if leaves > 1 else 0
    for s in range(spines):
        graph.add_node(f"spine{s}", kind="switch")
    for leaf in range(leaves):
        graph.add_node(f"leaf{leaf}", kind="switch")
        for s in range(spines):
            _link(graph, f"leaf{leaf}", f"spine{s}", *net)
    for n in range(nodes):
        nvswitch = f"node{n}/nvswitch"
        graph.add_node(nvswitch, kind="switch", machine=n)
        for g in range(gpus):
            gpu, nic_name = f"node{n}/gpu{g}", f"node{n}/nic{g}"
            graph.nodes[gpu].update(machine=n, local=g, port=_port(n, g, gpus, nics_per_leaf, rails))
            _link(graph, gpu, nvswitch, *nv)
            graph.add_node(nic_name, kind="nic", machine=n, rail=g)
            _link(graph, gpu, nic_name, *net)
            _link(graph, nic_name, f"leaf{leaf_of[(n, g)]}", *net)
    node_of_rank = tuple(r // gpus for r in range(nodes * gpus))
    return Cluster(f"cluster:{nodes}x{gpus}", graph, tuple(names), node_of_rank=node_of_rank,
                   ecmp=True, nccl=nccl or NcclSystem(), link_types={nvlink.name: nvlink, nic.name: nic})


def _port(node: int, gpu: int, gpus: int, nics_per_leaf: int, rails: bool) -> int:
    """The index of a GPU's NIC among the NICs of its leaf switch (routing spreads by it)."""
    return node % nics_per_leaf if rails else (node * gpus + gpu) % nics_per_leaf


def _leaf_assignment(nodes: int, gpus: int, nics_per_leaf: int, rails: bool) -> dict[tuple[int, int], int]:
    if rails:
        per_rail = math.ceil(nodes / nics_per_leaf)
        return {(n, g): g * per_rail + n // nics_per_leaf for n in range(nodes) for g in range(gpus)}
    return {(n, g): (n * gpus + g) // nics_per_leaf for n in range(nodes) for g in range(gpus)}


def ideal(n: int, spec: str = "") -> Cluster:
    """``n`` devices on one switch with unbounded bandwidth and zero latency:
    communication takes no time (for closed-form checks of schedules)."""
    graph, names = _numbered_devices(n, spec, "ideal")
    graph.add_node("switch", kind="switch")
    for name in names:
        _link(graph, name, "switch", math.inf, 0.0)
    return Cluster(f"ideal:{n}", graph, tuple(names))


_PARAMETRIC = re.compile(r"^(ring|fully_connected|switch|tree|torus|cluster|ideal):([0-9x]+)$")
_OPTIONS_OF = {
    "ideal": set(),
    "cluster": {"nvlink", "nic", "nvlink_bandwidth", "nvlink_latency", "nvlink_efficiency",
                "nic_bandwidth", "nic_latency", "nic_efficiency", "nics_per_leaf", "rails",
                "bandwidth_bytes_per_s", "latency_s", "efficiency", "nccl"},
    "tree": {"bandwidth_bytes_per_s", "latency_s", "efficiency", "arity", "nccl"},
}
_SINGLE_LEVEL = {"bandwidth_bytes_per_s", "latency_s", "efficiency", "nccl"}


def from_name(text: str, options: Mapping[str, Any] | None = None, where: str = "") -> Cluster:
    """Build a parametric topology from ``kind:SIZE`` and keyword options
    (``bandwidth_bytes_per_s``, ``latency_s``, ``efficiency``, ``device``,
    ``ecmp``, ``nccl``; for ``tree`` the ``arity``; for ``cluster`` the link
    types ``nvlink`` and ``nic``, their ``nvlink_*`` / ``nic_*`` figures,
    ``nics_per_leaf`` and ``rails``)."""
    where = where or f"topology {text!r}"
    match = _PARAMETRIC.match(text.strip())
    if not match:
        raise SpecError(f"topology {text!r}: expected a YAML file or one of "
                        f"ring:N, fully_connected:N, switch:N, tree:N, torus:AxB[xC], cluster:NODESxGPUS, ideal:N")
    kind, size = match.groups()
    if len(size) > 12:
        raise SpecError(f"topology {text!r}: size too large; at most {MAX_DEVICES} devices")
    try:
        numbers = tuple(int(x) for x in size.split("x"))
    except ValueError:
        raise SpecError(f"topology {text!r}: bad size {size!r}") from None
    if any(x < 1 for x in numbers):
        raise SpecError(f"topology {text!r}: sizes must be positive")
    try:
        opts = validate_model(GeneratorOptions, dict(options or {}), "", SpecError)
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None
    given = set(opts.model_fields_set) - {"device", "ecmp"}
    allowed = _OPTIONS_OF.get(kind, _SINGLE_LEVEL)
    if given - allowed:
        raise SpecError(f"{where}: option {sorted(given - allowed)[0]!r} does not apply to {kind}:N; "
                        f"expected some of {sorted(allowed | {'device', 'ecmp'})}")
    cluster = _build(kind, numbers, opts, text, where)
    if opts.ecmp is not None:
        cluster = dataclasses.replace(cluster, ecmp=opts.ecmp)
    if opts.nccl is not None:
        cluster = dataclasses.replace(cluster, nccl=opts.nccl)
    return validate(cluster, where)


def _build(kind: str, numbers: tuple[int, ...], opts: GeneratorOptions, text: str, where: str) -> Cluster:
    spec = opts.device
    common = {name: value for name, value in (("bandwidth", opts.bandwidth_bytes_per_s),
                                              ("latency", opts.latency_s),
                                              ("efficiency", opts.efficiency)) if value is not None}
    if kind == "ideal":
        if len(numbers) != 1:
            raise SpecError(f"topology {text!r}: expected ideal:N")
        return ideal(numbers[0], spec=spec)
    if kind == "torus":
        return torus(numbers, spec=spec, **common)
    if kind == "cluster":
        if len(numbers) != 2:
            raise SpecError(f"topology {text!r}: expected cluster:NODESxGPUS")
        kinds = {"nvlink": link_type(opts.nvlink, f"{where}: nvlink") if opts.nvlink else None,
                 "nic": link_type(opts.nic, f"{where}: nic") if opts.nic else None}
        figures = {key: getattr(opts, key) for key in ("nvlink_bandwidth", "nvlink_latency",
                                                       "nvlink_efficiency", "nic_bandwidth",
                                                       "nic_latency", "nic_efficiency")}
        for key, value in common.items():      # one figure for both kinds of link
            figures[f"nvlink_{key}"] = figures[f"nic_{key}"] = value
        return multi_node(numbers[0], numbers[1], spec=spec, nics_per_leaf=opts.nics_per_leaf or 32,
                          rails=True if opts.rails is None else opts.rails, **kinds, **figures)
    if len(numbers) != 1:
        raise SpecError(f"topology {text!r}: expected {kind}:N")
    if kind == "tree" and opts.arity is not None:
        common["arity"] = opts.arity
    builder = {"ring": ring, "fully_connected": fully_connected, "switch": switch, "tree": tree}[kind]
    return builder(numbers[0], spec=spec, **common)


def validate(cluster: Cluster, where: str) -> Cluster:
    """Reject disconnected graphs, bad links and unknown device specs."""
    graph = cluster.graph
    if not cluster.ranks:
        raise SpecError(f"{where}: the topology has no devices")
    parts = components(graph) if graph.number_of_nodes() > 1 else []
    if len(parts) > 1:
        parts = sorted(sorted(c)[0] for c in parts)
        raise SpecError(f"{where}: the topology is disconnected ({len(parts)} parts, e.g. "
                        f"{parts[0]!r} cannot reach {parts[1]!r})")
    catalog = yaml_catalog("devices")
    for name in cluster.ranks:
        spec = graph.nodes[name].get("spec")
        if spec and spec not in catalog and not Path(spec).is_file():
            raise SpecError(f"{where}: device {name!r} names spec {spec!r}, which is neither a "
                            f"file nor one of the catalog names {sorted(catalog)}")
    return cluster


def from_yaml(path: Path, overrides: Mapping[str, Any] | None = None) -> Cluster:
    """Load a cluster file: either ``generator: kind:SIZE`` with options, or
    explicit ``devices``, ``switches``, ``nics`` and ``links``."""
    raw = load_yaml(path, SpecError)
    where = str(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected a mapping of cluster keys")
    raw = {**raw, **(overrides or {})}
    if "generator" in raw:
        spec = validate_model(GeneratorCluster, raw, where, SpecError)
        options = spec.model_dump(exclude_unset=True, exclude={"generator", "name", "source", "note"})
        if "nccl" in options:
            options["nccl"] = spec.nccl
        cluster = from_name(spec.generator, options, where)
        return dataclasses.replace(cluster, name=spec.name or path.stem, source=spec.source)
    spec = validate_model(ExplicitCluster, raw, where, SpecError)
    return validate(_explicit(spec, where, path.stem), where)


def _explicit(spec: ExplicitCluster, where: str, stem: str) -> Cluster:
    graph = Graph(devices_forward=spec.devices_forward)
    names, nodes = [], []
    for i, item in enumerate(spec.devices):
        entry = {"name": item} if isinstance(item, str) else item.model_dump()
        if entry["name"] in graph:
            raise SpecError(f"{where}: devices[{i}]: {entry['name']!r} is listed twice")
        names.append(entry["name"])
        nodes.append(entry.get("node", 0))
        graph.add_node(entry["name"], kind="device", rank=i, spec=entry.get("device") or spec.device,
                       machine=entry.get("node", 0))
    for kind, members in (("switch", spec.switches), ("nic", spec.nics)):
        for name in members:
            if name in graph:
                raise SpecError(f"{where}: {kind} {name!r} is also named elsewhere")
            graph.add_node(name, kind=kind)
    kinds: dict[str, LinkType] = {}
    for i, link in enumerate(spec.links):
        for end in (link.a, link.b):
            if end not in graph:
                raise SpecError(f"{where}: links[{i}]: {end!r} is not a device, switch or NIC")
        if link.type is not None and link.type not in kinds:
            kinds[link.type] = link_type(link.type, f"{where}: links[{i}].type")
        _link(graph, link.a, link.b, link.bandwidth_bytes_per_s, link.latency_s, link.efficiency,
              kinds[link.type].name if link.type else "")
        if link.type and kinds[link.type].name != link.type:
            kinds[kinds[link.type].name] = kinds[link.type]
    node_of_rank = tuple(nodes) if any(nodes) else ()
    return Cluster(spec.name or stem, graph, tuple(names), spec.source, node_of_rank=node_of_rank,
                   ecmp=spec.ecmp, nccl=spec.nccl or NcclSystem(), link_types=kinds)


def cluster_catalog() -> dict[str, Path]:
    return yaml_catalog("clusters")


def load_topology(text: str, base: Path | None = None, options: Mapping[str, Any] | None = None
                  ) -> Cluster:
    """A topology from a parametric name, a YAML path, or a catalog name."""
    if _PARAMETRIC.match(text.strip()):
        return from_name(text, options)
    candidates = ([base / text] if base is not None else []) + [Path(text)]
    path = next((p for p in candidates if p.is_file()), None) or cluster_catalog().get(text)
    if path is None:
        raise SpecError(f"topology {text!r} not found: not a parametric name, not a file, and not "
                        f"one of the catalog names {sorted(cluster_catalog())}")
    return from_yaml(path, options)


def with_links(cluster: Cluster, bandwidth: float | None = None, latency: float | None = None
               ) -> Cluster:
    """A copy of ``cluster`` with every link's bandwidth and/or latency replaced."""
    if bandwidth is None and latency is None:
        return cluster
    if bandwidth is not None and not (math.isfinite(bandwidth) and bandwidth > 0):
        raise SpecError(f"--link-bandwidth: expected a positive number, got {bandwidth!r}")
    if latency is not None and not (math.isfinite(latency) and latency >= 0):
        raise SpecError(f"--link-latency: expected a non-negative number, got {latency!r}")
    graph = cluster.graph.copy()
    for _, _, data in graph.edges(data=True):
        if bandwidth is not None:
            data["bandwidth_bytes_per_s"] = float(bandwidth)
        if latency is not None:
            data["latency_s"] = float(latency)
    return dataclasses.replace(cluster, graph=graph)
