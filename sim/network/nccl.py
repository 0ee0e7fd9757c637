"""NCCL's cost structure: what its tuner chooses, and how the choice executes.

Two halves, kept apart on purpose:

1. **The tuner** (``tuner_time``, ``choose``): NCCL's own model, with its own
   constants (topologies/nccl/tuning.yaml, from NVIDIA/nccl src/tuning/*.cc),
   used only to make the choice NCCL makes. Per algorithm a and protocol p:

       time = latency(a, p) + bytes / algbw(a, p)
       latency = baseLat[a][p] + hop counts x hwLat[link class][a][p]
       algbw  = channels x per-channel bandwidth, capped per protocol
                (LL: llMaxBw, x 0.5 of the links; LL128: x 0.92 and per-channel
                caps; Tree x 0.92 and its caps), times n / nsteps for rings,
                0.5 for trees,

   with the tree correction factor by size and the x1.4 multi-node ring
   plateau term; the tuner returns the fastest enabled (a, p). Channels and
   per-channel bandwidth come from NCCL's topology search (``search``): the
   highest speed of the architecture's speed array whose rings fill the
   GPU's NVLink bandwidth (or its NICs across nodes), split into twice the
   channels at half the speed above 25 GB/s (not on Hopper below 50 GB/s
   with more than 4 channels); execution runs twice the search channels.
   NVLS bandwidth is taken from the data flow of in-switch reduction (each
   GPU moves (n + 1) / n of the buffer each way for all-reduce) times NCCL's
   nvlsEfficiency, because the NVLS search result is not public.

2. **The execution** (``execution``), simulated on the links by the schedules
   of sim/network/nccl_schedules.py: a collective runs ``channels`` channels
   (after NCCL's reduction of channels for small sizes, ncclTuningGetChannels),
   each moving chunks of the protocol's step size (Simple: NCCL_BUFFSIZE /
   NCCL_STEPS x 4 steps = 2 MiB for rings; LL: 32 KiB of payload; LL128:
   576,000 B); a ring channel's thread block performs a loop's 2(n - 1) chunk
   steps one after the other, each costing the hop latency of the link it
   crosses plus chunk / per-channel rate, so an uncontended ring all-reduce
   takes

       baseLat + loops x 2(n - 1) x (hop latency + chunk / channel rate),

   i.e. NCCL's latency + bytes / busBw once per loop. Per-channel rates are
   NCCL's (search bandwidth / 2, times the protocol's payload fraction: LL
   carries 8 data bytes per 16-byte line, LL128 120 per 128) times the link
   type's calibrated ``bandwidth_factor``; hop latencies are the link types'
   (topologies/links/, calibrated per protocol against nccl-tests). Transfers
   carry wire bytes (payload / payload fraction), so an LL collective loads a
   link twice as much per byte delivered, and every step's rate is also
   capped by what the channels can drive (``Step.max_rate``), on top of the
   max-min sharing of the links with all other traffic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from sim.network.collectives import CollectiveError
from sim.network.specs import PROTOCOLS, LinkType, NcclTuning, generic_link_type, nccl_tuning
from sim.network.topology import Cluster

# NCCL's algorithm order (tie-break of the tuner) and the names accsim gives them.
NCCL_FAMILY = ("nccl_tree", "nccl_ring", "collnet_direct", "collnet_chain", "nvls", "nvls_tree")
P2P_ALGORITHMS = ("nccl_p2p", "nccl_hierarchical")
TUNED_OPS = ("allreduce", "allgather", "reduce_scatter", "broadcast", "reduce")
_TABLE_NAME = {"nccl_tree": "tree", "nccl_ring": "ring", "collnet_direct": "collnet_direct",
               "collnet_chain": "collnet_chain", "nvls": "nvls", "nvls_tree": "nvls_tree"}
GB = 1e9


@dataclass(frozen=True)
class Geometry:
    """A communicator as NCCL's tuner sees it.

    ``nodes`` holds, per machine, the group's ranks in the order NCCL's rings
    visit them (by local GPU index); ``rails`` is the number of NICs every
    machine offers the group (one per GPU in DGX machines); bandwidths are
    effective bytes/s per direction: ``intra_bw`` a GPU's NVLink (or PCI)
    total, ``nic_bw`` one NIC."""

    ranks: tuple[int, ...]
    nodes: tuple[tuple[int, ...], ...]
    arch: str
    cpu: str
    intra_class: str
    intra_type: LinkType
    net_type: LinkType
    intra_bw: float
    nic_bw: float
    rails: int
    nvswitch: tuple[str | None, ...]
    nvls: bool
    collnet: bool

    @property
    def n(self) -> int:
        return len(self.ranks)

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    @property
    def ppn(self) -> int:
        return max(len(members) for members in self.nodes)

    @property
    def node_index(self) -> int:
        """NCCL's bucket of per-node-count tables: 0 one node, 1 two, 2 more."""
        return min(self.n_nodes, 3) - 1


