"""Sharded data parallelism: ZeRO stages 2 and 3 (Rajbhandari et al., "ZeRO",
SC'20, Sec. 5) and PyTorch FSDP (Zhao et al., "PyTorch FSDP", VLDB 2023).

A shard group is ``shard_group`` consecutive data-parallel replicas (all of
them by default); with fewer, the groups are replicas of each other (FSDP
HYBRID_SHARD). Per (stage, TP rank):

- stage 3 (FSDP FULL_SHARD): before a layer runs, forward or backward (its
  B pass with a split backward), its parameters are all-gathered over the
  shard group (layer_params / t parameters, on stream 4) into a buffer the
  layer's last op frees (resharding after use). An all-gather may start once
  the buffer of the use ``zero_prefetch`` + 1 before it is freed, so
  ``zero_prefetch`` gathers run ahead of the compute, overlapping it (FSDP's
  forward and backward prefetch, with its limit on all-gathers in flight).
  The stage's other parameters (embeddings, LM head: FSDP's root unit, not
  resharded after forward) are gathered once, before the stage's first unit;
- stages 2 and 3: each backward's weight-gradient GEMMs write the layer's
  unsharded gradients into a buffer, reduce-scattered over the shard group
  after the layer's last weight-gradient GEMM (stream 2; FSDP's per-unit
  reduce-scatter in every backward, DeepSpeed's per-micro-step reduction),
  which frees it; with hybrid sharding the shard is then all-reduced over
  the replicas of the group (on stream 6). The root unit's gradients accumulate unsharded
  and are reduce-scattered after the stage's last backward.

Stage 2 keeps whole parameters, all-gathered after the optimizer step as with
stage 1 (sim.parallel.emit.zero); stage 3 does not gather after the step.
"""

from __future__ import annotations

from sim.parallel.emit.builder import Iteration, Stage
from sim.parallel.emit.data import DP_STREAM
from sim.parallel.memory import layer_params, root_params

AG_STREAM = 4
REPLICA_STREAM = 6  # the hybrid all-reduce: its own stream, so each stream's collectives share one group


def _members(it: Iteration, d: int, s: int, j: int) -> list[int]:
    """The ranks of replica ``d``'s shard group on (stage s, TP rank j)."""
    size = it.plan.shards
    first = d // size * size
    return [it.plan.rank(first + x, s, j) for x in range(size)]


