"""Collective algorithms as schedules of point-to-point transfers.

Each algorithm is one function that returns a ``Schedule``: a sequence of
``Step``s, each a set of transfers that run at the same time, repeated
``repeat`` times with the same pattern (a ring's p - 1 identical shifts are
one step repeated). The schedule says nothing about time: it runs on a
topology (sim.network.runtime), where its transfers meet latency, bandwidth
and other traffic.

Sizes follow nccl-tests: ``nbytes`` is each rank's buffer for all-reduce,
broadcast and reduce; the full (gathered) buffer for all-gather, gather and
scatter; each rank's input for reduce-scatter and all-to-all.

References:
- Patarasuk and Yuan, "Bandwidth optimal all-reduce algorithms for clusters
  of workstations", JPDC 69(2), 2009 (ring).
- Chan, Heimlich, Purkayastha and van de Geijn, "Collective communication:
  theory, practice, and experience", CCPE 19(13), 2007 (minimum spanning
  tree broadcast / reduce / scatter / gather by recursive halving).
- Thakur, Rabenseifner and Gropp, "Optimization of collective communication
  operations in MPICH", IJHPCA 19(1), 2005 (recursive halving and doubling).
- Sanders, Speck and Traeff, "Two-tree algorithms for full bandwidth
  broadcast, reduction and scan", Parallel Computing 35(12), 2009 (the double
  binary tree NCCL uses for all-reduce).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from sim.errors import AccsimError

OPS = ("allreduce", "reduce_scatter", "allgather", "broadcast", "reduce", "scatter", "gather",
       "alltoall", "sendrecv")
# Alpha-beta algorithms (this module), ``auto`` (the fastest of them), and the NCCL family
# (sim/network/nccl.py): ``nccl`` is NCCL's tuner choosing among the others.
ALPHA_BETA = ("ring", "mst", "halving_doubling", "double_binary_tree", "hierarchical")
NCCL_NAMES = ("nccl", "nccl_ring", "nccl_tree", "nvls", "nvls_tree", "collnet_direct", "collnet_chain",
              "nccl_p2p", "nccl_hierarchical")
ALGORITHMS = ALPHA_BETA + ("auto",) + NCCL_NAMES
TREE_CHUNK_BYTES = 512 * 1024
TREE_MAX_CHUNKS = 64
BUSBW_FACTOR: dict[str, Callable[[int], float]] = {
    # nccl-tests doc/PERFORMANCE.md: bus bandwidth = algbw x factor
    "allreduce": lambda p: 2 * (p - 1) / p,
    "reduce_scatter": lambda p: (p - 1) / p,
    "allgather": lambda p: (p - 1) / p,
    "alltoall": lambda p: (p - 1) / p,
    "broadcast": lambda p: 1.0,
    "reduce": lambda p: 1.0,
    "scatter": lambda p: (p - 1) / p,
    "gather": lambda p: (p - 1) / p,
    "sendrecv": lambda p: 1.0,
}


class CollectiveError(AccsimError):
    """A collective that cannot be built: unknown op, unsupported algorithm, bad group."""


@dataclass(frozen=True)
class Step:
    """Transfers ``(src, dst, bytes)`` that run together, ``repeat`` times in a
    row; each receiver then reduces ``reduce_bytes`` per repeat. ``src`` and
    ``dst`` are ranks, or node names of the topology (a switch that reduces,
    as NVLink SHARP does).

    ``latency_s``: the step's latency; by default the largest path latency
    of its transfers (the alpha of the alpha-beta model), set by NCCL-style
    schedules to their per-hop protocol latency. ``max_rate``: a ceiling on
    the rate of the step's largest transfer (bytes/s), such as the bandwidth
    the channels of an NCCL collective can drive; other transfers of the
    step scale with their size."""

    transfers: tuple[tuple[int | str, int | str, float], ...]
    repeat: int = 1
    reduce_bytes: float = 0.0
    label: str = ""
    latency_s: float | None = None
    max_rate: float = math.inf


@dataclass(frozen=True)
class Schedule:
    """A collective's steps. ``protocol`` and ``channels`` are set by the
    NCCL family (the protocol it runs and the channels, one SM each, it uses)."""

    op: str
    algorithm: str
    ranks: tuple[int, ...]
    nbytes: float
    steps: tuple[Step, ...]
    protocol: str = ""
    channels: int = 0


def normalize_op(text: str) -> str:
    """Accept ``all-reduce``, ``all_reduce``, ``allreduce``, ``AllReduce``..."""
    key = text.strip().lower().replace("-", "_")
    aliases = {"all_reduce": "allreduce", "all_gather": "allgather", "all_to_all": "alltoall",
               "reducescatter": "reduce_scatter", "send_recv": "sendrecv", "p2p": "sendrecv",
               "send": "sendrecv"}
    key = aliases.get(key, key)
    if key not in OPS:
        raise CollectiveError(f"unknown collective op {text!r}; expected one of {list(OPS)}")
    return key


def normalize_algorithm(text: str) -> str:
    key = text.strip().lower().replace("-", "_")
    key = {"tree": "mst", "binomial": "mst", "rabenseifner": "halving_doubling",
           "dbt": "double_binary_tree", "collnet": "collnet_direct", "nvlstree": "nvls_tree",
           "nvls_tree": "nvls_tree"}.get(key, key)
    if key not in ALGORITHMS:
        raise CollectiveError(f"unknown algorithm {text!r}; expected one of {list(ALGORITHMS)}")
    return key


def normalize_protocol(text: str | None) -> str | None:
    """NCCL protocol names, any case: LL, LL128, Simple; ``auto`` or None: the tuner's."""
    if text is None or text.strip().lower() in ("", "auto"):
        return None
    names = {"ll": "LL", "ll128": "LL128", "simple": "Simple"}
    key = names.get(text.strip().lower())
    if key is None:
        raise CollectiveError(f"unknown protocol {text!r}; expected LL, LL128, Simple or auto")
    return key


