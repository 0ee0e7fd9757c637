"""Layer segments: one layer's kernels, priced on a device and fused.

The expansion of a training iteration into a trace is in sim.parallel.emit
(one module per parallelism technique); it prices each layer's work with the
segments made here. Segments are fused ops whose ``duration_s`` is the sum of
the isolated times of their kernels on the stage's device and whose flops and
bytes are the sums, so a layer costs a handful of ops rather than forty.
sim.workload.layer_kernels lists the kernels (GEMMs, fused FlashAttention or
materialized scores and softmax, Megatron-LM's fused or unfused pointwise
kernels, Transformer Engine's fp8 casts); sim.hardware.kernels prices them
(GEMM tiles, waves and split-K, FlashAttention blocks, the roofline at the
achievable bandwidth, a launch overhead per kernel), each distinct shape once
per device spec. With flash attention, selective recomputation has nothing to
replay (the attention backward recomputes the scores itself): no
``recompute.core`` segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sim.errors import ScenarioError
from sim.hardware.gemm import precision
from sim.hardware.kernels import Kernel, isolated_seconds
from sim.hardware.specs import DeviceSpec
from sim.parallel.plan import ParallelPlan
from sim.workload.layer_kernels import layer_kernels
from sim.workload.transformer import ModelConfig

FIDELITIES = ("folded", "full")


@dataclass(frozen=True)
class Segment:
    """A fused op: several kernels priced on one device."""

    name: str
    flops: float
    matrix_flops: float
    bytes_read: float
    bytes_written: float
    duration_s: float
    parts: int


def unit_for(kernel: Kernel, spec: DeviceSpec) -> str:
    """The unit a kernel runs on: the SM array, else the systolic arrays for
    GEMMs and attention, else the vector unit."""
    if spec.sm_array is not None:
        return "sm_array"
    if kernel.kind in ("gemm", "attention") and spec.systolic_array is not None:
        return "systolic_array"
    return "vector"


def fuse(name: str, kernels: list[Kernel], spec: DeviceSpec) -> Segment:
    """Kernels run back to back on one device: their isolated times add up."""
    seconds = sum(isolated_seconds(k, spec, unit_for(k, spec)) for k in kernels)
    return Segment(name, sum(k.flops for k in kernels),
                   sum(k.flops for k in kernels if k.kind in ("gemm", "attention")),
                   sum(k.bytes_read for k in kernels), sum(k.bytes_written for k in kernels), seconds, len(kernels))


_SEGMENT_NAMES = {"fwd.attn": "attn", "fwd.mlp": "mlp", "bwd.mlp.dgrad": "mlp.dgrad", "bwd.mlp.wgrad": "mlp.wgrad",
                  "bwd.attn.dgrad": "attn.dgrad", "bwd.attn.wgrad": "attn.wgrad", "recompute.core": "attn.core",
                  "fwd.head": "lm_head", "bwd.head": "lm_head.bwd", "fwd.embed": "embedding",
                  "bwd.embed": "embedding.bwd"}


def layer_segments(cfg: ModelConfig, plan: ParallelPlan, spec: DeviceSpec) -> dict[str, Segment]:
    """The segments of one layer (and the LM head and embedding) on one TP
    rank: the kernels of sim.workload.layer_kernels fused per phase, with
    tensor-parallel shapes (Megatron-LM SC'21 Sec. 3.2). A phase without
    kernels has no segment."""
    if spec.sm_array is not None:
        table = spec.sm_array.matrix_flops_per_clock_per_sm
        if precision(cfg.dtype).math not in table:
            raise ScenarioError(f"model.dtype: {cfg.dtype} GEMMs need {precision(cfg.dtype).math} tensor cores; "
                                f"device {spec.name} has {sorted(table)}")
    kernels = layer_kernels(cfg, plan.microbatch_size, plan.tp, plan.sequence_parallel)
    return {key: fuse(_SEGMENT_NAMES[key], ks, spec) for key, ks in kernels.items() if ks}


def memory_bound_segment(name: str, flops: float, bytes_moved: float, spec: DeviceSpec) -> Segment:
    """One memory-bound kernel (the optimizer step): a launch plus its bytes
    at the achievable bandwidth of the default tier (sim.hardware.kernels)."""
    return fuse(name, [Kernel(name, "pointwise", flops, bytes_moved / 2, bytes_moved / 2, "fp32")], spec)


def expand_training(cfg: ModelConfig, plan: ParallelPlan, spec_of_rank: Callable[[int], DeviceSpec],
                    fidelity: str = "folded", optimizer_step: bool = True):
    """One training iteration as a trace: see sim.parallel.emit.expand_training."""
    from sim.parallel.emit import expand_training as expand
    return expand(cfg, plan, spec_of_rank, fidelity, optimizer_step)
