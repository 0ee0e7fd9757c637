"""Layer segments: one layer's GEMMs and pointwise ops, priced on a device and fused.

The expansion of a training iteration into a trace is in sim.parallel.emit
(one module per parallelism technique); it prices each layer's work with the
segments made here. Segments are fused ops whose ``duration_s`` is the sum of
the isolated times of their GEMMs and pointwise ops on the stage's device
(tile/wave or fold quantization and the roofline, sim.hardware.cost) and whose
flops and bytes are the sums, so a layer costs a handful of ops rather than forty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sim.engine.device import bind_op, isolated_seconds
from sim.hardware.specs import DeviceSpec
from sim.parallel.plan import ParallelPlan
from sim.workload.trace import MATRIX_OPS, Op
from sim.workload.transformer import ModelConfig, OpBuilder

FIDELITIES = ("folded", "full")


@dataclass(frozen=True)
class Segment:
    """A fused op: several GEMMs and pointwise ops priced on one device."""

    name: str
    flops: float
    matrix_flops: float
    bytes_read: float
    bytes_written: float
    duration_s: float
    parts: int


def _fuse(name: str, ops: list[Op], spec: DeviceSpec) -> Segment:
    seconds = sum(isolated_seconds(bind_op(op, spec, "model"), spec) for op in ops)
    return Segment(name, sum(o.flops for o in ops), sum(o.flops for o in ops if o.op in MATRIX_OPS),
                   sum(o.bytes_read for o in ops), sum(o.bytes_written for o in ops), seconds, len(ops))


def layer_segments(cfg: ModelConfig, plan: ParallelPlan, spec: DeviceSpec) -> dict[str, Segment]:
    """The segments of one layer on one TP rank, with tensor-parallel shapes:
    QKV and fc1 split their output columns, projection and fc2 their input
    rows, attention its heads, by t (Megatron-LM SC'21 Sec. 3.2). Pointwise
    ops on the full hidden state are replicated, or split by t with sequence
    parallelism."""
    b, s, h, t = plan.microbatch_size, cfg.seq_len, cfg.hidden, plan.tp
    tokens = b * s
    heads = cfg.heads // t
    hd = cfg.head_dim
    qkv = (h + 2 * cfg.kv_dim) // t
    fc1 = (2 * cfg.ffn if cfg.gated_mlp else cfg.ffn) // t
    ffn = cfg.ffn // t
    point = tokens // t if plan.sequence_parallel else tokens
    g = OpBuilder(cfg.dtype)

    def gemm(name, m, n, k, batch=1, shared=True):
        g.gemm(name, m, n, k, batch=batch, shared_b=shared)
        return g.ops[-1]

    def pw(name, kind, elements, reads, flops):
        g.pointwise(name, kind, elements, reads, flops)
        return g.ops[-1]

    core = [gemm("scores", s, s, hd, b * heads, False), pw("softmax", "softmax", b * heads * s * s, 1, 5.0),
            gemm("values", s, hd, s, b * heads, False)]
    fwd_attn = [pw("ln1", "norm", point * h, 1, 5.0), gemm("qkv", tokens, qkv, h), *core,
                gemm("proj", tokens, h, h // t)]
    fwd_mlp = [pw("residual1", "elementwise", point * h, 2, 1.0), pw("ln2", "norm", point * h, 1, 5.0),
               gemm("fc1", tokens, fc1, h), pw("act", "elementwise", tokens * ffn, 2 if cfg.gated_mlp else 1, 8.0),
               gemm("fc2", tokens, h, ffn), pw("residual2", "elementwise", point * h, 2, 1.0)]
    bwd_mlp_dgrad = [pw("residual2_bwd", "elementwise", point * h, 1, 1.0), gemm("fc2_dgrad", tokens, ffn, h),
                     pw("act_bwd", "elementwise", tokens * ffn, 2, 8.0), gemm("fc1_dgrad", tokens, h, fc1),
                     pw("ln2_bwd", "norm", point * h, 2, 5.0)]
    bwd_mlp_wgrad = [gemm("fc2_wgrad", ffn, h, tokens), gemm("fc1_wgrad", h, fc1, tokens)]
    bwd_attn_dgrad = [gemm("proj_dgrad", tokens, h // t, h), gemm("values_dgrad", s, s, hd, b * heads, False),
                      gemm("values_wgrad", s, hd, s, b * heads, False),
                      pw("softmax_bwd", "softmax", b * heads * s * s, 2, 5.0),
                      gemm("scores_dq", s, hd, s, b * heads, False), gemm("scores_dk", s, hd, s, b * heads, False),
                      gemm("qkv_dgrad", tokens, h, qkv), pw("ln1_bwd", "norm", point * h, 2, 5.0)]
    bwd_attn_wgrad = [gemm("proj_wgrad", h // t, h, tokens), gemm("qkv_wgrad", h, qkv, tokens)]
    segments = {
        "fwd.attn": _fuse("attn", fwd_attn, spec),
        "fwd.mlp": _fuse("mlp", fwd_mlp, spec),
        "bwd.mlp.dgrad": _fuse("mlp.dgrad", bwd_mlp_dgrad, spec),
        "bwd.mlp.wgrad": _fuse("mlp.wgrad", bwd_mlp_wgrad, spec),
        "bwd.attn.dgrad": _fuse("attn.dgrad", bwd_attn_dgrad, spec),
        "bwd.attn.wgrad": _fuse("attn.wgrad", bwd_attn_wgrad, spec),
        "recompute.core": _fuse("attn.core", core, spec),
    }
    if cfg.vocab:
        v = cfg.vocab // t
        segments["fwd.head"] = _fuse("lm_head", [gemm("logits", tokens, v, h),
                                                 pw("loss", "softmax", tokens * v, 1, 5.0)], spec)
        segments["bwd.head"] = _fuse("lm_head.bwd", [pw("loss_bwd", "softmax", tokens * v, 1, 5.0),
                                                     gemm("logits_dgrad", tokens, h, v),
                                                     gemm("logits_wgrad", h, v, tokens)], spec)
        segments["fwd.embed"] = _fuse("embedding", [pw("embed", "elementwise", point * h, 1, 0.0)], spec)
        segments["bwd.embed"] = _fuse("embedding.bwd", [pw("embed_bwd", "elementwise", point * h, 1, 1.0)], spec)
    return segments


def expand_training(cfg: ModelConfig, plan: ParallelPlan, spec_of_rank: Callable[[int], DeviceSpec],
                    fidelity: str = "folded", optimizer_step: bool = True):
    """One training iteration as a trace: see sim.parallel.emit.expand_training."""
    from sim.parallel.emit import expand_training as expand
    return expand(cfg, plan, spec_of_rank, fidelity, optimizer_step)
