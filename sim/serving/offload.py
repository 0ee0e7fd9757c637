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
        stage, model = self.stage, self.stage.model
        h, tp, p = model.hidden, stage.tp, stage.p
        fc1 = (2 if model.gated_mlp else 1) * model.ffn // tp
        ffn = model.ffn // tp
        counts = split(seqs, min(self.sub_batches, seqs))
        contexts = [context * n // seqs for n in counts]
        contexts[0] += context - sum(contexts)
        ops: list[Op] = []

        def add(name, kind, flops, read, written, deps=(), stream=0, unit=None, m=None, n=None, k=None,
                dtype=None):
            ops.append(Op(id=len(ops), name=name, op=kind, flops=float(flops), bytes_read=float(read),
                          bytes_written=float(written), deps=tuple(deps), stream=stream, unit=unit,
                          m=m, n=n, k=k, dtype=dtype or p.compute_dtype))
            return len(ops) - 1

        def gemm(name, m, n, k):
            return add(name, "gemm", 2.0 * m * n * k, p.act_bytes * m * k + p.weight_bytes * k * n,
                       p.act_bytes * m * n, m=m, n=n, k=k)

        def pointwise(name, kind, elements, reads, flops_per):
            return add(name, kind, flops_per * elements, p.act_bytes * reads * elements,
                       p.act_bytes * elements, dtype=stage._pointwise_dtype())

        for layer in range(SIMULATED_LAYERS):
            qkv = []
            for s, n in enumerate(counts):
                pointwise(f"L{layer}.s{s}.input_norm", "norm", n * h, 1, NORM_FLOPS)
                qkv.append(gemm(f"L{layer}.s{s}.qkv", n, (h + 2 * model.kv_dim) // tp, h))
            attn = []
            a, kv = p.act_bytes, p.kv_bytes
            for s, (n, ctx) in enumerate(zip(counts, contexts)):
                q = n * stage.heads * stage.hd
                attn.append(add(f"L{layer}.s{s}.attention", "gemv", 4.0 * ctx * stage.heads * stage.hd,
                                q * a + ctx * 2 * stage.kv_heads * stage.hd * kv,
                                q * a + n * 2 * stage.kv_heads * stage.hd * kv,
                                deps=(qkv[s],), stream=1, unit="pim"))
            for s, n in enumerate(counts):
                add(f"L{layer}.s{s}.o_proj", "gemm", 2.0 * n * h * (h // tp),
                    p.act_bytes * n * (h // tp) + p.weight_bytes * (h // tp) * h, p.act_bytes * n * h,
                    deps=(attn[s],), m=n, n=h, k=h // tp)
                pointwise(f"L{layer}.s{s}.residual", "elementwise", n * h, 2, 1.0)
                pointwise(f"L{layer}.s{s}.post_norm", "norm", n * h, 1, NORM_FLOPS)
                gemm(f"L{layer}.s{s}.mlp_up", n, fc1, h)
                pointwise(f"L{layer}.s{s}.activation", "elementwise", n * ffn,
                          2 if model.gated_mlp else 1, ACT_FLOPS)
                gemm(f"L{layer}.s{s}.mlp_down", n, h, ffn)
                pointwise(f"L{layer}.s{s}.residual2", "elementwise", n * h, 2, 1.0)
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

