"""The optimizer step and ZeRO's sharding of optimizer state (Rajbhandari et
al., "ZeRO: Memory Optimizations Toward Training Trillion Parameter Models",
SC'20).

The step is mixed-precision Adam, memory-bound: per parameter it reads a
bf16 gradient and the fp32 master weight, momentum and variance and writes
the last three and the bf16 weight, 28 bytes, at the achievable HBM bandwidth; about 10
FLOPs. With ``parallel.optimizer: megatron_fp16`` it is the passes of
Megatron-LM's ``Float16OptimizerWithFloat16Params.step`` of 2021-22
(NVIDIA/Megatron-LM megatron/optimizer/optimizer.py), 52 bytes per parameter:
copy the fp16 gradients to fp32 main gradients (read 2, write 4), unscale
and check for inf/nan (read 4, write 4), the gradient norm for clipping
(read 4; the rescale when the norm exceeds the clip is left out), apex's
FusedAdam on fp32 main parameter, gradient, momentum and variance (read 16,
write 12), copy the main parameters back to the fp16 model (read 4, write 2). With ZeRO each rank steps 1/N_d of the parameters (N_d the shard
group): with stage 1 the gradients are reduce-scattered at the end of the
backward (sim.parallel.emit.data), with stages 2 and 3 per layer as they are
produced (sim.parallel.emit.fsdp); stages 1 and 2 then all-gather the updated
parameters over the shard group, stage 3 gathers them before each use.

With ``offload_optimizer`` (ZeRO-Offload, Ren et al., USENIX ATC'21) the
state lives in host memory: each rank copies its bf16 gradient shard to the
host, the host runs Adam (the 28 bytes per parameter through the device's
host tier), and the updated bf16 parameters are copied back, on stream 5.
"""

from __future__ import annotations

from sim.errors import ScenarioError
from sim.parallel.emit.builder import Iteration
from sim.parallel.emit.data import DP_STREAM
from sim.hardware.specs import DeviceSpec
from sim.parallel.expand import Segment, memory_bound_segment
from sim.parallel.memory import optimizer_params, stage_expert_params, stage_params

OPTIMIZER_FLOPS_PER_PARAM = 10.0
OPTIMIZER_BYTES_PER_PARAM = 28.0  # Adam: read bf16 grad, fp32 master/m/v; write those and bf16 weights
# per parameter.optimizer choice: the fused step, and Megatron-LM's fp16 optimizer passes
# (copy grads 2+4, unscale 4+4, norm 4, FusedAdam 16+12, copy params 4+2)
STEP_BYTES_PER_PARAM = {"fused": OPTIMIZER_BYTES_PER_PARAM, "megatron_fp16": 6.0 + 8.0 + 4.0 + 28.0 + 6.0}
OFFLOAD_STREAM = 5


def gradient_collective(it: Iteration) -> str:
    """How the data-parallel group synchronises gradients."""
    return "reduce_scatter" if it.plan.zero >= 1 else "allreduce"


def optimizer_segment(params: float, spec: DeviceSpec, optimizer: str = "fused") -> Segment:
    """Adam over ``params`` parameters: one memory-bound segment moving
    ``STEP_BYTES_PER_PARAM[optimizer]`` bytes each (a launch plus the bytes at
    the achievable bandwidth)."""
    return memory_bound_segment("optimizer", OPTIMIZER_FLOPS_PER_PARAM * params,
                                STEP_BYTES_PER_PARAM[optimizer] * params, spec)


def host_tier(it: Iteration, rank: int) -> str:
    spec = it.spec_of_rank(rank)
    host = next((t.name for t in spec.memory if t.kind in ("host", "ddr")), None)
    if host is None:
        raise ScenarioError(f"parallel.offload_optimizer: device {spec.name} has no host memory tier "
                            f"to hold the optimizer state")
    return host


