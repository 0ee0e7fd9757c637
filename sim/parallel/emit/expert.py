"""Expert parallelism: MoE layers with token dispatch and combine all-to-alls
(Lepikhin et al., "GShard", ICLR 2021; Fedus et al., "Switch Transformers",
JMLR 2022; Megatron-Core's MoE with its all-to-all token dispatcher).

Per MoE layer and unit, on each rank of an expert-parallel group
(sim.parallel.experts), in place of the dense MLP block:

- forward: the router (residual, layer norm, gate GEMM, top-k, permutation),
  the dispatch all-to-all of the routed token copies over the EP group (on
  stream 7, phase ``ep``), the shared experts meanwhile (they need no tokens
  from elsewhere, as DeepSeek-V3 overlaps them), the rank's experts once the
  dispatch is done, the combine all-to-all back, then the weighted sum and
  residual;
- backward: the combine's gradient, its all-to-all, the shared experts'
  gradients meanwhile, the experts' input gradients, the dispatch's gradient
  all-to-all with the experts' weight gradients overlapping it, the router's
  gradient; with a split backward the experts' and shared experts' weight
  gradients form the W pass; full recomputation replays the forward, its
  all-to-alls included.

The all-to-all's ``nbytes`` is per rank, what each sends (sim.network's
convention): the routed copies of its b s / t tokens, h elements each. With
imbalanced routing ranks send and receive different amounts; the collective
is costed as a uniform exchange of the largest of them (the most loaded rank
bounds a pairwise exchange). Each rank's experts compute its own load
(sim.workload.moe.expert_loads, the same draw for every group); in folded
runs the simulated rank carries the group's mean FLOPs and the most loaded
rank's time, which is when the combine can start for everyone.

Expert gradients are synchronised over the expert-data-parallel group in
buckets as their last backward finishes (all-reduce, or reduce-scatter with
ZeRO-1, then the parameter all-gather after the step).
"""

from __future__ import annotations

from sim.parallel.emit.builder import Iteration, Stage
from sim.parallel.emit.data import DP_STREAM
from sim.parallel.experts import ep_group, ep_groups, ep_index, expert_dp_group, moe_layer_params
from sim.parallel.expand import Segment
from sim.parallel.memory import stage_expert_params
from sim.parallel.moe_segments import Pricer, dense_segments, expert_segments
from sim.workload.moe import expert_loads

EP_STREAM = 7


def is_moe(stage: Stage, layer: int) -> bool:
    moe = stage.it.cfg.moe
    return moe is not None and moe.is_moe(layer)


def _tokens(it: Iteration) -> int:
    """Tokens of one rank's shard of a microbatch."""
    return it.plan.microbatch_size * it.cfg.seq_len // (it.plan.tp * it.plan.cp)


def _state(it: Iteration) -> dict:
    return it.extras.setdefault("moe", {"pricers": {}, "dense": {}, "experts": {}})


def _pricer(it: Iteration, rank: int) -> Pricer:
    spec = it.spec_of_rank(rank)
    pricers = _state(it)["pricers"]
    if spec.name not in pricers:
        pricers[spec.name] = Pricer(spec)
    return pricers[spec.name]


def _dense(it: Iteration, rank: int) -> dict[str, Segment]:
    pricer = _pricer(it, rank)
    cache = _state(it)["dense"]
    if pricer.spec.name not in cache:
        cache[pricer.spec.name] = dense_segments(it.cfg, _tokens(it), pricer)
    return cache[pricer.spec.name]


def _loads(it: Iteration, layer: int, m: int) -> tuple[int, ...]:
    return expert_loads(it.cfg.moe, _tokens(it) * it.plan.ep, layer, m)


def _experts(it: Iteration, rank: int, loads: tuple[int, ...], index: int) -> dict[str, Segment]:
    """Expert segments of EP index ``index``, or with ``index`` None the
    folded representative: the mean FLOPs and bytes, the slowest time."""
    per_rank = it.cfg.moe.experts // it.plan.ep
    pricer = _pricer(it, rank)
    cache = _state(it)["experts"]
    key = (pricer.spec.name, loads, index)
    if key not in cache:
        ranks = range(it.plan.ep) if index is None else [index]
        each = [expert_segments(it.cfg, loads[r * per_rank:(r + 1) * per_rank], pricer) for r in ranks]
        cache[key] = {name: _representative([seg[name] for seg in each]) for name in each[0]}
    return cache[key]