@dataclass(frozen=True)
class Search:
    """NCCL's search result: channels, and per-channel GB/s inside and across nodes;
    ``split``: the channels were doubled at half speed."""

    channels: int
    bw_intra: float
    bw_inter: float
    split: bool = False

    @property
    def exec_channels(self) -> int:
        return 2 * self.channels


@dataclass(frozen=True)
class Execution:
    """How one (algorithm, protocol) runs: ``channels`` channels, each moving
    ``chunk_bytes`` of payload per step at up to ``channel_rate`` bytes/s of
    payload; ``base_s`` once, then per step the hop latencies."""

    algorithm: str
    protocol: str
    channels: int
    channel_rate: float
    chunk_bytes: float
    base_s: float
    hop_intra_s: float
    hop_net_s: float
    payload_fraction: float


# ---------------------------------------------------------------- geometry


@dataclass(frozen=True)
class RankLinks:
    """What ``geometry`` reads of one rank's links, in the graph's neighbour
    order: its machine and local GPU index, the total capacity of its links
    to anything but a NIC (``intra_total``) and the type of the first
    (``intra_type``; None without), its NICs, the least capacity of a NIC
    link or of the links on from those NICs (``nic_bw``; inf without), the
    type of its first NIC link (``net_type``; None without) and the switches
    it links to."""

    machine: int
    local: int
    intra_total: float
    intra_type: LinkType | None
    nics: tuple[str, ...]
    nic_bw: float
    net_type: LinkType | None
    switches: frozenset[str]


def rank_links(cluster: Cluster, rank: int) -> RankLinks:
    """``RankLinks`` of ``rank`` on ``cluster``."""
    graph = cluster.graph
    name = cluster.ranks[rank]
    total, intra_type, nics, nic_bw, net_type, switches = 0.0, None, [], math.inf, None, set()
    for neighbour in graph[name]:
        capacity = _capacity(graph, name, neighbour)
        kind = graph.nodes[neighbour].get("kind")
        if kind == "switch":
            switches.add(neighbour)
        if kind == "nic":
            nics.append(neighbour)
            nic_bw = min(nic_bw, capacity, *(_capacity(graph, neighbour, far)
                                              for far in graph[neighbour] if far != name))
            net_type = net_type or cluster.link_type(name, neighbour)
        else:
            total += capacity
            intra_type = intra_type or cluster.link_type(name, neighbour)
    return RankLinks(cluster.machine(rank), graph.nodes[name].get("local", rank), total, intra_type,
                     tuple(nics), nic_bw, net_type, frozenset(switches))


