"""Decode attention offloaded: to PIM banks (NeuPIMs) or to memory-rich devices (Lamina),
with sub-batch interleaving.

NeuPIMs (Heo et al., "NeuPIMs: NPU-PIM Heterogeneous Acceleration for
Batched LLM Inferencing", ASPLOS 2024) runs the weight GEMMs of batched
decode on the NPU and each request's attention (GEMVs over its own KV
cache) on the HBM-PIM banks that hold the cache. Split into sub-batches, one
sub-batch's attention runs on PIM while the NPU runs another's GEMMs; that
overlap needs PIM and the NPU to use the memory at the same time, which
NeuPIMs' dual row buffers allow (``pim.mode: concurrent``) and a
conventional PIM does not (``blocked``: PIM commands and normal reads
time-share the banks).

Model-attention disaggregation (Chen et al., "Efficient Heterogeneous Large
Language Model Decoding with Model-Attention Disaggregation" (Lamina), arXiv
2405.01814; AttAcc, Park et al., ASPLOS 2024, with PIM as the memory-rich
side) keeps the KV cache and the attention on separate memory-rich devices:
each layer sends a sub-batch's new query, key and value (tokens x (hidden +
2 kv_dim) / tp) from its compute GPU to its attention device over the
cluster's links and the attention output (tokens x hidden / tp) back, while
the compute GPU runs another sub-batch's GEMMs.

In both cases the decode part of an iteration is not a sum of isolated op
times. It is simulated on the engine itself: two layers of the iteration as
an operator trace (the compute stream runs every sub-batch's QKV, then each
sub-batch's projection and MLP once its attention is back; attention runs on
the PIM unit's stream, or on the attention device between two point-to-point
transfers), replayed by ``sim.runtime.simulate.Simulation`` on one device or
on the two ranks of the cluster, where the device's PIM mode, or the links'
shared bandwidth, decide the contention. The iteration is that time x layers
/ 2 plus the tensor-parallel all-reduces; prices are taken on the
interpolation grid of sim.serving.pricing (16 points per octave of the summed
context) and interpolated linearly between.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.hardware.specs import DeviceSpec
from sim.serving.pricing import ACT_FLOPS, NORM_FLOPS, Cost, StagePricer, grid
from sim.workload.trace import Op

SIMULATED_LAYERS = 2
COMPUTE_STREAM, PIM_STREAM, SEND_STREAM = 0, 1, 2


def split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal integers (larger first)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


@dataclass(frozen=True)
class RemoteAttention:
    """Where offloaded attention runs: ``attention_rank`` (a ``spec`` device) of
    ``cluster``, paired with the compute GPU ``compute_rank``."""

    spec: DeviceSpec
    cluster: object
    compute_rank: int
    attention_rank: int


def _attention_dtype(spec: DeviceSpec, dtype: str) -> str:
    """The attention device computes in the model's type if it has a rate for it."""
    table = spec.sm_array.matrix_flops_per_s if spec.sm_array is not None else {}
    return dtype if not table or dtype in table else next(iter(table))