# ---------------------------------------------------------------- ring


def _ring_shift(ranks: Sequence[int], chunk: float) -> tuple[tuple[int, int, float], ...]:
    p = len(ranks)
    return tuple((ranks[i], ranks[(i + 1) % p], chunk) for i in range(p))


def ring_reduce_scatter(ranks: Sequence[int], nbytes: float) -> list[Step]:
    """p - 1 steps; in each, every rank sends one n/p chunk to its successor,
    which reduces it (Patarasuk & Yuan 2009)."""
    p = len(ranks)
    if p == 1:
        return []
    return [Step(_ring_shift(ranks, nbytes / p), p - 1, nbytes / p, "ring reduce-scatter")]


def ring_allgather(ranks: Sequence[int], nbytes: float) -> list[Step]:
    """p - 1 steps; in each, every rank forwards one n/p chunk to its successor."""
    p = len(ranks)
    if p == 1:
        return []
    return [Step(_ring_shift(ranks, nbytes / p), p - 1, 0.0, "ring all-gather")]


def ring_allreduce(ranks: Sequence[int], nbytes: float) -> list[Step]:
    """Reduce-scatter then all-gather: 2(p - 1) steps of n/p bytes, the
    bandwidth-optimal all-reduce (Patarasuk & Yuan 2009)."""
    return ring_reduce_scatter(ranks, nbytes) + ring_allgather(ranks, nbytes)


def ring_alltoall(ranks: Sequence[int], nbytes: float) -> list[Step]:
    """Pairwise exchange: in step s = 1..p-1 rank i sends its n/p block for
    rank i + s (Thakur et al. 2005, the long-message all-to-all)."""
    p = len(ranks)
    return [Step(tuple((ranks[i], ranks[(i + s) % p], nbytes / p) for i in range(p)), 1, 0.0,
                 f"pairwise shift {s}") for s in range(1, p)]


# ---------------------------------------------------------------- minimum spanning tree


def _halving_rounds(p: int) -> list[list[tuple[int, int, int]]]:
    """Rounds of recursive halving over positions 0..p-1 rooted at 0: each
    range [lo, hi) of size > 1 splits at mid = lo + ceil(size / 2) and its
    leader lo sends to mid, which leads [mid, hi). Returns, per round, the
    (lo, mid, hi) splits: ceil(log2 p) rounds."""
    rounds = []
    ranges = [(0, p)]
    while any(hi - lo > 1 for lo, hi in ranges):
        splits, nxt = [], []
        for lo, hi in ranges:
            if hi - lo > 1:
                mid = lo + math.ceil((hi - lo) / 2)
                splits.append((lo, mid, hi))
                nxt += [(lo, mid), (mid, hi)]
            else:
                nxt.append((lo, hi))
        rounds.append(splits)
        ranges = nxt
    return rounds