def geometry(cluster: Cluster, ranks: Sequence[int], links: dict[int, RankLinks] | None = None) -> Geometry:
    """The communicator of ``ranks`` on ``cluster``: machines, links, NICs.

    ``links``: ``RankLinks`` by rank, filled as ranks are met (a caller that
    asks for many groups of one cluster passes the same dictionary: building
    GPT-3 175B's 2,240 groups read each rank's links anew, about 0.06 CPU s of
    its set-up). The group's figures combine the ranks' in group order: the
    least intra-node total and NIC figure, the first link types met, the
    NICs per machine, the switch every member of a machine links to."""
    if links is None:
        links = {}
    facts = []
    for rank in ranks:
        found = links.get(rank)
        if found is None:
            found = links[rank] = rank_links(cluster, rank)
        facts.append(found)
    by_node: dict[int, list[tuple[int, int]]] = {}
    for rank, fact in zip(ranks, facts):
        by_node.setdefault(fact.machine, []).append((fact.local, rank))
    nodes = tuple(tuple(rank for _, rank in sorted(members)) for _, members in sorted(by_node.items()))
    intra_bw, intra_type, nic_bw, net_type = math.inf, None, math.inf, None
    nics_per_node: dict[int, set[str]] = {}
    for fact in facts:
        if fact.nics:
            nics_per_node.setdefault(fact.machine, set()).update(fact.nics)
            nic_bw = min(nic_bw, fact.nic_bw)
            net_type = net_type or fact.net_type
        intra_type = intra_type or fact.intra_type
        total = fact.intra_total
        intra_bw = min(intra_bw, total) if total > 0 else intra_bw
    intra_type = intra_type or generic_link_type("nvlink")
    if intra_type.nccl_class == "net":
        intra_type = generic_link_type("pci")
    if len(nodes) > 1 and (net_type is None or len(nics_per_node) < len(nodes)):
        raise CollectiveError(f"NCCL algorithms across machines need a NIC on every machine of the "
                              f"group; {cluster.name} has none on some")
    rails = min((len(nics_per_node.get(m, ())) for m in by_node), default=1) if len(nodes) > 1 else 1
    nvswitch = tuple(_shared_switch(links, members) for members in nodes)
    ppn = max(len(m) for m in nodes)
    return Geometry(
        ranks=tuple(r for members in nodes for r in members), nodes=nodes, arch=cluster.nccl.arch,
        cpu=cluster.nccl.cpu, intra_class=intra_type.nccl_class, intra_type=intra_type,
        net_type=net_type or generic_link_type("net"),
        intra_bw=intra_bw if math.isfinite(intra_bw) else nic_bw,
        nic_bw=nic_bw if math.isfinite(nic_bw) else intra_bw, rails=max(rails, 1),
        nvswitch=nvswitch, nvls=cluster.nccl.nvls and ppn > 2 and all(nvswitch),
        collnet=cluster.nccl.collnet and len(nodes) > 1)


def _capacity(graph, a: str, b: str) -> float:
    data = graph.edges[a, b]
    return data["bandwidth_bytes_per_s"] * data["efficiency"]


def _shared_switch(links: dict[int, RankLinks], members: Sequence[int]) -> str | None:
    """The switch every member GPU links to directly (the node's NVSwitch), if any."""
    common = None
    for rank in members:
        switches = links[rank].switches
        common = switches if common is None else common & switches
    return min(common) if common else None


# ---------------------------------------------------------------- search


# search results by (id of the tuning, what search reads of a geometry), with the tuning (see search)
_SEARCHES: dict[tuple, tuple[NcclTuning, Search]] = {}