class InterleavedDecode:
    """Prices the decode part of iterations with offloaded attention, by simulation."""

    def __init__(self, stage: StagePricer, sub_batches: int, remote: RemoteAttention | None = None):
        self.stage = stage
        self.sub_batches = sub_batches
        self.remote = remote
        self._cache: dict[tuple[int, int], Cost] = {}

    def cost(self, seqs: int, context: int) -> Cost:
        """Decode part (all layers) of ``seqs`` sequences attending to ``context`` keys in all."""
        if seqs == 0:
            return Cost(0.0, 0.0, 0.0)
        low, high = grid(context)
        a = self._at(seqs, low)
        if high == low:
            return a
        b = self._at(seqs, high)
        return a.toward(b, (context - low) / (high - low))

    def _at(self, seqs: int, context: int) -> Cost:
        cached = self._cache.get((seqs, context))
        if cached is None:
            cached = self._cache[(seqs, context)] = self._simulate(seqs, context)
        return cached

    def _attention(self, add, n: int, context: int, deps: tuple[int, ...], tag: str) -> int:
        """The attention of one sub-batch, after ``deps``; returns the op its output is ready after."""
        stage, remote = self.stage, self.remote
        if remote is None:
            return add(stage.decode_attention_op(n, context, kind="gemv", unit="pim", stream=PIM_STREAM,
                                                 deps=deps))
        model, p = stage.model, stage.p
        c, a = remote.compute_rank, remote.attention_rank
        qkv_bytes = n * (model.hidden + 2 * model.kv_dim) // stage.tp * p.act_bytes
        out_bytes = n * model.hidden // stage.tp * p.act_bytes
        sent = add(Op(id=0, name=f"{tag}.send_qkv", op="sendrecv", flops=0.0, bytes_read=float(qkv_bytes),
                      bytes_written=0.0, group=(c, a), rank=c, stream=SEND_STREAM, deps=deps, algorithm="ring"))
        attended = add(stage.decode_attention_op(n, context, rank=a, deps=(sent,))
                       .replace(dtype=_attention_dtype(remote.spec, p.act_dtype)))
        return add(Op(id=0, name=f"{tag}.send_out", op="sendrecv", flops=0.0, bytes_read=float(out_bytes),
                      bytes_written=0.0, group=(a, c), rank=a, stream=SEND_STREAM, deps=(attended,),
                      algorithm="ring"))

    def ops(self, seqs: int, context: int) -> list[Op]:
        """Two layers of the decode part: per sub-batch, QKV on the compute stream, its
        attention offloaded (after its QKV), then projection and MLP (after its
        attention); sub-batches' QKVs first, so one's attention overlaps another's GEMMs."""
        stage, model = self.stage, self.stage.model
        h, tp = model.hidden, stage.tp
        fc1 = (2 if model.gated_mlp else 1) * model.ffn // tp
        ffn = model.ffn // tp
        on = {"rank": self.remote.compute_rank} if self.remote is not None else {}
        counts = split(seqs, min(self.sub_batches, seqs))
        contexts = [context * n // seqs for n in counts]
        contexts[0] += context - sum(contexts)
        ops: list[Op] = []

        def add(op: Op) -> int:
            ops.append(op.replace(id=len(ops)))
            return len(ops) - 1

        for layer in range(SIMULATED_LAYERS):
            tag = f"L{layer}"
            qkv = []
            for s, n in enumerate(counts):
                add(stage.pointwise_op(f"{tag}.s{s}.input_norm", "norm", n * h, 1, NORM_FLOPS, **on))
                qkv.append(add(stage.gemm_op(f"{tag}.s{s}.qkv", n, (h + 2 * model.kv_dim) // tp, h, **on)))
            ready = [self._attention(add, n, ctx, (qkv[s],), f"{tag}.s{s}")
                     for s, (n, ctx) in enumerate(zip(counts, contexts))]
            for s, n in enumerate(counts):
                add(stage.gemm_op(f"{tag}.s{s}.o_proj", n, h, h // tp, deps=(ready[s],), **on))
                add(stage.pointwise_op(f"{tag}.s{s}.residual", "elementwise", n * h, 2, 1.0, **on))
                add(stage.pointwise_op(f"{tag}.s{s}.post_norm", "norm", n * h, 1, NORM_FLOPS, **on))
                add(stage.gemm_op(f"{tag}.s{s}.mlp_up", n, fc1, h, **on))
                add(stage.pointwise_op(f"{tag}.s{s}.activation", "elementwise", n * ffn,
                                       2 if model.gated_mlp else 1, ACT_FLOPS, **on))
                add(stage.gemm_op(f"{tag}.s{s}.mlp_down", n, h, ffn, **on))
                add(stage.pointwise_op(f"{tag}.s{s}.residual2", "elementwise", n * h, 2, 1.0, **on))
        return ops

    def _simulate(self, seqs: int, context: int) -> Cost:
        from sim.runtime.scenario import Scenario
        from sim.runtime.simulate import Simulation
        from sim.workload.trace import validate_ops

        ops = self.ops(seqs, context)
        stage, remote = self.stage, self.remote
        trace = validate_ops(ops, f"{stage.where} (decode with offloaded attention)")
        if remote is None:
            scenario = Scenario(name="offload", device=stage.spec, device_name="npu", trace=trace)
        else:
            scenario = Scenario(name="offload", device=stage.spec, device_name="gpu", trace=trace,
                                cluster=remote.cluster, rank_specs={remote.compute_rank: stage.spec,
                                                                    remote.attention_rank: remote.spec})
        makespan = Simulation(scenario).run().summary["makespan_s"]
        scale = stage.layers / SIMULATED_LAYERS
        flops = sum(op.flops for op in ops if op.op != "sendrecv")
        moved = sum(op.bytes_read + op.bytes_written for op in ops if op.op != "sendrecv")
        allreduce = 0.0
        if stage.allreduce is not None:
            allreduce = 2.0 * stage.allreduce.seconds(seqs * stage.model.hidden * stage.p.act_bytes)
        return Cost(makespan * scale + allreduce * stage.layers, flops * scale, moved * scale)