def mst_broadcast(ranks: Sequence[int], nbytes: float) -> list[Step]:
    """Binomial-tree broadcast from ranks[0]: ceil(log2 p) rounds of the whole
    message (Chan et al. 2007): time ceil(log2 p)(alpha + n/B)."""
    return [Step(tuple((ranks[lo], ranks[mid], nbytes) for lo, mid, _ in splits), 1, 0.0,
                 f"mst broadcast round {i}") for i, splits in enumerate(_halving_rounds(len(ranks)))]


def mst_reduce(ranks: Sequence[int], nbytes: float) -> list[Step]:
    """Mirror of the broadcast: children send their partial results up and
    the parent reduces them, ceil(log2 p) rounds, root ranks[0]."""
    rounds = _halving_rounds(len(ranks))[::-1]
    return [Step(tuple((ranks[mid], ranks[lo], nbytes) for lo, mid, _ in splits), 1, nbytes,
                 f"mst reduce round {i}") for i, splits in enumerate(rounds)]


def mst_scatter(ranks: Sequence[int], nbytes: float) -> list[Step]:
    """Recursive-halving scatter: the leader of [lo, hi) sends the blocks of
    [mid, hi) to mid; ceil(log2 p) rounds moving (p - 1)/p n in all."""
    p = len(ranks)
    return [Step(tuple((ranks[lo], ranks[mid], nbytes * (hi - mid) / p) for lo, mid, hi in splits),
                 1, 0.0, f"mst scatter round {i}") for i, splits in enumerate(_halving_rounds(p))]


def mst_gather(ranks: Sequence[int], nbytes: float) -> list[Step]:
    """Mirror of the scatter, towards ranks[0]."""
    p = len(ranks)
    rounds = _halving_rounds(p)[::-1]
    return [Step(tuple((ranks[mid], ranks[lo], nbytes * (hi - mid) / p) for lo, mid, hi in splits),
                 1, 0.0, f"mst gather round {i}") for i, splits in enumerate(rounds)]


def mst_allreduce(ranks: Sequence[int], nbytes: float) -> list[Step]:
    """Reduce to ranks[0], then broadcast: 2 ceil(log2 p)(alpha + n/B), the
    latency-optimal all-reduce for short messages."""
    return mst_reduce(ranks, nbytes) + mst_broadcast(ranks, nbytes)


def mst_allgather(ranks: Sequence[int], nbytes: float) -> list[Step]:
    return mst_gather(ranks, nbytes) + mst_broadcast(ranks, nbytes)


def mst_reduce_scatter(ranks: Sequence[int], nbytes: float) -> list[Step]:
    return mst_reduce(ranks, nbytes) + mst_scatter(ranks, nbytes)


# ---------------------------------------------------------------- recursive halving / doubling


def _power_of_two_below(p: int) -> int:
    return 1 << (p.bit_length() - 1)


def halving_doubling_allreduce(ranks: Sequence[int], nbytes: float) -> list[Step]:
    """Rabenseifner's all-reduce (Thakur et al. 2005): reduce-scatter by
    recursive halving (log2 p steps of n/2, n/4, ... exchanged both ways),
    then all-gather by recursive doubling. For p not a power of two the
    p - p' extra ranks first fold their data into ranks 0.. and get the
    result back at the end (two extra steps of n)."""
    p = len(ranks)
    if p == 1:
        return []
    q = _power_of_two_below(p)
    extra = p - q
    steps = []
    if extra:
        steps.append(Step(tuple((ranks[q + i], ranks[i], nbytes) for i in range(extra)), 1, nbytes,
                          "fold extra ranks"))
    size = nbytes
    distance = q // 2
    halving = []
    while distance >= 1:
        size /= 2
        halving.append((distance, size))
        steps.append(Step(tuple((ranks[i], ranks[i ^ distance], size) for i in range(q)), 1, size,
                          f"recursive halving d={distance}"))
        distance //= 2
    for distance, size in reversed(halving):
        steps.append(Step(tuple((ranks[i], ranks[i ^ distance], size) for i in range(q)), 1, 0.0,
                          f"recursive doubling d={distance}"))
    if extra:
        steps.append(Step(tuple((ranks[i], ranks[q + i], nbytes) for i in range(extra)), 1, 0.0,
                          "unfold extra ranks"))
    return steps