def search(geom: Geometry, tuning: NcclTuning | None = None) -> Search:
    """NCCL's topology search (src/graph/search.cc), reduced to bandwidth:
    the speed s of the architecture's array maximising channels x s, channels
    bounded by the NVLink total (one node) or by the NICs (several), then the
    split into twice the channels at half the speed (s >= 25 GB/s; Hopper and
    later keep s below 50 GB/s when there are more than 4 channels).

    Remembered per tuning and the figures of ``geom`` it reads (architecture,
    machines, bandwidths, rails, whether GPUs share a machine): the tuner asks
    for it once per candidate, and GPT-3 175B's 2,240 groups asked 3,530 times
    for a handful of distinct results (0.03 CPU s of its set-up)."""
    tuning = tuning or nccl_tuning()
    key = (id(tuning), geom.arch, geom.n_nodes, geom.intra_bw, geom.nic_bw, geom.rails, geom.ppn > 1)
    hit = _SEARCHES.get(key)
    if hit is not None and hit[0] is tuning:    # (the tuning is kept, so its id is not reused)
        return hit[1]
    found = _search(geom, tuning)
    if len(_SEARCHES) >= 4096:
        _SEARCHES.clear()
    _SEARCHES[key] = (tuning, found)
    return found


def _search(geom: Geometry, tuning: NcclTuning) -> Search:
    table = tuning.arch[geom.arch]
    speeds = tuning.speeds[table.speeds]
    most = tuning.search_max_channels
    intra = geom.intra_bw / GB
    best = None
    if geom.n_nodes == 1:
        for speed in speeds.intra:
            count = min(int(intra / speed + 1e-9), most)
            if count and (best is None or count * speed > best[0] * best[1] * (1 + 1e-12)):
                best = (count, speed)
    else:
        nic = geom.nic_bw / GB
        rails, shared = geom.rails, geom.ppn > 1     # (ppn is worked out per call: once here)
        for speed in speeds.inter:
            count = min(rails * int(nic / speed + 1e-9), most)
            if shared:
                count = min(count, int(intra / speed + 1e-9))
            if count and (best is None or count * speed > best[0] * best[1] * (1 + 1e-12)):
                best = (count, speed)
    if best is None:                 # slower than the slowest speed NCCL tries
        slowest = min(speeds.intra if geom.n_nodes == 1 else speeds.inter)
        best = (1, min(slowest, intra if geom.n_nodes == 1 else geom.nic_bw / GB))
    count, speed = best
    hopper_or_later = geom.arch in ("hopper", "blackwell")
    if speed >= tuning.duplicate_above and not (hopper_or_later and speed < 50 and count > 4):
        return Search(2 * count, speed / 2, speed / 2, split=True)
    return Search(count, speed, speed)


# ---------------------------------------------------------------- the tuner


def nsteps(op: str, n: int) -> int:
    """Ring steps per loop: 2(n - 1) all-reduce, n - 1 all-gather / reduce-scatter, n broadcast / reduce."""
    return {"allreduce": 2 * (n - 1), "allgather": n - 1, "reduce_scatter": n - 1}.get(op, n)


def enabled(geom: Geometry, op: str, algorithm: str, protocol: str) -> bool:
    """NCCL's enable rules: LL128 needs NVLink inside nodes; Tree is all-reduce
    only; NVLS (Simple, NVLink SHARP, > 2 GPUs per node) all-reduce, all-gather
    and reduce-scatter on one node, all-reduce across nodes as NVLS_TREE;
    CollNet (Simple, switches that reduce) across nodes; broadcast and reduce
    run on rings."""
    if op not in TUNED_OPS or geom.n < 2:
        return False
    if protocol == "LL128" and geom.intra_class != "nvlink":
        return False
    if algorithm == "nccl_ring":
        return True
    if algorithm == "nccl_tree":
        return op == "allreduce"
    if protocol != "Simple":
        return False
    if algorithm == "nvls":
        return geom.nvls and geom.n_nodes == 1 and op in ("allreduce", "allgather", "reduce_scatter")
    if algorithm == "nvls_tree":
        return geom.nvls and geom.n_nodes > 1 and op == "allreduce"
    if algorithm == "collnet_direct":
        return geom.collnet and all(geom.nvswitch) and op in ("allreduce", "allgather", "reduce_scatter")
    if algorithm == "collnet_chain":
        return geom.collnet and op == "allreduce"
    return False


