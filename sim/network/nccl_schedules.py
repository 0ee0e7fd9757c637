"""The NCCL family as schedules of steps on the links (see sim/network/nccl.py
for the cost structure they carry).

Every schedule starts with a step of no transfers lasting NCCL's base
latency, then runs chunk steps. A chunk step holds every channel's transfer
at once, merged per (source, destination) pair: a pair crossed by k
channels carries k chunks, and the step's ``max_rate`` lets its largest
transfer go no faster than its channels can drive (k x per-channel rate), so
links shared with other traffic slow it by max-min sharing and channels bound
it when the links are idle. Identical steps are one ``Step`` with ``repeat``
(sim/network/runtime.py costs them as one flow).

Channel placement follows DGX cabling: one node's rings all start and end at
the node's NVSwitch port; across nodes, channel family r (one per NIC)
enters node i at local GPU (r - i) and leaves it from the GPU before it,
whose NIC is on the same rail as the next node's entry GPU, so inter-node
hops stay on their rail's leaf switch. A hop between GPUs of different rails
goes the PXN way (NCCL 2.12+): over NVLink to the sender's peer GPU on the
receiver's rail, then through that GPU's NIC.
"""

from __future__ import annotations

import math
from typing import Sequence

from sim.network.collectives import CollectiveError, Schedule, Step
from sim.network.nccl import Execution, Geometry, nsteps, p2p_execution
from sim.network.topology import Cluster

Hops = dict[tuple, float]        # (source, destination) -> channels (or bytes) crossing it per step


def _local(cluster: Cluster, rank: int) -> int:
    return cluster.graph.nodes[cluster.ranks[rank]].get("local", rank)


def legs(cluster: Cluster, geom: Geometry, src: int, dst: int) -> list[tuple[int, int]]:
    """The legs of a hop: direct, or, across machines between GPUs of
    different rails, PXN: to the sender's peer on the receiver's rail (a
    member of the group), then across."""
    if cluster.machine(src) == cluster.machine(dst) or _local(cluster, src) == _local(cluster, dst):
        return [(src, dst)]
    node = next(members for members in geom.nodes if src in members)
    relay = next((r for r in node if _local(cluster, r) == _local(cluster, dst)), None)
    return [(src, dst)] if relay is None else [(src, relay), (relay, dst)]


def _add(hops: Hops, cluster: Cluster, geom: Geometry, src: int, dst: int, amount: float) -> None:
    for leg in legs(cluster, geom, src, dst):
        hops[leg] = hops.get(leg, 0.0) + amount


