"""Pipeline parallelism (GPipe, Huang et al. NeurIPS 2019; PipeDream-Flush /
1F1B, Narayanan et al. ICML 2021; interleaved 1F1B, Megatron-LM SC'21 Sec. 2.2).

A stage runs its units in the order of its schedule (sim.parallel.schedules).
Each unit's output goes to the neighbouring stage as a point-to-point send on
stream 1 of the sender, activations forward and gradients backward,
b s h / t bytes (Megatron's scatter-gather optimization, SC'21 Sec. 4.1);
the receiving unit's first op waits for it. With interleaving the last stage
of chunk c sends to the first stage of chunk c + 1. The word-embedding
gradient, tied between the first and last stage, is all-reduced between
them after their last backward (Megatron's ``_allreduce_embedding_grads``).
"""

from __future__ import annotations

from sim.parallel.emit.builder import Iteration, Stage
from sim.parallel.emit.tensor import activation_bytes

SEND_STREAM = 1
EMBEDDING_STREAM = 2


def neighbour(kind: str, stage: int, chunk: int, pp: int, v: int) -> tuple[int, int] | None:
    """Where a unit's output goes: activations forward, gradients backward,
    wrapping between the last and first stage across chunks (interleaving)."""
    if kind == "F":
        if stage < pp - 1:
            return stage + 1, chunk
        return (0, chunk + 1) if chunk < v - 1 else None
    if stage > 0:
        return stage - 1, chunk
    return (pp - 1, chunk - 1) if chunk > 0 else None


def receive(stage: Stage, kind: str, m: int, c: int) -> None:
    """The unit's first op waits for its input from the neighbouring stage (a
    forward's from where a backward would send its gradient, and vice versa;
    a W unit's inputs are on its own stage)."""
    plan = stage.it.plan
    if kind == "W":
        return
    source = neighbour("B" if kind == "F" else "F", stage.s, c, plan.pp, plan.virtual_stages)
    if source is None:
        return
    for j in stage.it.tps:
        stage.waits[j].append(stage.bld.reserve((kind, m, c, source, stage.d, j)))


def send(stage: Stage, kind: str, m: int, c: int) -> None:
    """The unit's output to the next stage (its id reserved by the receiver if
    it came first); a W unit sends nothing."""
    it, bld, plan, s = stage.it, stage.bld, stage.it.plan, stage.s
    target = None if kind == "W" else neighbour(kind, s, c, plan.pp, plan.virtual_stages)
    nbytes = activation_bytes(stage) / plan.tp
    for j, rank in stage.ranks.items():
        it.final_op[(stage.d, s, j)] = bld.last_compute[rank]
        if target is None:
            continue
        ts, tc = target
        mirror = bld.mirrors(lambda dd, jj: [plan.rank(dd, s, jj), plan.rank(dd, ts, jj)], "dt", key=("pp", s, ts))
        op_id = bld.reserve((kind, m, tc, (s, c), stage.d, j))
        bld.collective("sendrecv", f"{stage.prefix}.send", nbytes, [rank, plan.rank(stage.d, ts, j)], mirror,
                       [bld.last_compute[rank]] + stage.waits[j], SEND_STREAM, "pp", op_id=op_id, **stage.tag)


def embedding_sync(it: Iteration) -> dict[tuple[int, int], int]:
    """The tied word-embedding gradient all-reduce between first and last
    stage; (replica, TP rank) -> its op."""
    cfg, plan, bld = it.cfg, it.plan, it.bld
    pp = plan.pp
    ops: dict[tuple[int, int], int] = {}
    if pp == 1 or not cfg.vocab:
        return ops
    nbytes = cfg.vocab * cfg.hidden / plan.tp * cfg.dtype_bytes
    for d in it.dps:
        for j in it.tps:
            first, last = plan.rank(d, 0, j), plan.rank(d, pp - 1, j)
            mirror = bld.mirrors(lambda dd, jj: [plan.rank(dd, 0, jj), plan.rank(dd, pp - 1, jj)], "dt")
            ops[(d, j)] = bld.collective("allreduce", "embedding.grad_sync", nbytes, [first, last], mirror,
                                         [it.final_op[(d, 0, j)], it.final_op[(d, pp - 1, j)]],
                                         EMBEDDING_STREAM, "embedding_sync")
    return ops