def why_disabled(geom: Geometry, op: str, algorithm: str) -> str:
    """Why NCCL would not run ``algorithm`` for ``op`` on this group (any protocol)."""
    if op not in TUNED_OPS:
        return f"NCCL runs {op} as send/receive (nccl_p2p, nccl_hierarchical), not with {algorithm}"
    if algorithm == "nccl_tree":
        return f"NCCL's tree runs all-reduce only, not {op}"
    if algorithm in ("nvls", "nvls_tree") and not geom.nvls:
        return (f"{algorithm} needs NVLink SHARP (third-generation NVSwitch, `nccl: {{nvls: true}}` in the "
                f"cluster file: H100 and later) and more than 2 GPUs per node")
    if algorithm == "nvls":
        return "nvls runs inside one node (NVLS_TREE, `nvls_tree`, across nodes)" if geom.n_nodes > 1 else \
            f"nvls runs all-reduce, all-gather and reduce-scatter, not {op}"
    if algorithm == "nvls_tree":
        return "nvls_tree runs all-reduce across nodes (use nvls on one node)"
    if not geom.collnet:
        return (f"{algorithm} needs switches that reduce (`nccl: {{collnet: true}}` in the cluster file, "
                f"InfiniBand SHARP) and a group spanning nodes")
    return f"{algorithm} does not run {op}"


def tuner_latency_us(geom: Geometry, op: str, algorithm: str, protocol: str,
                     tuning: NcclTuning | None = None) -> float:
    """NCCL's latency term, microseconds (src/tuning: ring.cc, tree.cc, nvls.cc)."""
    tuning = tuning or nccl_tuning()
    name = _TABLE_NAME[algorithm]
    base = tuning.base_latency[name].get(protocol, 0.0) * 1e6
    intra = tuning.hop_latency[geom.intra_class][name].get(protocol, 0.0) * 1e6
    inter = tuning.hop_latency["net"][name].get(protocol, 0.0) * 1e6 if geom.n_nodes > 1 else intra
    nodes, ppn = geom.n_nodes, geom.ppn
    log_nodes = math.log2(nodes)
    if algorithm == "nccl_ring":
        steps = nsteps(op, geom.n)
        inter_steps = 0 if nodes == 1 else (2 * (nodes - 1) if op == "allreduce" else nodes - 1)
        overhead = 0.0 if nodes == 1 else tuning.net_overhead[geom.cpu] * 1e6 * (3 if protocol == "Simple" else 1)
        return base + (steps - inter_steps) * max(intra, overhead) + inter_steps * inter
    if algorithm == "nccl_tree":
        return base + 2 * ((ppn - 1) * intra + log_nodes * inter)
    if algorithm == "nvls":
        return intra + (inter if nodes > 1 else 0.0)
    if algorithm == "nvls_tree":
        return base + intra + 2 * log_nodes * inter
    if algorithm == "collnet_direct":
        return base + 2 * (min(1, ppn - 1) * intra + (ppn - 1) * tuning.collnet_arity_latency * 1e6) + inter
    return base + 2 * (ppn - 1) * intra + inter          # collnet_chain