def _representative(segments: list[Segment]) -> Segment:
    n = len(segments)
    first = segments[0]
    if n == 1:
        return first
    return Segment(first.name, sum(s.flops for s in segments) / n, sum(s.matrix_flops for s in segments) / n,
                   sum(s.bytes_read for s in segments) / n, sum(s.bytes_written for s in segments) / n,
                   max(s.duration_s for s in segments), first.parts)


def _alltoall_bytes(it: Iteration, loads: tuple[int, ...]) -> float:
    """Per-rank bytes of the exchange: the most any rank sends or receives."""
    per_rank = it.cfg.moe.experts // it.plan.ep
    received = max(sum(loads[r * per_rank:(r + 1) * per_rank]) for r in range(it.plan.ep))
    sent = sum(loads) / it.plan.ep
    return max(received, sent) * it.cfg.hidden * it.cfg.dtype_bytes


def _alltoall(stage: Stage, key: tuple, label: str, nbytes: float, phase: str) -> dict[int, int]:
    """The all-to-all over each simulated rank's EP group after its pending
    work; returns the op per TP rank (not yet waited on)."""
    it, bld, plan, s = stage.it, stage.bld, stage.it.plan, stage.s
    mine = ep_group(plan, 0, s, 0)
    mirrors = tuple(tuple(g) for g in ep_groups(plan, s) if g != mine) if bld.folded else ()
    members = 1 if bld.folded else plan.ep
    ops = {}
    for j, rank in stage.ranks.items():
        group = ep_group(plan, stage.d, s, j)
        deps = stage.waits[j] + [bld.last_compute[rank]]
        ops[j] = bld.shared_collective(("alltoall", s, group[0]) + key, members, deps, "alltoall",
                                       f"{stage.prefix}.{label}.alltoall", nbytes, group, mirrors, EP_STREAM,
                                       "ep", plan.ep_algorithm, **stage.tag)
        stage.waits[j] = []
    return ops


def _expert_segments(stage: Stage, loads: tuple[int, ...]) -> dict[int, dict[str, Segment]]:
    it = stage.it
    return {j: _experts(it, rank, loads, None if stage.bld.folded else ep_index(it.plan, stage.d, stage.s, j))
            for j, rank in stage.ranks.items()}


class _Layer:
    """One MoE layer's MLP part in one unit on one stage: its segments per TP
    rank and the all-to-all size, with helpers to emit them."""

    def __init__(self, stage: Stage, layer: int, m: int, phase: str, label: str = ""):
        it = stage.it
        self.stage, self.layer, self.m, self.phase = stage, layer, m, phase
        self.tag = f"L{layer}.{label}moe"
        loads = _loads(it, layer, m)
        self.nbytes = _alltoall_bytes(it, loads)
        self.dense = {j: _dense(it, rank) for j, rank in stage.ranks.items()}
        self.experts = _expert_segments(stage, loads)

    def run(self, name: str, label: str, **extra) -> None:
        """The segment ``name`` (dense or expert) on every simulated rank."""
        source = self.experts if name.startswith("moe.experts") else self.dense
        self.stage.compute_each({j: segs[name] for j, segs in source.items()}, f"{self.tag}.{label}",
                                self.phase, layer=self.layer, **extra)

    def alltoall(self, which: str, label: str) -> dict[int, int]:
        return _alltoall(self.stage, (self.phase, self.m, self.layer, which), f"{self.tag}.{label}",
                         self.nbytes, self.phase)

    def wait(self, ops: dict[int, int]) -> None:
        for j in self.stage.waits:
            self.stage.waits[j].append(ops[j])


def forward(stage: Stage, layer: int, m: int, phase: str = "fwd", label: str = "", **extra) -> None:
    """A MoE layer's MLP part (see the module docstring); ``extra`` goes to its first op."""
    moe = _Layer(stage, layer, m, phase, label)
    moe.run("moe.router", "router", **extra)
    dispatch = moe.alltoall("dispatch", "dispatch")
    if stage.it.cfg.moe.shared_experts:
        moe.run("moe.shared", "shared")
    moe.wait(dispatch)
    moe.run("moe.experts", "experts")
    moe.wait(moe.alltoall("combine", "combine"))
    moe.run("moe.combine", "combine")


def backward_input(stage: Stage, layer: int, m: int, with_weights: bool) -> None:
    """The MLP part's backward; ``with_weights``: the weight gradients too
    (overlapping the dispatch's gradient all-to-all), else they wait for the W pass."""
    moe = _Layer(stage, layer, m, "bwd")
    moe.run("moe.combine.bwd", "combine.bwd")
    combine = moe.alltoall("combine", "combine.bwd")
    if stage.it.cfg.moe.shared_experts:
        moe.run("moe.shared.dgrad", "shared.dgrad")
        if with_weights:
            moe.run("moe.shared.wgrad", "shared.wgrad")
    moe.wait(combine)
    moe.run("moe.experts.dgrad", "experts.dgrad")
    dispatch = moe.alltoall("dispatch", "dispatch.bwd")
    if with_weights:
        moe.run("moe.experts.wgrad", "experts.wgrad")
        expert_gradients_done(stage, layer)
    moe.wait(dispatch)
    moe.run("moe.router.bwd", "router.bwd")


