"""The kernels of a MoE layer's MLP part on one rank, priced on a device.

Shapes (tokens n = b s / t of the rank's sequence-parallel shard, E experts,
top-k, expert width f, fc1 width 2f when gated, m_e tokens routed to local
expert e after dropping; GEMMs written m x n x k):

- ``router``: residual and layer norm (n h), the gate GEMM n x E x h, the
  softmax / top-k over n E scores, the permutation of the n k routed copies;
- ``experts``: per local expert, fc1 m_e x fc1 x h, the activation over m_e f,
  fc2 m_e x h x f (Megatron-Core's grouped GEMM runs them in one launch; each
  is priced at its own shape);
- ``shared``: the shared experts as one MLP of width (shared x f) over n tokens;
- ``combine``: unpermute and weighted sum of the n k copies, residual (n h);
- backward: the same GEMMs as input-gradient (``.dgrad``) and weight-gradient
  (``.wgrad``) GEMMs, as for a dense layer.

Each kernel's isolated time (sim.engine.device.isolated_seconds: tile and
wave quantization, the roofline) is priced once per shape and device; a
segment's time is the sum of its kernels'.
"""

from __future__ import annotations

from sim.engine.device import bind_op, isolated_seconds
from sim.hardware.specs import DeviceSpec
from sim.parallel.expand import Segment
from sim.workload.moe import expert_ffn
from sim.workload.trace import MATRIX_OPS, Op
from sim.workload.transformer import ModelConfig, OpBuilder

def _kernels(cfg: ModelConfig, gemms=(), pointwise=()) -> list[Op]:
    """GEMMs in the model's GEMM dtype, pointwise ops in its storage dtype (bf16 under fp8)."""
    g, p = OpBuilder(cfg.dtype), OpBuilder(cfg.storage_dtype)
    for m, n, k in gemms:
        if m and n and k:
            g.gemm("gemm", m, n, k, shared_b=True)
    for kind, elements, reads, flops in pointwise:
        if elements:
            p.pointwise(kind, kind, elements, reads, flops)
    return g.ops + p.ops


class Pricer:
    """Prices kernels on one device spec, each distinct shape once."""

    def __init__(self, spec: DeviceSpec):
        self.spec = spec
        self._times: dict[tuple, float] = {}

    def seconds(self, op: Op) -> float:
        key = (op.op, op.m, op.n, op.k, op.batch, op.flops, op.bytes_read, op.bytes_written)
        if key not in self._times:
            self._times[key] = isolated_seconds(bind_op(op, self.spec, "model"), self.spec)
        return self._times[key]

    def price(self, name: str, ops: list[Op]) -> Segment:
        """Kernels run back to back: a segment with their summed flops, bytes and times."""
        return Segment(name, sum(o.flops for o in ops), sum(o.flops for o in ops if o.op in MATRIX_OPS),
                       sum(o.bytes_read for o in ops), sum(o.bytes_written for o in ops),
                       sum(self.seconds(o) for o in ops), len(ops))


def _widths(cfg: ModelConfig) -> tuple[int, int]:
    f = expert_ffn(cfg)
    return f, 2 * f if cfg.gated_mlp else f


def dense_segments(cfg: ModelConfig, tokens: int, pricer: Pricer) -> dict[str, Segment]:
    """The router, shared-expert and combine segments of one MoE layer on a rank
    with ``tokens`` tokens (forward, input-gradient and weight-gradient)."""
    h, e, k = cfg.hidden, cfg.moe.experts, cfg.moe.top_k
    f, fc1 = _widths(cfg)
    sf, sfc1 = cfg.moe.shared_experts * f, cfg.moe.shared_experts * fc1
    act_reads = 2 if cfg.gated_mlp else 1
    return {
        "moe.router": pricer.price("moe.router", _kernels(cfg, [(tokens, e, h)], [
            ("elementwise", tokens * h, 2, 1.0), ("norm", tokens * h, 1, 5.0), ("softmax", tokens * e, 1, 5.0),
            ("elementwise", tokens * k * h, 1, 0.0)])),
        "moe.combine": pricer.price("moe.combine", _kernels(cfg, [], [
            ("elementwise", tokens * k * h, 2, 2.0), ("elementwise", tokens * h, 2, 1.0)])),
        "moe.shared": pricer.price("moe.shared", _kernels(cfg, [(tokens, sfc1, h), (tokens, h, sf)], [
            ("elementwise", tokens * sf, act_reads, 8.0)])),
        "moe.combine.bwd": pricer.price("moe.combine.bwd", _kernels(cfg, [], [
            ("elementwise", tokens * h, 1, 1.0), ("elementwise", tokens * k * h, 2, 2.0)])),
        "moe.shared.dgrad": pricer.price("moe.shared.dgrad", _kernels(cfg, [(tokens, sf, h), (tokens, h, sfc1)], [
            ("elementwise", tokens * sf, 2, 8.0)])),
        "moe.shared.wgrad": pricer.price("moe.shared.wgrad", _kernels(cfg, [(sf, h, tokens), (h, sfc1, tokens)])),
        "moe.router.bwd": pricer.price("moe.router.bwd", _kernels(cfg, [(tokens, h, e), (h, e, tokens)], [
            ("elementwise", tokens * k * h, 1, 0.0), ("softmax", tokens * e, 2, 5.0),
            ("norm", tokens * h, 2, 5.0)])),
    }


def expert_segments(cfg: ModelConfig, loads: tuple[int, ...], pricer: Pricer) -> dict[str, Segment]:
    """The routed experts of one rank, expert e processing ``loads[e]`` tokens:
    forward, input-gradient and weight-gradient segments."""
    h = cfg.hidden
    f, fc1 = _widths(cfg)
    act_reads = 2 if cfg.gated_mlp else 1
    fwd, dgrad, wgrad = [], [], []
    for m in loads:
        fwd += _kernels(cfg, [(m, fc1, h), (m, h, f)], [("elementwise", m * f, act_reads, 8.0)])
        dgrad += _kernels(cfg, [(m, f, h), (m, h, fc1)], [("elementwise", m * f, 2, 8.0)])
        wgrad += _kernels(cfg, [(f, h, m), (h, fc1, m)])
    return {"moe.experts": pricer.price("moe.experts", fwd),
            "moe.experts.dgrad": pricer.price("moe.experts.dgrad", dgrad),
            "moe.experts.wgrad": pricer.price("moe.experts.wgrad", wgrad)}