def tuner_busbw_gb_s(geom: Geometry, op: str, algorithm: str, protocol: str,
                     tuning: NcclTuning | None = None) -> float:
    """NCCL's bus bandwidth (GB/s) of (algorithm, protocol), before the
    conversion to algorithm bandwidth."""
    tuning = tuning or nccl_tuning()
    found = search(geom, tuning)
    table = tuning.arch[geom.arch]
    index = geom.node_index
    channels = found.channels
    ll_max = (tuning.ll_max_bw_single_node_gb_per_s[geom.arch] if geom.n_nodes == 1
              else tuning.ll_max_bw_multi_node_gb_per_s[geom.cpu][index - 1])
    if algorithm == "nccl_ring":
        bus = channels * (found.bw_inter if geom.n_nodes > 1 else found.bw_intra)
        if protocol == "LL":
            return min(ll_max, bus * 0.5)
        if protocol == "LL128":
            return min(bus * 0.92, channels * table.ring_ll128_per_channel_gb_per_s[index])
        return bus
    if algorithm == "nccl_tree":
        bus = channels * min(found.bw_inter, found.bw_intra)
        bus = min(bus * 0.92, channels * table.tree_per_channel_gb_per_s[index])
        if protocol == "LL":
            bus = min(bus / 3.8, ll_max)
        elif protocol == "LL128":
            bus = min(bus * (7 / 9 if geom.n_nodes == 1 else 120 / 128),
                      channels * table.tree_ll128_per_channel_gb_per_s[index])
        return bus * (0.85 if geom.arch in ("hopper", "blackwell") else 1.0)
    if algorithm in ("nvls", "nvls_tree"):
        return _nvls_algbw(geom, op, tuning) * nsteps(op, geom.n) / geom.n
    # CollNet: one head per local GPU, each through its own NIC to the reducing switches
    return geom.ppn * min(geom.nic_bw, geom.intra_bw) / GB * 2 * (geom.n - 1) / geom.n


def _nvls_algbw(geom: Geometry, op: str, tuning: NcclTuning) -> float:
    """Algorithm bandwidth (GB/s) of NVLink SHARP: a GPU's link runs at
    nvlsEfficiency of its NVLink rate and carries (n + 1) / n of the buffer
    each way for all-reduce (reduce-scatter through the switch, then
    multicast), 1 for all-gather / reduce-scatter, with one of the nCh NVLS
    channels held back ((nCh - 1) / nCh, nvls.cc); NVLS_TREE is also bounded
    by the NICs (x2 on two nodes, where the double tree halves the traffic)
    and NCCL's per-channel NVLS-tree cap."""
    table = tuning.arch[geom.arch]
    channels = tuning.nvls_channels.get(geom.arch, 16)
    link = table.nvls_efficiency * geom.intra_bw / GB * (channels - 1) / channels
    ppn = geom.ppn
    if op == "allreduce":
        bw = link * ppn / (ppn + 1)
    else:
        bw = link
    if geom.n_nodes > 1:
        nics = geom.rails * geom.nic_bw / GB * (2 if geom.n_nodes <= 2 else 1)
        cap = tuning.nvls_channels.get(geom.arch, 16) * table.nvls_tree_per_channel_gb_per_s[geom.node_index]
        bw = min(bw, nics, cap if cap > 0 else bw)
    return bw


def tuner_algbw_gb_s(geom: Geometry, op: str, algorithm: str, protocol: str,
                     tuning: NcclTuning | None = None) -> float:
    """NCCL's algorithm bandwidth (GB/s): bus bandwidth x n / nsteps for rings,
    x 0.5 for trees and CollNet."""
    bus = tuner_busbw_gb_s(geom, op, algorithm, protocol, tuning)
    if algorithm == "nccl_ring":
        return bus * geom.n / nsteps(op, geom.n)
    if algorithm in ("nvls", "nvls_tree"):
        return bus * geom.n / nsteps(op, geom.n)
    return bus * 0.5


def tuner_time_us(geom: Geometry, op: str, algorithm: str, protocol: str, nbytes: float,
                  tuning: NcclTuning | None = None) -> float:
    """NCCL's predicted time (ncclTopoGetAlgoTime), microseconds; inf if disabled."""
    tuning = tuning or nccl_tuning()
    if not enabled(geom, op, algorithm, protocol):
        return math.inf
    latency = tuner_latency_us(geom, op, algorithm, protocol, tuning)
    bw = tuner_algbw_gb_s(geom, op, algorithm, protocol, tuning)
    if algorithm == "nccl_tree" and op == "allreduce" and nbytes >= 64:
        index = int(math.log2(nbytes / 64))
        factors = tuning.tree_correction[protocol]
        if index < len(factors):
            bw *= factors[index]
    channels = search(geom, tuning).exec_channels
    if (algorithm == "nccl_ring" and protocol == "Simple" and op == "allreduce" and geom.n_nodes > 1
            and nbytes / (channels * geom.n) >= 64):
        latency *= tuning.ring_plateau_factor
    if bw <= 0:
        return math.inf
    return latency + nbytes / (1000.0 * bw)