def backward_weight(stage: Stage, layer: int, m: int) -> None:
    """The W pass of a MoE layer's MLP part: experts' and shared experts' weight gradients."""
    moe = _Layer(stage, layer, m, "bwd")
    moe.run("moe.experts.wgrad", "experts.wgrad")
    expert_gradients_done(stage, layer)
    if stage.it.cfg.moe.shared_experts:
        moe.run("moe.shared.wgrad", "shared.wgrad")


def expert_gradients_done(stage: Stage, layer: int) -> None:
    """Note each rank's last expert weight-gradient op of the layer (the last
    one of the iteration is what the expert gradient sync waits for)."""
    ready = stage.it.extras.setdefault("expert_grads", {})
    for rank in stage.ranks.values():
        ready.setdefault(rank, {})[layer] = stage.bld.last_compute[rank]


def gradient_buckets(it: Iteration, kind: str) -> dict[tuple[int, int], list[int]]:
    """Expert gradients over each expert-data-parallel group, in buckets of
    ``dp_bucket_bytes`` in backward order (one after the last, without
    ``overlap_grad_reduce``); (stage, TP rank) -> their ops."""
    plan, bld = it.plan, it.bld
    out: dict[tuple[int, int], list[int]] = {}
    if it.cfg.moe is None or plan.replicas * plan.tp == plan.ep:
        return out
    ready: dict[int, dict[int, int]] = it.extras.get("expert_grads", {})
    per_layer = moe_layer_params(it.cfg, plan)[1] * it.cfg.dtype_bytes
    for s in range(plan.pp):
        groups: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        for d in it.dps:
            for j in it.tps:
                groups.setdefault(tuple(expert_dp_group(plan, d, s, j)), []).append((plan.rank(d, s, j), j))
        mirrors = tuple(g for g in _expert_dp_groups(plan, s) if g not in groups) if bld.folded else ()
        for group, members in groups.items():
            layers = list(ready.get(members[0][0], {}))
            bucket, deps = 0.0, []
            for index, layer in enumerate(layers):
                deps += [ready[rank][layer] for rank, _ in members]
                bucket += per_layer
                if (plan.overlap_grad_reduce and bucket >= plan.dp_bucket_bytes) or index == len(layers) - 1:
                    op_id = bld.collective(kind, f"s{s}.expert_dp.{kind}.L{layer}", bucket, list(group), mirrors,
                                           deps, DP_STREAM, "dp", plan.dp_algorithm, stage=s)
                    for _, j in members:
                        out.setdefault((s, j), []).append(op_id)
                    bucket, deps = 0.0, []
    return out


def _expert_dp_groups(plan, s: int) -> list[tuple[int, ...]]:
    """Every expert-data-parallel group of stage ``s``."""
    groups: list[tuple[int, ...]] = []
    for d in range(plan.replicas):
        for j in range(plan.tp):
            group = tuple(expert_dp_group(plan, d, s, j))
            if group not in groups:
                groups.append(group)
    return groups


def parameter_allgather(it: Iteration, steps: dict[tuple[int, int], list[int]]) -> None:
    """ZeRO-1: each expert-data-parallel group gathers the expert parameters
    its members updated. ``steps``: each (stage, TP rank)'s optimizer ops in
    replica order."""
    plan, bld = it.plan, it.bld
    size = plan.replicas * plan.tp // plan.ep
    if it.cfg.moe is None or plan.zero != 1 or size == 1:
        return
    for s in range(plan.pp):
        nbytes = stage_expert_params(it.cfg, plan, s) * it.cfg.dtype_bytes
        if not nbytes:
            continue
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, d in enumerate(it.dps):
            for j in it.tps:
                group = tuple(expert_dp_group(plan, d, s, j))
                groups.setdefault(group, []).append(steps[(s, j)][index])
        mirrors = tuple(g for g in _expert_dp_groups(plan, s) if g not in groups) if bld.folded else ()
        for group, deps in groups.items():
            bld.collective("allgather", f"s{s}.expert_dp.param_allgather", nbytes, list(group), mirrors, deps,
                           DP_STREAM, "dp", plan.dp_algorithm, stage=s)