def _offloaded_step(it: Iteration, rank: int, s: int, params: float, deps: list[int]) -> int:
    """ZeRO-Offload's step: the gradient shard to the host, Adam on the host
    (28 bytes per parameter through the host tier, the bound this project
    gives host-side Adam, as sim.memory.offload does), the updated bf16
    parameters back; returns the last op."""
    spec = it.spec_of_rank(rank)
    host = host_tier(it, rank)
    nbytes = it.cfg.dtype_bytes * params
    tag = {"stage": s, "phase": "optimizer"}
    grads = it.bld.copy(rank, f"s{s}.optimizer.grad_to_host", nbytes, spec.default_tier, host, deps,
                        stream=OFFLOAD_STREAM, **tag)
    seconds = OPTIMIZER_BYTES_PER_PARAM * params / spec.tier(host).bandwidth_bytes_per_s
    step = it.bld.host(rank, f"s{s}.optimizer.host_adam", seconds, [grads], stream=OFFLOAD_STREAM, **tag)
    return it.bld.copy(rank, f"s{s}.optimizer.params_to_device", nbytes, host, spec.default_tier, [step],
                       stream=OFFLOAD_STREAM, **tag)


def optimizer_step(it: Iteration, dp_ops: dict[tuple[int, int], list[int]],
                   emb_ops: dict[tuple[int, int], int]) -> dict[tuple[int, int], list[int]]:
    """The step on every simulated rank after its gradients are synchronised;
    (stage, TP rank) -> its last ops, in replica order."""
    plan = it.plan
    steps: dict[tuple[int, int], list[int]] = {}
    for d in it.dps:
        for s in range(plan.pp):
            for j in it.tps:
                rank = plan.rank(d, s, j)
                spec = it.spec_of_rank(rank)
                params = optimizer_params(it.cfg, plan, s)
                deps = list(dp_ops.get((s, j), []))
                if (d, j) in emb_ops and s in (0, plan.pp - 1):
                    deps.append(emb_ops[(d, j)])
                if plan.offload_optimizer:
                    last = _offloaded_step(it, rank, s, params, deps)
                else:
                    seg = optimizer_segment(params, spec, plan.optimizer)
                    last = it.bld.compute(rank, seg, f"s{s}.optimizer", deps, stage=s, phase="optimizer")
                steps.setdefault((s, j), []).append(last)
    return steps


def parameter_allgather(it: Iteration, steps: dict[tuple[int, int], list[int]]) -> None:
    """ZeRO stages 1 and 2: every replica of a shard group gathers the
    parameters the others updated (stage 3 gathers them before use instead).
    ``steps`` lists each (stage, TP rank)'s last optimizer ops in replica order."""
    plan, bld = it.plan, it.bld
    size = plan.shards
    if plan.zero not in (1, 2) or size == 1:
        return
    for (s, j), deps in sorted(steps.items()):
        nbytes = (stage_params(it.cfg, plan, s) - stage_expert_params(it.cfg, plan, s)) * it.cfg.dtype_bytes
        if size == plan.replicas:
            group = [plan.rank(d, s, j) for d in range(plan.replicas)]
            mirror = bld.mirrors(lambda dd, jj: [plan.rank(x, s, jj) for x in range(plan.replicas)], "t")
            bld.collective("allgather", f"s{s}.dp.param_allgather", nbytes, group, mirror, deps, DP_STREAM,
                           "dp", plan.dp_algorithm, stage=s)
            continue
        for first in ([0] if bld.folded else range(0, plan.replicas, size)):  # one all-gather per shard group
            group = [plan.rank(first + x, s, j) for x in range(size)]
            mirror = tuple(tuple(plan.rank(g + x, s, jj) for x in range(size))
                           for g in range(0, plan.replicas, size) for jj in range(plan.tp)
                           if (g, jj) != (0, 0)) if bld.folded else ()
            mine = deps if bld.folded else deps[first:first + size]
            bld.collective("allgather", f"s{s}.dp.param_allgather", nbytes, group, mirror, mine, DP_STREAM,
                           "dp", plan.dp_algorithm, stage=s)