def _families(channels: int, rails: int) -> list[tuple[int, int]]:
    """(family, channels in it): channels spread over the rails as evenly as possible."""
    return [(r, channels // rails + (1 if r < channels % rails else 0)) for r in range(rails)
            if channels // rails + (1 if r < channels % rails else 0)]


def ring_hops(cluster: Cluster, geom: Geometry, channels: int) -> Hops:
    """Channels crossing each hop of NCCL's rings in one step."""
    hops: Hops = {}
    if geom.n_nodes == 1:
        order = geom.nodes[0]
        for i, src in enumerate(order):
            hops[(src, order[(i + 1) % len(order)])] = float(channels)
        return hops
    nodes = geom.nodes
    for family, count in _families(channels, geom.rails):
        for i, members in enumerate(nodes):
            size = len(members)
            entry = (family - i) % size
            order = [members[(entry + j) % size] for j in range(size)]
            for a, b in zip(order, order[1:]):
                _add(hops, cluster, geom, a, b, count)
            following = nodes[(i + 1) % len(nodes)]
            target = following[(family - i - 1) % len(following)]
            _add(hops, cluster, geom, order[-1], target, count)
    return hops


def _heap_parent(i: int) -> int:
    return (i - 1) // 2


def tree_hops(cluster: Cluster, geom: Geometry, channels: int) -> tuple[Hops, int]:
    """Channels on each upward (reduce) hop of NCCL's trees, and the depth in
    hops: a chain inside each node ending at the family's head GPU, and
    across nodes the double binary tree (Sanders et al. 2009): half of each
    family's channels on a heap-ordered binary tree of the nodes, half on
    its mirror image."""
    up: Hops = {}
    nodes = geom.nodes
    if geom.n_nodes == 1:
        order = nodes[0]
        for a, b in zip(order, order[1:]):
            up[(a, b)] = float(channels)
        return up, len(order) - 1
    count_nodes = len(nodes)
    for family, count in _families(channels, geom.rails):
        heads = []
        for members in nodes:
            size = len(members)
            head = family % size
            order = [members[(head + 1 + j) % size] for j in range(size)]
            for a, b in zip(order, order[1:]):
                _add(up, cluster, geom, a, b, count)
            heads.append(order[-1])
        halves = (count - count // 2, count // 2)
        for tree, share in enumerate(halves):
            if not share:
                continue
            for child in range(1, count_nodes):
                parent = _heap_parent(child)
                a, b = (child, parent) if tree == 0 else (count_nodes - 1 - child, count_nodes - 1 - parent)
                _add(up, cluster, geom, heads[a], heads[b], share)
    depth = max(len(m) for m in nodes) - 1 + (count_nodes - 1).bit_length()
    return up, depth


def _step(hops: Hops, wire_chunk: float, repeat: int, latency: float, wire_rate: float,
          label: str) -> Step:
    """One chunk step: ``hops`` maps a pair to the channels crossing it."""
    transfers = tuple((a, b, k * wire_chunk) for (a, b), k in hops.items())
    most = max(hops.values(), default=0.0)
    return Step(transfers, repeat, 0.0, label, latency_s=latency, max_rate=most * wire_rate)


def _base(ex: Execution, label: str) -> Step:
    return Step((), 1, 0.0, label, latency_s=ex.base_s)


def _schedule(op: str, ex: Execution, ranks: Sequence[int], nbytes: float, steps: list[Step]) -> Schedule:
    return Schedule(op, ex.algorithm, tuple(ranks), float(nbytes), tuple(steps), ex.protocol, ex.channels)


def ring_schedule(cluster: Cluster, geom: Geometry, op: str, ex: Execution, ranks: Sequence[int],
                  nbytes: float) -> Schedule:
    """Ring all-reduce, all-gather, reduce-scatter (loops of nsteps chunk
    steps per channel) and broadcast / reduce (a pipeline along the ring
    from / to the first rank)."""
    n = geom.n
    if op in ("broadcast", "reduce"):
        return _chain_schedule(cluster, geom, op, ex, ranks, nbytes)
    steps_per_loop = nsteps(op, n)
    inter = 0 if geom.n_nodes == 1 else (2 if op == "allreduce" else 1) * (geom.n_nodes - 1)
    hop = ((steps_per_loop - inter) * ex.hop_intra_s + inter * ex.hop_net_s) / steps_per_loop
    hops = ring_hops(cluster, geom, ex.channels)
    loop_bytes = ex.channels * n * ex.chunk_bytes
    full = int(nbytes // loop_bytes)
    rest = nbytes - full * loop_bytes
    rate = ex.channel_rate / ex.payload_fraction
    steps = [_base(ex, "base latency")]
    for chunk, loops in ((ex.chunk_bytes, full), (rest / (ex.channels * n), 1 if rest > 0 else 0)):
        if loops:
            steps.append(_step(hops, chunk / ex.payload_fraction, loops * steps_per_loop, hop, rate,
                               f"ring {op} chunks of {chunk:.0f} B"))
    return _schedule(op, ex, ranks, nbytes, steps)


def _chain_schedule(cluster: Cluster, geom: Geometry, op: str, ex: Execution, ranks: Sequence[int],
                    nbytes: float) -> Schedule:
    """Broadcast from ``ranks[0]`` (reduce to it) along the ring, pipelined in
    chunks: nChunks + n - 2 steps, each one chunk per channel on every hop."""
    order = list(ranks)
    hops: Hops = {}
    for a, b in zip(order, order[1:]):
        if op == "reduce":
            a, b = b, a
        _add(hops, cluster, geom, a, b, ex.channels)
    inter = sum(1 for a, b in zip(order, order[1:]) if cluster.machine(a) != cluster.machine(b))
    links = len(order) - 1
    hop = ((links - inter) * ex.hop_intra_s + inter * ex.hop_net_s) / links
    chunks = max(1, math.ceil(nbytes / (ex.channels * ex.chunk_bytes)))
    chunk = nbytes / (ex.channels * chunks)
    steps = [_base(ex, "base latency"),
             _step(hops, chunk / ex.payload_fraction, chunks + links - 1, hop,
                   ex.channel_rate / ex.payload_fraction, f"ring {op} pipeline")]
    return _schedule(op, ex, ranks, nbytes, steps)


def tree_chunk(geom: Geometry, ex: Execution, nbytes: float, depth: int) -> float:
    """NCCL's smaller tree chunks for sizes that would not fill the pipeline
    (enqueue.cc, calcCollChunking): LL128 halves the chunk while a channel has
    fewer than (1 + log2 nodes + ppn / 10) x 64 / ppn chunks (down to 128 KiB),
    then while fewer than that x 16 / ppn (down to 32 KiB); Simple halves it
    while fewer than depth x 8 (down to 128 KiB), x 4 (64 KiB), x 1 (32 KiB)
    chunks, as NCCL 2.1x did."""
    chunk = ex.chunk_bytes

    def per_channel() -> float:
        return nbytes / (ex.channels * chunk)

    if ex.protocol == "LL128":
        steps = 1 + math.log2(geom.n_nodes) + 0.1 * geom.ppn
        for factor, floor in ((64, 131072), (16, 32768)):
            while per_channel() < steps * factor / geom.ppn and chunk > floor:
                chunk /= 2
    elif ex.protocol == "Simple":
        for factor, floor in ((8, 131072), (4, 65536), (1, 32768)):
            while per_channel() < depth * factor and chunk > floor:
                chunk /= 2
    return chunk


def tree_schedule(cluster: Cluster, geom: Geometry, op: str, ex: Execution, ranks: Sequence[int],
                  nbytes: float) -> Schedule:
    """Tree all-reduce: chunks reduced up the trees and broadcast down at the
    same time, nChunks + 2 depth - 1 steps; a chunk's journey costs NCCL's
    2 ((ppn - 1) intra + depth across nodes) hop latencies."""
    up, depth = tree_hops(cluster, geom, ex.channels)
    hops = dict(up)
    for (a, b), k in up.items():
        hops[(b, a)] = hops.get((b, a), 0.0) + k
    net_depth = (geom.n_nodes - 1).bit_length()
    journey = 2 * ((geom.ppn - 1) * ex.hop_intra_s + net_depth * ex.hop_net_s)
    chunk = tree_chunk(geom, ex, nbytes, depth)
    chunks = max(1, math.ceil(nbytes / (ex.channels * chunk)))
    chunk = nbytes / (ex.channels * chunks)
    steps = [_base(ex, "base latency"),
             _step(hops, chunk / ex.payload_fraction, chunks + 2 * depth - 1, journey / (2 * depth),
                   ex.channel_rate / ex.payload_fraction, "tree reduce + broadcast")]
    return _schedule(op, ex, ranks, nbytes, steps)


def _nvls_chunk(ex: Execution, nbytes: float) -> float:
    """NCCL's NVLS chunk: NCCL_NVLS_CHUNKSIZE, 64 / 32 / 16 KiB below 64 / 8 / 2
    chunks per channel (src/enqueue.cc)."""
    ops = ex.channels * ex.chunk_bytes
    for factor, size in ((2, 16384), (8, 32768), (64, 65536)):
        if nbytes < factor * ops:
            return min(size, ex.chunk_bytes)
    return ex.chunk_bytes


def nvls_schedule(cluster: Cluster, geom: Geometry, op: str, ex: Execution, ranks: Sequence[int],
                  nbytes: float) -> Schedule:
    """NVLink SHARP on one node: the NVSwitch reduces (multimem.ld_reduce) and
    multicasts (multimem.st). Per step every GPU handles one chunk per channel
    of its shard: all-reduce moves (ppn + 1) chunks up its NVLink and as many
    down, all-gather 1 up and ppn down, reduce-scatter ppn up and 1 down; the
    buffer advances ppn chunks per channel a step."""
    members = geom.nodes[0]
    switch = geom.nvswitch[0]
    ppn = len(members)
    up, down = {"allreduce": (ppn + 1, ppn + 1), "allgather": (1, ppn), "reduce_scatter": (ppn, 1)}[op]
    chunk = _nvls_chunk(ex, nbytes)
    per_step = ppn * ex.channels * chunk
    count = max(1, math.ceil(nbytes / per_step))
    chunk = nbytes / (ppn * ex.channels * count)
    hops: Hops = {}
    for rank in members:
        hops[(rank, switch)] = up * ex.channels * chunk
        hops[(switch, rank)] = down * ex.channels * chunk
    transfers = tuple((a, b, size) for (a, b), size in hops.items())
    # the largest transfer is a GPU's NVLink traffic, which runs at nvlsEfficiency of the link
    steps = [_base(ex, "NVLS latency"),
             Step(transfers, count, 0.0, f"nvls {op}", latency_s=0.0, max_rate=ex.channel_rate * ex.channels)]
    return _schedule(op, ex, ranks, nbytes, steps)


def nvls_tree_schedule(cluster: Cluster, geom: Geometry, op: str, ex: Execution, ranks: Sequence[int],
                       nbytes: float) -> Schedule:
    """NVLS_TREE all-reduce across nodes: inside each node NVLS reduce-scatter
    and multicast as above, every GPU the head of its rail; across nodes the
    double binary tree per rail on the reduced shards (half the channels on
    each tree), pipelined: nChunks + 2 depth steps, a chunk's journey costing
    2 depth network hop latencies."""
    hops: Hops = {}
    chunk = _nvls_chunk(ex, nbytes)
    ppn = geom.ppn
    count = max(1, math.ceil(nbytes / (ppn * ex.channels * chunk)))
    chunk = nbytes / (ppn * ex.channels * count)
    for members, switch in zip(geom.nodes, geom.nvswitch):
        for rank in members:
            hops[(rank, switch)] = (ppn + 1) * ex.channels * chunk
            hops[(switch, rank)] = (ppn + 1) * ex.channels * chunk
    count_nodes = geom.n_nodes
    for position in range(ppn):
        heads = [m[position % len(m)] for m in geom.nodes]
        for tree, share in enumerate((ex.channels - ex.channels // 2, ex.channels // 2)):
            for child in range(1, count_nodes):
                parent = _heap_parent(child)
                a, b = (child, parent) if tree == 0 else (count_nodes - 1 - child, count_nodes - 1 - parent)
                for leg_a, leg_b in ((heads[a], heads[b]), (heads[b], heads[a])):
                    _add(hops, cluster, geom, leg_a, leg_b, share * chunk)
    depth = (count_nodes - 1).bit_length()
    transfers = tuple((a, b, size) for (a, b), size in hops.items())
    steps = [_base(ex, "NVLS latency"),
             Step(transfers, count + 2 * depth, 0.0, "nvls_tree all-reduce",
                  latency_s=ex.hop_net_s * 2 * depth / (count + 2 * depth),
                  max_rate=ex.channel_rate * ex.channels)]
    return _schedule(op, ex, ranks, nbytes, steps)


def _sharp_root(cluster: Cluster, heads: Sequence[int]) -> tuple[list[str], str]:
    """The leaf switches of ``heads``' NICs and the switch above all of them
    (the root of the in-network reduction tree, SHARP-style)."""
    graph = cluster.graph
    leaves = []
    for rank in heads:
        name = cluster.ranks[rank]
        nic = next((n for n in graph[name] if graph.nodes[n].get("kind") == "nic"), None)
        leaf = next((s for s in graph[nic] if graph.nodes[s].get("kind") == "switch"), None) if nic else None
        if leaf is None:
            raise CollectiveError(f"collnet needs every head GPU's NIC on a switch; {name} has none")
        leaves.append(leaf)
    distinct = sorted(set(leaves))
    if len(distinct) == 1:
        return leaves, distinct[0]
    common = set.intersection(*(set(graph[leaf]) for leaf in distinct))
    roots = sorted(s for s in common if graph.nodes[s].get("kind") == "switch")
    if not roots:
        raise CollectiveError("collnet needs one switch above all the leaves of the group's NICs")
    return leaves, roots[0]


def collnet_schedule(cluster: Cluster, geom: Geometry, op: str, ex: Execution, ranks: Sequence[int],
                     nbytes: float) -> Schedule:
    """In-network reduction (CollNet, InfiniBand SHARP): inside each node the
    GPUs scatter their data to the head of each rail (CollNetDirect: every GPU
    a head, direct NVLink writes; CollNetChain: a chain to one head per
    channel family), each head sends its shard up its rail's switch tree,
    which reduces on the way (a leaf forwards one shard up, not one per
    node) and sends the result back down; then the heads gather it to all.
    Pipelined in chunks: nChunks + 2 steps."""
    hops: Hops = {}
    ppn = geom.ppn
    count = max(1, math.ceil(nbytes / (ppn * ex.channels * ex.chunk_bytes)))
    chunk = nbytes / (ppn * ex.channels * count)
    amount = ex.channels * chunk
    for members in geom.nodes:
        for a in members:
            for b in members:
                if a != b:
                    hops[(a, b)] = hops.get((a, b), 0.0) + 2 * amount
    for position in range(ppn):
        heads = [m[position % len(m)] for m in geom.nodes]
        leaves, root = _sharp_root(cluster, heads)
        for head, leaf in zip(heads, leaves):
            hops[(head, leaf)] = hops.get((head, leaf), 0.0) + amount
            hops[(leaf, head)] = hops.get((leaf, head), 0.0) + amount
        for leaf in sorted(set(leaves)):
            if leaf != root:
                hops[(leaf, root)] = hops.get((leaf, root), 0.0) + amount
                hops[(root, leaf)] = hops.get((root, leaf), 0.0) + amount
    transfers = tuple((a, b, size) for (a, b), size in hops.items())
    most = max(size for _, _, size in transfers)
    steps = [_base(ex, "collnet latency"),
             Step(transfers, count + 2, 0.0, f"{ex.algorithm} {op}",
                  latency_s=ex.hop_net_s * 2 / 3, max_rate=ex.channel_rate * most / chunk)]
    return _schedule(op, ex, ranks, nbytes, steps)


BUILDERS = {"nccl_ring": ring_schedule, "nccl_tree": tree_schedule, "nvls": nvls_schedule,
            "nvls_tree": nvls_tree_schedule, "collnet_direct": collnet_schedule,
            "collnet_chain": collnet_schedule}


# ---------------------------------------------------------------- point to point


def _p2p_step(cluster: Cluster, geom: Geometry, pairs: Sequence[tuple[int, int, float]], label: str,
               ex: Execution) -> Step:
    hops: Hops = {}
    crosses = False
    for a, b, size in pairs:
        crosses |= cluster.machine(a) != cluster.machine(b)
        for leg in legs(cluster, geom, a, b):
            hops[leg] = hops.get(leg, 0.0) + size
    transfers = tuple((a, b, size) for (a, b), size in hops.items())
    return Step(transfers, 1, 0.0, label, latency_s=ex.hop_net_s if crosses else ex.hop_intra_s)


def p2p_schedule(cluster: Cluster, geom: Geometry, op: str, ranks: Sequence[int], nbytes: float,
                 hierarchical: bool = False) -> Schedule:
    """Send/receive-based operations as NCCL runs them (grouped ncclSend /
    ncclRecv, PXN relays across rails): sendrecv (ranks[0] to ranks[1]),
    scatter / gather (root ranks[0]), and all-to-all, pairwise (shift s = 1 ..
    n - 1: rank i sends its block for rank i + s) or, with ``hierarchical``,
    rail-aggregated: blocks first gathered over NVLink on the GPU of each
    destination's rail, then one message per node pair and rail."""
    ex = p2p_execution(geom)
    order = list(ranks)
    n = len(order)
    steps = [_base(ex, "p2p latency")]
    if op == "sendrecv":
        if n != 2:
            raise CollectiveError(f"sendrecv needs a group of exactly 2 ranks (sender, receiver), got {n}")
        steps.append(_p2p_step(cluster, geom, [(order[0], order[1], nbytes)], "send", ex))
    elif op in ("scatter", "gather"):
        pairs = [(order[0], r, nbytes / n) for r in order[1:]]
        if op == "gather":
            pairs = [(b, a, size) for a, b, size in pairs]
        steps.append(_p2p_step(cluster, geom, pairs, op, ex))
    elif op == "alltoall" and hierarchical and geom.n_nodes > 1:
        steps += _hierarchical_alltoall(cluster, geom, nbytes, ex)
    elif op == "alltoall":
        for shift in range(1, n):
            pairs = [(order[i], order[(i + shift) % n], nbytes / n) for i in range(n)]
            steps.append(_p2p_step(cluster, geom, pairs, f"pairwise shift {shift}", ex))
    else:
        raise CollectiveError(f"{op} is a collective, not a send/receive operation")
    algorithm = "nccl_hierarchical" if hierarchical else "nccl_p2p"
    return Schedule(op, algorithm, tuple(ranks), float(nbytes), tuple(steps), "Simple", ex.channels)


def _hierarchical_alltoall(cluster: Cluster, geom: Geometry, nbytes: float, ex: Execution) -> list[Step]:
    nodes = geom.nodes
    ppn, count = geom.ppn, geom.n_nodes
    if any(len(m) != ppn for m in nodes):
        raise CollectiveError("hierarchical all-to-all needs the same number of group ranks on every machine")
    block = nbytes / geom.n
    steps = []
    for shift in range(1, ppn):
        pairs = [(m[p], m[(p + shift) % ppn], block * count) for m in nodes for p in range(ppn)]
        steps.append(_p2p_step(cluster, geom, pairs, f"intra-node shift {shift}", ex))
    for shift in range(1, count):
        pairs = [(nodes[i][p], nodes[(i + shift) % count][p], block * ppn)
                 for i in range(count) for p in range(ppn)]
        steps.append(_p2p_step(cluster, geom, pairs, f"inter-node shift {shift}", ex))
    return steps