def choose(geom: Geometry, op: str, nbytes: float, algorithms: Sequence[str] = NCCL_FAMILY,
           protocols: Sequence[str] = PROTOCOLS, tuning: NcclTuning | None = None) -> tuple[str, str]:
    """The (algorithm, protocol) NCCL's tuner picks: least ``tuner_time_us``,
    ties to NCCL's order (Tree, Ring, CollNet, NVLS; LL, LL128, Simple)."""
    tuning = tuning or nccl_tuning()   # once, not for each of the candidates' terms
    best = None
    for algorithm in NCCL_FAMILY:
        if algorithm not in algorithms:
            continue
        for protocol in PROTOCOLS:
            if protocol not in protocols:
                continue
            time = tuner_time_us(geom, op, algorithm, protocol, nbytes, tuning)
            if time < math.inf and (best is None or time < best[0]):
                best = (time, algorithm, protocol)
    if best is None:
        raise CollectiveError(f"no NCCL algorithm among {list(algorithms)} with protocol "
                              f"{'/'.join(protocols)} implements {op} on this group")
    return best[1], best[2]


# ---------------------------------------------------------------- execution


def channels_used(geom: Geometry, algorithm: str, protocol: str, nbytes: float,
                  tuning: NcclTuning | None = None) -> int:
    """Channels (one thread block, one SM each) a collective runs on: NCCL's
    channel count for the algorithm, reduced for small sizes while there are
    fewer than ``thread_threshold`` bytes per thread (ncclTuningGetChannels;
    Ring/LL counts 8 x nRanks bytes per thread)."""
    tuning = tuning or nccl_tuning()
    if algorithm in ("nvls", "nvls_tree"):
        return tuning.nvls_channels.get(geom.arch, 16)
    channels = search(geom, tuning).exec_channels
    threads = tuning.threads[protocol]
    threshold = tuning.thread_threshold[protocol] * (geom.n if algorithm == "nccl_ring" and protocol == "LL" else 1)
    while channels >= 2 and nbytes < channels * threads * threshold:
        channels -= 1
    return channels


def chunk_bytes(op: str, algorithm: str, protocol: str, tuning: NcclTuning | None = None) -> float:
    """Payload bytes a channel moves per step: the protocol's buffer slot
    (NCCL_BUFFSIZE / NCCL_STEPS) times the chunk steps (4 for Simple rings of
    all-reduce, all-gather, reduce-scatter; 1 otherwise), less LL's flags (half
    of each line) and LL128's (8 bytes of each 128); NVLS chunks are
    NCCL_NVLS_CHUNKSIZE."""
    tuning = tuning or nccl_tuning()
    if algorithm in ("nvls", "nvls_tree"):
        return float(tuning.nvls_chunk)
    step = tuning.buffer[protocol] / tuning.steps
    if protocol == "Simple" and algorithm == "nccl_ring" and op in ("allreduce", "allgather", "reduce_scatter"):
        step *= tuning.ring_chunk_steps
    return step * tuning.payload_fraction[protocol]


