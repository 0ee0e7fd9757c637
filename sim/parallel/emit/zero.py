"""The optimizer step and ZeRO's sharding of optimizer state (Rajbhandari et
al., "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models",
SC'20).

The step is mixed-precision Adam, memory-bound: per parameter it reads a
bf16 gradient and the fp32 master weight, momentum and variance and writes
the last three and the bf16 weight, 28 bytes, at the achievable HBM bandwidth; about 10
FLOPs. With ZeRO stage 1 each data-parallel rank steps 1/dp of the
parameters: the gradients are reduce-scattered (sim.parallel.emit.data) and
the updated parameters all-gathered after the step.
"""

from __future__ import annotations

from sim.parallel.emit.builder import Iteration
from sim.parallel.emit.data import DP_STREAM
from sim.hardware.specs import DeviceSpec
from sim.parallel.expand import Segment, memory_bound_segment
from sim.parallel.memory import stage_params

OPTIMIZER_FLOPS_PER_PARAM = 10.0
OPTIMIZER_BYTES_PER_PARAM = 28.0  # Adam: read bf16 grad, fp32 master/m/v; write those and bf16 weights


def gradient_collective(it: Iteration) -> str:
    """How the data-parallel group synchronises gradients."""
    return "reduce_scatter" if it.plan.zero >= 1 else "allreduce"


def optimizer_segment(params: float, spec: DeviceSpec) -> Segment:
    """Adam over ``params`` parameters: one memory-bound kernel moving 28 bytes
    each (a launch plus the bytes at the achievable bandwidth)."""
    return memory_bound_segment("optimizer", OPTIMIZER_FLOPS_PER_PARAM * params,
                                OPTIMIZER_BYTES_PER_PARAM * params, spec)


def optimizer_step(it: Iteration, dp_ops: dict[tuple[int, int], list[int]],
                   emb_ops: dict[tuple[int, int], int]) -> dict[tuple[int, int], list[int]]:
    """The step on every simulated rank after its gradients are synchronised;
    (stage, TP rank) -> its ops."""
    plan = it.plan
    shards = plan.dp if plan.zero >= 1 else 1
    steps: dict[tuple[int, int], list[int]] = {}
    for d in it.dps:
        for s in range(plan.pp):
            for j in it.tps:
                rank = plan.rank(d, s, j)
                spec = it.spec_of_rank(rank)
                params = stage_params(it.cfg, plan, s) / shards
                seg = optimizer_segment(params, spec)
                deps = list(dp_ops.get((s, j), []))
                if (d, j) in emb_ops and s in (0, plan.pp - 1):
                    deps.append(emb_ops[(d, j)])
                steps.setdefault((s, j), []).append(
                    it.bld.compute(rank, seg, f"s{s}.optimizer", deps, stage=s, phase="optimizer"))
    return steps


def parameter_allgather(it: Iteration, steps: dict[tuple[int, int], list[int]]) -> None:
    """ZeRO-1: every replica gathers the parameters the others updated."""
    plan, bld = it.plan, it.bld
    if plan.zero < 1 or plan.dp == 1:
        return
    for (s, j), deps in sorted(steps.items()):
        group = [plan.rank(d, s, j) for d in range(plan.dp)]
        mirror = bld.mirrors(lambda dd, jj: [plan.rank(x, s, jj) for x in range(plan.dp)], "t")
        bld.collective("allgather", f"s{s}.dp.param_allgather", stage_params(it.cfg, plan, s) * it.cfg.dtype_bytes,
                       group, mirror, deps, DP_STREAM, "dp", plan.dp_algorithm, stage=s)