def _require_power_of_two(p: int, what: str) -> None:
    if p & (p - 1):
        raise CollectiveError(f"halving_doubling {what} needs a power-of-two group, got {p} ranks")


def halving_doubling_reduce_scatter(ranks: Sequence[int], nbytes: float) -> list[Step]:
    """Recursive halving alone (power-of-two groups)."""
    _require_power_of_two(len(ranks), "reduce_scatter")
    steps, size, distance = [], nbytes, len(ranks) // 2
    while distance >= 1:
        size /= 2
        steps.append(Step(tuple((r, ranks[i ^ distance], size) for i, r in enumerate(ranks)), 1, size,
                          f"recursive halving d={distance}"))
        distance //= 2
    return steps


def halving_doubling_allgather(ranks: Sequence[int], nbytes: float) -> list[Step]:
    """Recursive doubling alone (power-of-two groups)."""
    p = len(ranks)
    _require_power_of_two(p, "allgather")
    steps, size, distance = [], nbytes / p, 1
    while distance < p:
        steps.append(Step(tuple((r, ranks[i ^ distance], size) for i, r in enumerate(ranks)), 1, 0.0,
                          f"recursive doubling d={distance}"))
        size *= 2
        distance *= 2
    return steps


# ---------------------------------------------------------------- double binary tree


