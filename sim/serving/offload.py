"""Decode attention offloaded to PIM, with NeuPIMs' sub-batch interleaving.

NeuPIMs (Heo et al., "NeuPIMs: NPU-PIM Heterogeneous Acceleration for
Batched LLM Inferencing", ASPLOS 2024) runs the weight GEMMs of batched
decode on the NPU and each request's attention (GEMVs over its own KV
cache) on the HBM-PIM banks that hold the cache. Split into sub-batches, one
sub-batch's attention runs on PIM while the NPU runs another's GEMMs; that
overlap needs PIM and the NPU to use the memory at the same time, which
NeuPIMs' dual row buffers allow (``pim.mode: concurrent``) and a
conventional PIM does not (``blocked``: PIM commands and normal reads
time-share the banks).

The decode part of an iteration is therefore not a sum of isolated op times.
It is simulated on the engine itself: two layers of the iteration as an
operator trace on one device (the NPU stream runs QKV of every sub-batch,
then each sub-batch's projection and MLP once its attention is done; the
PIM stream runs each sub-batch's attention after its QKV), replayed by
``sim.runtime.simulate.Simulation``, where the device's PIM mode decides
whether PIM traffic shares the tier with the GEMMs (sim.engine.device). The
iteration is that time x layers / 2; prices are cached by (sequences,
summed context rounded as in sim.serving.pricing).
"""

from __future__ import annotations

from sim.serving.pricing import ACT_FLOPS, NORM_FLOPS, Cost, StagePricer, bucket
from sim.workload.trace import Op

SIMULATED_LAYERS = 2


def split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal integers (larger first)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


class InterleavedDecode:
    """Prices the decode part of iterations with attention on PIM, by simulation."""

    def __init__(self, stage: StagePricer, sub_batches: int):
        self.stage = stage
        self.sub_batches = sub_batches
        self._cache: dict[tuple[int, int], Cost] = {}

    def cost(self, seqs: int, context: int) -> Cost:
        """Decode part (all layers) of ``seqs`` sequences attending to ``context`` keys in all."""
        if seqs == 0:
            return Cost(0.0, 0.0, 0.0)
        key = (seqs, bucket(context))
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._simulate(*key)
        return cached

    def _ops(self, seqs: int, context: int) -> list[Op]:
        """Two layers of the decode part: per sub-batch, QKV on the NPU stream (0), its
        attention on PIM (stream 1, after its QKV), then projection and MLP (after its
        attention); sub-batches' QKVs first, so one's attention overlaps another's GEMMs."""
        stage, model = self.stage, self.stage.model
        h, tp = model.hidden, stage.tp
        fc1 = (2 if model.gated_mlp else 1) * model.ffn // tp
        ffn = model.ffn // tp
        counts = split(seqs, min(self.sub_batches, seqs))
        contexts = [context * n // seqs for n in counts]
        contexts[0] += context - sum(contexts)
        ops: list[Op] = []

        def add(op: Op) -> int:
            ops.append(op)
            return op.id

        for layer in range(SIMULATED_LAYERS):
            tag = f"L{layer}"
            qkv = []
            for s, n in enumerate(counts):
                add(stage.pointwise_op(f"{tag}.s{s}.input_norm", "norm", n * h, 1, NORM_FLOPS, id=len(ops)))
                qkv.append(add(stage.gemm_op(f"{tag}.s{s}.qkv", n, (h + 2 * model.kv_dim) // tp, h, id=len(ops))))
            attention = [add(stage.decode_attention_op(n, ctx, kind="gemv", unit="pim", stream=1, id=len(ops),
                                                       deps=(qkv[s],)))
                         for s, (n, ctx) in enumerate(zip(counts, contexts))]
            for s, n in enumerate(counts):
                add(stage.gemm_op(f"{tag}.s{s}.o_proj", n, h, h // tp, id=len(ops), deps=(attention[s],)))
                add(stage.pointwise_op(f"{tag}.s{s}.residual", "elementwise", n * h, 2, 1.0, id=len(ops)))
                add(stage.pointwise_op(f"{tag}.s{s}.post_norm", "norm", n * h, 1, NORM_FLOPS, id=len(ops)))
                add(stage.gemm_op(f"{tag}.s{s}.mlp_up", n, fc1, h, id=len(ops)))
                add(stage.pointwise_op(f"{tag}.s{s}.activation", "elementwise", n * ffn,
                                       2 if model.gated_mlp else 1, ACT_FLOPS, id=len(ops)))
                add(stage.gemm_op(f"{tag}.s{s}.mlp_down", n, h, ffn, id=len(ops)))
                add(stage.pointwise_op(f"{tag}.s{s}.residual2", "elementwise", n * h, 2, 1.0, id=len(ops)))
        return ops

    def _simulate(self, seqs: int, context: int) -> Cost:
        from sim.runtime.scenario import Scenario
        from sim.runtime.simulate import Simulation
        from sim.workload.trace import validate_ops

        ops = self._ops(seqs, context)
        trace = validate_ops(ops, f"{self.stage.where} (decode with attention on PIM)")
        scenario = Scenario(name="pim-decode", device=self.stage.spec, device_name="npu", trace=trace)
        result = Simulation(scenario).run()
        scale = self.stage.layers / SIMULATED_LAYERS
        flops = sum(op.flops for op in ops)
        moved = sum(op.bytes_read + op.bytes_written for op in ops)
        allreduce = 0.0
        if self.stage.allreduce is not None:
            allreduce = 2.0 * self.stage.allreduce.seconds(seqs * self.stage.model.hidden
                                                           * self.stage.p.act_bytes)
        return Cost(result.summary["makespan_s"] * scale + allreduce * self.stage.layers,
                    flops * scale, moved * scale)