def execution(geom: Geometry, op: str, algorithm: str, protocol: str, nbytes: float,
              tuning: NcclTuning | None = None) -> Execution:
    """Channels, per-channel payload rate, chunk and latencies of one collective."""
    tuning = tuning or nccl_tuning()
    if not enabled(geom, op, algorithm, protocol):
        if any(enabled(geom, op, algorithm, p) for p in PROTOCOLS):
            raise CollectiveError(f"{algorithm} with protocol {protocol}: " + (
                "LL128 needs NVLink inside nodes" if protocol == "LL128" else
                f"{algorithm} runs the Simple protocol only"))
        raise CollectiveError(f"{algorithm}: {why_disabled(geom, op, algorithm)}")
    name = _TABLE_NAME[algorithm]
    found = search(geom, tuning)
    table = tuning.arch[geom.arch]
    index = geom.node_index
    channels = channels_used(geom, algorithm, protocol, nbytes, tuning)
    payload = tuning.payload_fraction[protocol]
    factor = geom.intra_type.protocol(protocol).bandwidth_factor
    if geom.n_nodes > 1:
        factor = min(factor, geom.net_type.protocol(protocol).bandwidth_factor)
    # A search channel runs as two execution channels, each at most half its speed; a split
    # search (twice the channels at half speed) only divides the links among more channels,
    # which the links' max-min sharing does, so each keeps the undivided ceiling.
    per_channel = (found.bw_inter if geom.n_nodes > 1 else found.bw_intra) * GB / 2 * (2 if found.split else 1)
    ll_max = (tuning.ll_max_bw_single_node_gb_per_s[geom.arch] if geom.n_nodes == 1
              else tuning.ll_max_bw_multi_node_gb_per_s[geom.cpu][index - 1]) * GB
    if algorithm == "nccl_tree":
        per_channel = min(per_channel, table.tree_per_channel_gb_per_s[index] * GB / 2)
        if protocol == "LL128":
            per_channel = min(per_channel * payload, table.tree_ll128_per_channel_gb_per_s[index] * GB / 2)
        else:
            per_channel *= payload
    elif algorithm == "nccl_ring":
        if protocol == "LL128":
            per_channel = min(per_channel * payload, table.ring_ll128_per_channel_gb_per_s[index] * GB / 2)
        else:
            per_channel *= payload
    elif algorithm in ("nvls", "nvls_tree"):
        # nvls.cc: nvlsEfficiency of the NVLink rate, one channel of nCh held back
        per_channel = table.nvls_efficiency * geom.intra_bw * (channels - 1) / channels / channels
    per_channel *= factor
    if protocol == "LL":            # NCCL's LL ceiling is for all channels together
        per_channel = min(per_channel, ll_max / channels)
    hop_intra = geom.intra_type.protocol(protocol).hop_latency
    hop_net = geom.net_type.protocol(protocol).hop_latency if geom.n_nodes > 1 else hop_intra
    base = tuning.base_latency[name].get(protocol, 0.0)
    if algorithm in ("nvls", "nvls_tree"):
        base += tuning.hop_latency["nvlink"][name]["Simple"]
    return Execution(algorithm, protocol, channels, per_channel, chunk_bytes(op, algorithm, protocol, tuning),
                     base, hop_intra, hop_net, payload)


def p2p_execution(geom: Geometry, tuning: NcclTuning | None = None) -> Execution:
    """Send/receive (all-to-all, scatter, gather, pipeline sends): Simple
    protocol, chunks of NCCL_P2P_{NVL,NET}_CHUNKSIZE, the ring Simple base
    latency and the hop latency of the link crossed; the rate is the links'."""
    tuning = tuning or nccl_tuning()
    found = search(geom, tuning)
    channels = max(1, found.exec_channels // max(geom.n, 1))
    chunk = tuning.p2p_chunk["net" if geom.n_nodes > 1 else geom.intra_class]
    hop_intra = geom.intra_type.protocol("Simple").hop_latency
    hop_net = geom.net_type.protocol("Simple").hop_latency if geom.n_nodes > 1 else hop_intra
    return Execution("nccl_p2p", "Simple", 1 << (channels.bit_length() - 1), math.inf, float(chunk),
                     tuning.base_latency["ring"]["Simple"], hop_intra, hop_net, 1.0)