def _heap_edges(p: int) -> list[tuple[int, int]]:
    """(child, parent) positions of a binary tree in heap order: parent(i) = (i - 1) // 2."""
    return [(i, (i - 1) // 2) for i in range(1, p)]


def double_binary_tree_allreduce(ranks: Sequence[int], nbytes: float) -> list[Step]:
    """NCCL's double binary tree all-reduce (Sanders, Speck and Traeff 2009).

    Two binary trees over the ranks, the second the mirror image of the first
    (position i -> p - 1 - i), so that ranks inner in one tree are mostly
    leaves in the other; each tree reduces one half of the message towards
    its root and broadcasts it back, pipelined in C chunks of at most
    TREE_CHUNK_BYTES (C <= TREE_MAX_CHUNKS). With tree depth d, each phase
    is d + C - 1 steps in which every tree edge carries one chunk (the edges
    idle during the pipeline's fill and drain are counted busy, slightly
    pessimistic under contention): alone, about 2 (d + C - 1) (alpha + n/(2 C B)).
    """
    p = len(ranks)
    if p == 1:
        return []
    half = nbytes / 2
    chunks = max(1, min(TREE_MAX_CHUNKS, math.ceil(half / TREE_CHUNK_BYTES)))
    chunk = half / chunks
    depth = max(1, p.bit_length() - 1)
    edges = _heap_edges(p)
    up = [(ranks[c], ranks[q], chunk) for c, q in edges] + \
         [(ranks[p - 1 - c], ranks[p - 1 - q], chunk) for c, q in edges]
    down = [(dst, src, size) for src, dst, size in up]
    repeat = depth + chunks - 1
    return [Step(tuple(up), repeat, 2 * chunk, "double binary tree reduce"),
            Step(tuple(down), repeat, 0.0, "double binary tree broadcast")]


# ---------------------------------------------------------------- hierarchical


def hierarchical_allreduce(ranks: Sequence[int], nbytes: float,
                           machine_of: Callable[[int], int]) -> list[Step]:
    """Two-level all-reduce for multi-node clusters: a ring reduce-scatter
    inside every machine at once, then for each local index a ring all-reduce
    of its n/g shard across machines (the g rings run together), then a ring
    all-gather inside every machine. Every machine must hold the same number
    g of the group's ranks. As in NCCL's and Horovod's hierarchical modes."""
    machines: dict[int, list[int]] = {}
    for rank in ranks:
        machines.setdefault(machine_of(rank), []).append(rank)
    local = [members for _, members in sorted(machines.items())]
    sizes = {len(m) for m in local}
    if len(sizes) != 1:
        raise CollectiveError("hierarchical needs the same number of group ranks on every machine, "
                              f"got {sorted(len(m) for m in local)}")
    g, m = sizes.pop(), len(local)
    if g == 1 or m == 1:
        return ring_allreduce(ranks, nbytes)
    steps = []
    intra_rs = [t for members in local for t in _ring_shift(members, nbytes / g)]
    steps.append(Step(tuple(intra_rs), g - 1, nbytes / g, "intra-node reduce-scatter"))
    shard = nbytes / g
    inter = [t for j in range(g) for t in _ring_shift([members[j] for members in local], shard / m)]
    steps.append(Step(tuple(inter), m - 1, shard / m, "inter-node reduce-scatter"))
    steps.append(Step(tuple(inter), m - 1, 0.0, "inter-node all-gather"))
    steps.append(Step(tuple(intra_rs), g - 1, 0.0, "intra-node all-gather"))
    return steps


# ---------------------------------------------------------------- dispatch


def sendrecv(ranks: Sequence[int], nbytes: float) -> list[Step]:
    """Point-to-point: ranks[0] sends n bytes to ranks[1]."""
    if len(ranks) != 2:
        raise CollectiveError(f"sendrecv needs a group of exactly 2 ranks (sender, receiver), got {len(ranks)}")
    return [Step(((ranks[0], ranks[1], nbytes),), 1, 0.0, "send")]


BUILDERS: dict[tuple[str, str], Callable[..., list[Step]]] = {
    ("allreduce", "ring"): ring_allreduce,
    ("reduce_scatter", "ring"): ring_reduce_scatter,
    ("allgather", "ring"): ring_allgather,
    ("alltoall", "ring"): ring_alltoall,
    ("broadcast", "mst"): mst_broadcast,
    ("reduce", "mst"): mst_reduce,
    ("scatter", "mst"): mst_scatter,
    ("gather", "mst"): mst_gather,
    ("allreduce", "mst"): mst_allreduce,
    ("allgather", "mst"): mst_allgather,
    ("reduce_scatter", "mst"): mst_reduce_scatter,
    ("allreduce", "halving_doubling"): halving_doubling_allreduce,
    ("allreduce", "double_binary_tree"): double_binary_tree_allreduce,
    ("reduce_scatter", "halving_doubling"): halving_doubling_reduce_scatter,
    ("allgather", "halving_doubling"): halving_doubling_allgather,
    ("sendrecv", "ring"): sendrecv,
    ("sendrecv", "mst"): sendrecv,
}


def algorithms_for(op: str) -> list[str]:
    """Concrete algorithms (not ``auto``) that implement ``op``."""
    found = [algo for (o, algo) in BUILDERS if o == op]
    if op == "allreduce":
        found.append("hierarchical")
    return found


def check_group(ranks: Sequence[int], nbytes: float) -> tuple[int, ...]:
    """The group as a tuple, once checked: non-empty, no rank twice, size >= 0."""
    ranks = tuple(ranks)
    if len(set(ranks)) != len(ranks):
        raise CollectiveError(f"the group lists a rank twice: {list(ranks)}")
    if not ranks:
        raise CollectiveError("the group is empty")
    if nbytes < 0:
        raise CollectiveError(f"message size must be non-negative, got {nbytes}")
    return ranks


def build_schedule(op: str, algorithm: str, ranks: Sequence[int], nbytes: float,
                   machine_of: Callable[[int], int] | None = None) -> Schedule:
    """The schedule of one collective (``algorithm`` must not be ``auto``)."""
    op, algorithm = normalize_op(op), normalize_algorithm(algorithm)
    ranks = check_group(ranks, nbytes)
    if algorithm == "hierarchical":
        if op != "allreduce":
            raise CollectiveError(f"hierarchical implements allreduce only, not {op}")
        steps = hierarchical_allreduce(ranks, nbytes, machine_of or (lambda rank: 0))
    else:
        builder = BUILDERS.get((op, algorithm))
        if builder is None:
            raise CollectiveError(f"algorithm {algorithm!r} does not implement {op}; "
                                  f"for {op} use one of {algorithms_for(op) + ['auto']}")
        steps = builder(ranks, nbytes) if len(ranks) > 1 else []
    return Schedule(op, algorithm, ranks, float(nbytes), tuple(steps))