def _replicas(it: Iteration, d: int, s: int, j: int) -> list[int]:
    """The ranks holding the same shard as replica ``d`` in the other shard groups."""
    size = it.plan.shards
    return [it.plan.rank(g * size + d % size, s, j) for g in range(it.plan.replicas // size)]


def _mirrors(it: Iteration, s: int, across: bool) -> tuple[tuple[int, ...], ...]:
    """Folded runs: the shard groups (or, ``across``, the replica groups) of
    the (replica, TP rank) pairs not simulated."""
    plan = it.plan
    if not it.bld.folded:
        return ()
    size = plan.shards
    firsts = range(size) if across else range(0, plan.replicas, size)
    of = _replicas if across else _members
    return tuple(tuple(of(it, d, s, j)) for d in firsts for j in range(plan.tp) if (d, j) != (0, 0))


def _simulated_members(it: Iteration) -> int:
    return 1 if it.bld.folded else it.plan.shards


def _layer_bytes(it: Iteration) -> float:
    return layer_params(it.cfg) / it.plan.tp * it.cfg.dtype_bytes


def gather_root(stage: Stage) -> None:
    """Stage 3: the root unit's parameters, gathered before the stage's first unit."""
    it = stage.it
    nbytes = root_params(it.cfg, it.plan, stage.s) * it.cfg.dtype_bytes
    if it.plan.zero < 3 or not nbytes:
        return
    _gather(stage, ("root",), nbytes, "root", [], "params.root")


def _gather(stage: Stage, key: tuple, nbytes: float, label: str, after: dict, tensor: str) -> dict[int, int]:
    it, bld, s = stage.it, stage.bld, stage.s
    ids = {}
    for j, rank in stage.ranks.items():
        deps = [after[j]] if after else []
        group = _members(it, stage.d, s, j)
        ids[j] = bld.shared_collective(("gather", s, j, group[0]) + key, _simulated_members(it), deps,
                                       "allgather", f"s{s}.{label}.param_allgather", nbytes, group,
                                       _mirrors(it, s, False), AG_STREAM, "dp", it.plan.dp_algorithm,
                                       tensor=tensor, alloc_bytes=nbytes, stage=s)
        stage.waits[j].append(ids[j])
    return ids


def gather_layer(stage: Stage, layer: int, use: str) -> str | None:
    """Stage 3: all-gather ``layer``'s parameters before its ``use`` (a unit's
    forward or backward); returns the buffer its last op must free."""
    it = stage.it
    if it.plan.zero < 3:
        return None
    tensor = f"params.{use}.L{layer}"
    uses = stage.param_uses
    previous = len(uses) - 1 - it.plan.zero_prefetch
    _gather(stage, (use, layer), _layer_bytes(it), f"{use}.L{layer}", uses[previous] if previous >= 0 else {},
            tensor)
    return tensor


def layer_done(stage: Stage) -> None:
    """Stage 3: the use of a layer's gathered parameters ends with each rank's last op."""
    if stage.it.plan.zero >= 3:
        stage.param_uses.append({j: stage.bld.last_compute[rank] for j, rank in stage.ranks.items()})


def gradient_buffer(stage: Stage, layer: int, m: int) -> dict:
    """Stages 2 and 3: what the layer's first weight-gradient op allocates."""
    it = stage.it
    if it.plan.zero < 2:
        return {}
    return {"tensor": f"grad.m{m}.L{layer}", "alloc_bytes": _layer_bytes(it)}


def reduce_gradients(stage: Stage, key: tuple, nbytes: float, label: str, tensor: str | None) -> None:
    """Reduce-scatter gradients over the shard group after each rank's last
    op (freeing ``tensor``), then with hybrid sharding all-reduce the shard
    over the replica groups."""
    it, bld, s, plan = stage.it, stage.bld, stage.s, stage.it.plan
    frees = {"frees": (tensor,)} if tensor else {}
    for j, rank in stage.ranks.items():
        group = _members(it, stage.d, s, j)
        op_id = bld.shared_collective(("reduce", s, j, group[0]) + key, _simulated_members(it),
                                      [bld.last_compute[rank]], "reduce_scatter",
                                      f"s{s}.{label}.grad_reduce_scatter", nbytes, group, _mirrors(it, s, False),
                                      DP_STREAM, "dp", plan.dp_algorithm, stage=s, **frees)
        if plan.shards < plan.replicas:
            replicas = _replicas(it, stage.d, s, j)
            members = 1 if bld.folded else plan.replicas // plan.shards
            op_id = bld.shared_collective(("replicas", s, j, replicas[0]) + key, members, [op_id], "allreduce",
                                          f"s{s}.{label}.grad_allreduce", nbytes / plan.shards, replicas,
                                          _mirrors(it, s, True), REPLICA_STREAM, "dp", plan.dp_algorithm, stage=s)
        it.grad_syncs.setdefault((s, j), {})[op_id] = None


def reduce_layer(stage: Stage, layer: int, m: int) -> None:
    """Stages 2 and 3: a layer's gradients after its weight-gradient GEMMs."""
    if stage.it.plan.zero >= 2:
        reduce_gradients(stage, ("layer", m, layer), _layer_bytes(stage.it), f"m{m}.L{layer}",
                         f"grad.m{m}.L{layer}")


def root_gradient_buffer(stage: Stage, first_backward: bool) -> dict:
    """Stages 2 and 3: the root unit's unsharded gradients, allocated by its
    first backward op of the iteration."""
    it = stage.it
    nbytes = root_params(it.cfg, it.plan, stage.s) * it.cfg.dtype_bytes
    if it.plan.zero < 2 or not nbytes or not first_backward:
        return {}
    return {"tensor": "grad.root", "alloc_bytes": nbytes}


def finish_stage(stage: Stage) -> None:
    """Stages 2 and 3: the root unit's gradients, after the stage's last backward."""
    it = stage.it
    nbytes = root_params(it.cfg, it.plan, stage.s) * it.cfg.dtype_bytes
    if it.plan.zero >= 2 and nbytes:
        reduce_gradients(stage, ("root",), nbytes, "root", "grad.root")
