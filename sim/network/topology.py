"""Cluster topologies as networkx graphs.

A cluster is an undirected ``networkx.Graph``: device nodes (``kind:
device``, with a ``rank`` and the ``spec`` of the device), switch nodes
(``kind: switch``) and NIC nodes (``kind: nic``). Every edge is a full-duplex
link with ``bandwidth_bytes_per_s`` per direction, ``latency_s`` and an
``efficiency`` (the fraction of line rate an application sees after protocol
overhead; effective capacity = bandwidth x efficiency). Each direction of a
link is a separate shared resource in simulation.

Clusters come from YAML files (``topologies/clusters/*.yaml``, explicit or
naming a generator) or from parametric names: ``ring:N``,
``fully_connected:N``, ``switch:N``, ``tree:N``, ``torus:AxB[xC]``,
``cluster:NODESxGPUS``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import networkx as nx

from sim.errors import SpecError
from sim.hardware.specs import device_catalog, read_yaml, topologies_dir

DEFAULT_BANDWIDTH = 100e9
DEFAULT_LATENCY = 1e-6


@dataclass(frozen=True)
class Cluster:
    """A validated topology: the graph and the device nodes in rank order."""

    name: str
    graph: nx.Graph
    ranks: tuple[str, ...]
    source: str = ""
    node_of_rank: tuple[int, ...] = field(default=())
    ecmp: bool = False

    @property
    def size(self) -> int:
        return len(self.ranks)

    def device_spec(self, rank: int) -> str:
        return self.graph.nodes[self.ranks[rank]].get("spec", "")

    def machine(self, rank: int) -> int:
        """Index of the machine (node) holding ``rank``; 0 for single-level topologies."""
        return self.node_of_rank[rank] if self.node_of_rank else 0


def _link(graph: nx.Graph, a: str, b: str, bandwidth: float, latency: float,
          efficiency: float = 1.0) -> None:
    graph.add_edge(a, b, bandwidth_bytes_per_s=float(bandwidth), latency_s=float(latency),
                   efficiency=float(efficiency))


def _devices(graph: nx.Graph, names: list[str], spec: str) -> None:
    for rank, name in enumerate(names):
        graph.add_node(name, kind="device", rank=rank, spec=spec)


def _numbered_devices(n: int, spec: str) -> tuple[nx.Graph, list[str]]:
    """A graph holding devices dev0 .. dev{n-1} (ranks in that order) and no links yet."""
    graph = nx.Graph()
    names = [f"dev{i}" for i in range(n)]
    _devices(graph, names, spec)
    return graph, names


def ring(n: int, bandwidth: float = DEFAULT_BANDWIDTH, latency: float = DEFAULT_LATENCY,
         spec: str = "", efficiency: float = 1.0) -> Cluster:
    """``n`` devices in a bidirectional ring."""
    graph, names = _numbered_devices(n, spec)
    for i in range(n):
        if n > 1 and not graph.has_edge(names[i], names[(i + 1) % n]):
            _link(graph, names[i], names[(i + 1) % n], bandwidth, latency, efficiency)
    return Cluster(f"ring:{n}", graph, tuple(names))


def fully_connected(n: int, bandwidth: float = DEFAULT_BANDWIDTH, latency: float = DEFAULT_LATENCY,
                    spec: str = "", efficiency: float = 1.0) -> Cluster:
    """``n`` devices with a direct link between every pair."""
    graph, names = _numbered_devices(n, spec)
    for i in range(n):
        for j in range(i + 1, n):
            _link(graph, names[i], names[j], bandwidth, latency, efficiency)
    return Cluster(f"fully_connected:{n}", graph, tuple(names))


def switch(n: int, bandwidth: float = DEFAULT_BANDWIDTH, latency: float = DEFAULT_LATENCY,
           spec: str = "", efficiency: float = 1.0) -> Cluster:
    """``n`` devices on one crossbar switch (such as an NVSwitch): one link each.
    ``latency`` is per link, so device to device costs two links."""
    graph, names = _numbered_devices(n, spec)
    graph.add_node("switch", kind="switch")
    for name in names:
        _link(graph, name, "switch", bandwidth, latency, efficiency)
    return Cluster(f"switch:{n}", graph, tuple(names))


def tree(n: int, bandwidth: float = DEFAULT_BANDWIDTH, latency: float = DEFAULT_LATENCY,
         spec: str = "", efficiency: float = 1.0, arity: int = 2) -> Cluster:
    """``n`` devices as leaves of an ``arity``-ary tree of switches: each leaf
    switch holds ``arity`` devices and every switch level above joins
    ``arity`` switches, up to one root. Every link has the same bandwidth, so
    upper links are oversubscribed, as in a plain tree."""
    graph, names = _numbered_devices(n, spec)
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
    graph = nx.Graph()
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


def multi_node(nodes: int, gpus: int, nvlink_bandwidth: float = 300e9,
               nvlink_latency: float = 1e-6, nvlink_efficiency: float = 1.0,
               nic_bandwidth: float = 25e9, nic_latency: float = 2e-6, nic_efficiency: float = 1.0,
               nics_per_leaf: int = 32, spec: str = "") -> Cluster:
    """``nodes`` machines of ``gpus`` GPUs: inside a machine every GPU links to
    the machine's NVSwitch; every GPU also has its own NIC, and the NICs hang
    off a two-level leaf/spine fat tree. Each leaf takes ``nics_per_leaf``
    NICs and has as many uplinks, one to each spine, so the tree is
    non-blocking (full bisection bandwidth). Routing uses ECMP by default, as
    fat trees do (``ecmp: false`` for one fixed path per pair)."""
    graph = nx.Graph()
    names = [f"node{n}/gpu{g}" for n in range(nodes) for g in range(gpus)]
    _devices(graph, names, spec)
    total = nodes * gpus
    leaves = math.ceil(total / nics_per_leaf)
    spines = nics_per_leaf if leaves > 1 else 0
    for s in range(spines):
        graph.add_node(f"spine{s}", kind="switch")
    for leaf in range(leaves):
        graph.add_node(f"leaf{leaf}", kind="switch")
        for s in range(spines):
            _link(graph, f"leaf{leaf}", f"spine{s}", nic_bandwidth, nic_latency, nic_efficiency)
    for n in range(nodes):
        nvswitch = f"node{n}/nvswitch"
        graph.add_node(nvswitch, kind="switch")
        for g in range(gpus):
            gpu, nic = f"node{n}/gpu{g}", f"node{n}/nic{g}"
            _link(graph, gpu, nvswitch, nvlink_bandwidth, nvlink_latency, nvlink_efficiency)
            graph.add_node(nic, kind="nic")
            _link(graph, gpu, nic, nic_bandwidth, nic_latency, nic_efficiency)
            _link(graph, nic, f"leaf{(n * gpus + g) // nics_per_leaf}", nic_bandwidth, nic_latency,
                  nic_efficiency)
    node_of_rank = tuple(r // gpus for r in range(total))
    return Cluster(f"cluster:{nodes}x{gpus}", graph, tuple(names), node_of_rank=node_of_rank,
                   ecmp=True)


def ideal(n: int, spec: str = "") -> Cluster:
    """``n`` devices on one switch with unbounded bandwidth and zero latency:
    communication takes no time (for closed-form checks of schedules)."""
    graph, names = _numbered_devices(n, spec)
    graph.add_node("switch", kind="switch")
    for name in names:
        _link(graph, name, "switch", math.inf, 0.0)
    return Cluster(f"ideal:{n}", graph, tuple(names))


_PARAMETRIC = re.compile(r"^(ring|fully_connected|switch|tree|torus|cluster|ideal):([0-9x]+)$")


def from_name(text: str, options: Mapping[str, Any] | None = None) -> Cluster:
    """Build a parametric topology from ``kind:SIZE`` and keyword options
    (``bandwidth_bytes_per_s``, ``latency_s``, ``efficiency``, ``device``, and
    for ``cluster`` the nvlink_/nic_ options and ``nics_per_leaf``)."""
    match = _PARAMETRIC.match(text.strip())
    if not match:
        raise SpecError(f"topology {text!r}: expected a YAML file or one of "
                        f"ring:N, fully_connected:N, switch:N, tree:N, torus:AxB[xC], cluster:NODESxGPUS, ideal:N")
    kind, size = match.groups()
    options = dict(options or {})
    spec = str(options.pop("device", ""))
    ecmp = options.pop("ecmp", None)
    try:
        numbers = tuple(int(x) for x in size.split("x"))
    except ValueError:
        raise SpecError(f"topology {text!r}: bad size {size!r}") from None
    if any(x < 1 for x in numbers):
        raise SpecError(f"topology {text!r}: sizes must be positive")
    common = {}
    for key, name in (("bandwidth_bytes_per_s", "bandwidth"), ("latency_s", "latency"),
                      ("efficiency", "efficiency")):
        if key in options:
            common[name] = _positive(options.pop(key), f"{text}: {key}", allow_zero=key == "latency_s")
    if kind == "ideal":
        if len(numbers) != 1 or common:
            raise SpecError(f"topology {text!r}: expected ideal:N with no link options")
        cluster = ideal(numbers[0], spec=spec)
    elif kind == "torus":
        cluster = torus(numbers, spec=spec, **common)
    elif kind == "cluster":
        if len(numbers) != 2:
            raise SpecError(f"topology {text!r}: expected cluster:NODESxGPUS")
        kwargs = {}
        for key in ("nvlink_bandwidth", "nvlink_latency", "nvlink_efficiency", "nic_bandwidth",
                    "nic_latency", "nic_efficiency", "nics_per_leaf"):
            if key in options:
                value = _positive(options.pop(key), f"{text}: {key}", allow_zero=key.endswith("latency"))
                kwargs[key] = int(value) if key == "nics_per_leaf" else value
        if "bandwidth" in common:
            kwargs["nvlink_bandwidth"] = kwargs["nic_bandwidth"] = common["bandwidth"]
        if "latency" in common:
            kwargs["nvlink_latency"] = kwargs["nic_latency"] = common["latency"]
        if "efficiency" in common:
            kwargs["nvlink_efficiency"] = kwargs["nic_efficiency"] = common["efficiency"]
        cluster = multi_node(numbers[0], numbers[1], spec=spec, **kwargs)
    else:
        if len(numbers) != 1:
            raise SpecError(f"topology {text!r}: expected {kind}:N")
        builder = {"ring": ring, "fully_connected": fully_connected, "switch": switch, "tree": tree}[kind]
        if kind == "tree" and "arity" in options:
            common["arity"] = int(_positive(options.pop("arity"), f"{text}: arity"))
        cluster = builder(numbers[0], spec=spec, **common)
    if options:
        raise SpecError(f"topology {text!r}: unknown option {sorted(options)[0]!r}")
    if ecmp is not None:
        cluster = dataclasses.replace(cluster, ecmp=bool(ecmp))
    return validate(cluster, text)


def _positive(value: Any, where: str, allow_zero: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise SpecError(f"{where}: expected a {'non-negative' if allow_zero else 'positive'} "
                        f"number, got {value!r}")
    return number


def validate(cluster: Cluster, where: str) -> Cluster:
    """Reject disconnected graphs, bad links and unknown device specs."""
    graph = cluster.graph
    if not cluster.ranks:
        raise SpecError(f"{where}: the topology has no devices")
    if graph.number_of_nodes() > 1 and not nx.is_connected(graph):
        parts = sorted((sorted(c)[0] for c in nx.connected_components(graph)))
        raise SpecError(f"{where}: the topology is disconnected ({len(parts)} parts, e.g. "
                        f"{parts[0]!r} cannot reach {parts[1]!r})")
    for a, b, data in graph.edges(data=True):
        for key, allow_zero in (("bandwidth_bytes_per_s", False), ("latency_s", True),
                                ("efficiency", False)):
            value = data.get(key)
            if key == "bandwidth_bytes_per_s" and value == math.inf:
                continue
            if not isinstance(value, (int, float)) or value != value or value < 0 or (
                    value == 0 and not allow_zero):
                raise SpecError(f"{where}: link {a} - {b}: {key} must be "
                                f"{'non-negative' if allow_zero else 'positive'}, got {value!r}")
        if data["efficiency"] > 1:
            raise SpecError(f"{where}: link {a} - {b}: efficiency must be at most 1, got {data['efficiency']}")
    catalog = device_catalog()
    for name in cluster.ranks:
        spec = graph.nodes[name].get("spec")
        if spec and spec not in catalog and not Path(spec).is_file():
            raise SpecError(f"{where}: device {name!r} names spec {spec!r}, which is neither a "
                            f"file nor one of the catalog names {sorted(catalog)}")
    return cluster


def from_yaml(path: Path, overrides: Mapping[str, Any] | None = None) -> Cluster:
    """Load a cluster file: either ``generator: kind:SIZE`` with options, or
    explicit ``devices``, ``switches`` and ``links``."""
    raw = read_yaml(path) or {}
    where = str(path)
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected a mapping")
    raw = {**raw, **(overrides or {})}
    source = str(raw.get("source", ""))
    if "generator" in raw:
        options = {k: v for k, v in raw.items() if k not in ("generator", "name", "source", "note")}
        cluster = from_name(str(raw["generator"]), options)
        return dataclasses.replace(cluster, name=str(raw.get("name", path.stem)), source=source)
    unknown = sorted(set(raw) - {"name", "source", "note", "device", "devices", "switches", "links",
                                 "ecmp"})
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r}; expected generator, or devices, "
                        f"switches and links")
    graph = nx.Graph()
    default_spec = str(raw.get("device", ""))
    devices = raw.get("devices") or []
    if not isinstance(devices, list) or not devices:
        raise SpecError(f"{where}: devices: expected a non-empty list")
    names = []
    for i, item in enumerate(devices):
        item = {"name": item} if isinstance(item, str) else item
        if not isinstance(item, Mapping) or "name" not in item:
            raise SpecError(f"{where}: devices[{i}]: expected a name or a mapping with 'name'")
        names.append(str(item["name"]))
        graph.add_node(str(item["name"]), kind="device", rank=i, spec=str(item.get("device", default_spec)))
    for name in raw.get("switches") or []:
        graph.add_node(str(name), kind="switch")
    for i, link in enumerate(raw.get("links") or []):
        if not isinstance(link, Mapping) or "a" not in link or "b" not in link:
            raise SpecError(f"{where}: links[{i}]: expected a mapping with 'a' and 'b'")
        for end in (link["a"], link["b"]):
            if str(end) not in graph:
                raise SpecError(f"{where}: links[{i}]: {end!r} is not a device or switch")
        bandwidth = link.get("bandwidth_bytes_per_s")
        if bandwidth is None:
            raise SpecError(f"{where}: links[{i}]: missing bandwidth_bytes_per_s")
        _link(graph, str(link["a"]), str(link["b"]),
              _positive(bandwidth, f"{where}: links[{i}] ({link['a']} - {link['b']}): bandwidth_bytes_per_s"),
              _positive(link.get("latency_s", 0.0), f"{where}: links[{i}]: latency_s", allow_zero=True),
              _positive(link.get("efficiency", 1.0), f"{where}: links[{i}]: efficiency"))
    return validate(Cluster(str(raw.get("name", path.stem)), graph, tuple(names), source,
                            ecmp=bool(raw.get("ecmp", False))), where)


def cluster_catalog() -> dict[str, Path]:
    return {p.stem: p for p in sorted((topologies_dir() / "clusters").glob("*.yaml"))}


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
    if bandwidth is not None:
        _positive(bandwidth, "--link-bandwidth")
    if latency is not None:
        _positive(latency, "--link-latency", allow_zero=True)
    graph = cluster.graph.copy()
    for _, _, data in graph.edges(data=True):
        if bandwidth is not None:
            data["bandwidth_bytes_per_s"] = float(bandwidth)
        if latency is not None:
            data["latency_s"] = float(latency)
    return dataclasses.replace(cluster, graph=graph)
