"""Operator graphs with their true data dependencies, for scratchpad studies.

``layer_training_ops`` is the forward and backward pass of transformer
layers (GPT-style, Megatron-LM's shapes: Narayanan et al., SC'21) in which
every op lists, in ``deps``, exactly the ops whose outputs it reads, so the
scratchpad manager (sim.memory.problem) sees the activations the backward
pass reuses and how far apart their uses are. Activations are unnamed (dead
after their last reader); weight gradients are named tensors nobody frees
(live-out: written to the lower tier); weights are read per op from the
lower tier (each GEMM's bytes beyond its activation inputs).
"""

from __future__ import annotations

from sim.hardware.specs import DTYPE_BYTES
from sim.workload.trace import Op


class _Graph:
    def __init__(self, dtype: str):
        self.dtype = dtype
        self.width = DTYPE_BYTES[dtype]
        self.ops: list[Op] = []
        self.size: dict[int, float] = {}

    def add(self, name: str, kind: str, reads: list[int], out_elements: int, flops: float,
            weight_elements: int = 0, input_elements: int = 0, tensor: str | None = None,
            layer: int | None = None, phase: str | None = None, **shape) -> int:
        """Append an op reading the outputs of ``reads`` (plus ``weight_elements``
        and ``input_elements`` from off-chip) and writing ``out_elements``."""
        op_id = len(self.ops)
        read_bytes = sum(self.size[r] for r in reads) + self.width * (weight_elements + input_elements)
        out = float(self.width * out_elements)
        self.ops.append(Op(id=op_id, name=name, op=kind, flops=float(flops), bytes_read=float(read_bytes),
                           bytes_written=out, deps=tuple(reads), dtype=self.dtype, tensor=tensor,
                           layer=layer, phase=phase, **shape))
        self.size[op_id] = out
        return op_id

    def gemm(self, name: str, reads: list[int], m: int, n: int, k: int, weights: bool, **kw) -> int:
        """C[m,n] = A[m,k] B[k,n]; B is a weight from off-chip when ``weights``."""
        return self.add(name, "gemm", reads, m * n, 2.0 * m * n * k,
                        weight_elements=k * n if weights else 0, m=m, n=n, k=k, **kw)


def layer_training_ops(layers: int = 2, hidden: int = 1024, heads: int = 16, seq_len: int = 512,
                       batch: int = 4, dtype: str = "bf16") -> list[Op]:
    """Forward then backward of ``layers`` transformer layers on one device."""
    g = _Graph(dtype)
    tokens, h = batch * seq_len, hidden
    hd = hidden // heads
    x = g.add("embed", "elementwise", [], tokens * h, tokens * h, input_elements=tokens * h, phase="fwd")
    saved = []
    for layer in range(layers):
        kw = {"layer": layer, "phase": "fwd"}
        t = f"L{layer}."
        ln1 = g.add(t + "ln1", "norm", [x], tokens * h, 5.0 * tokens * h, **kw)
        qkv = g.gemm(t + "qkv", [ln1], tokens, 3 * h, h, True, **kw)
        scores = g.add(t + "attn_scores", "gemm", [qkv], batch * heads * seq_len * seq_len,
                       2.0 * batch * heads * seq_len * seq_len * hd, **kw)
        probs = g.add(t + "softmax", "softmax", [scores], batch * heads * seq_len * seq_len,
                      5.0 * batch * heads * seq_len * seq_len, **kw)
        ctx = g.add(t + "attn_values", "gemm", [probs, qkv], tokens * h,
                    2.0 * batch * heads * seq_len * seq_len * hd, **kw)
        proj = g.gemm(t + "proj", [ctx], tokens, h, h, True, **kw)
        res1 = g.add(t + "residual1", "elementwise", [proj, x], tokens * h, tokens * h, **kw)
        ln2 = g.add(t + "ln2", "norm", [res1], tokens * h, 5.0 * tokens * h, **kw)
        fc1 = g.gemm(t + "fc1", [ln2], tokens, 4 * h, h, True, **kw)
        act = g.add(t + "gelu", "elementwise", [fc1], tokens * 4 * h, 8.0 * tokens * 4 * h, **kw)
        fc2 = g.gemm(t + "fc2", [act], tokens, h, 4 * h, True, **kw)
        out = g.add(t + "residual2", "elementwise", [fc2, res1], tokens * h, tokens * h, **kw)
        saved.append((x, ln1, qkv, probs, ctx, res1, ln2, fc1, act))
        x = out
    grad = g.add("loss_grad", "elementwise", [x], tokens * h, 4.0 * tokens * h, phase="bwd")
    for layer in reversed(range(layers)):
        x_in, ln1, qkv, probs, ctx, res1, ln2, fc1, act = saved[layer]
        kw = {"layer": layer, "phase": "bwd"}
        t = f"L{layer}."
        g_act = g.gemm(t + "fc2.dgrad", [grad], tokens, 4 * h, h, True, **kw)
        g.gemm(t + "fc2.wgrad", [act, grad], 4 * h, h, tokens, False, tensor=f"{t}fc2.dW", **kw)
        g_fc1 = g.add(t + "gelu.bwd", "elementwise", [g_act, fc1], tokens * 4 * h, 8.0 * tokens * 4 * h, **kw)
        g_ln2 = g.gemm(t + "fc1.dgrad", [g_fc1], tokens, h, 4 * h, True, **kw)
        g.gemm(t + "fc1.wgrad", [ln2, g_fc1], h, 4 * h, tokens, False, tensor=f"{t}fc1.dW", **kw)
        g_res1 = g.add(t + "ln2.bwd", "norm", [g_ln2, res1, grad], tokens * h, 8.0 * tokens * h, **kw)
        g_ctx = g.gemm(t + "proj.dgrad", [g_res1], tokens, h, h, True, **kw)
        g.gemm(t + "proj.wgrad", [ctx, g_res1], h, h, tokens, False, tensor=f"{t}proj.dW", **kw)
        g_probs = g.add(t + "attn_values.bwd", "gemm", [g_ctx, probs, qkv],
                        batch * heads * seq_len * seq_len, 4.0 * batch * heads * seq_len * seq_len * hd, **kw)
        g_scores = g.add(t + "softmax.bwd", "softmax", [g_probs, probs],
                         batch * heads * seq_len * seq_len, 5.0 * batch * heads * seq_len * seq_len, **kw)
        g_qkv = g.add(t + "attn_scores.bwd", "gemm", [g_scores, qkv, g_ctx], tokens * 3 * h,
                      4.0 * batch * heads * seq_len * seq_len * hd, **kw)
        g_ln1 = g.gemm(t + "qkv.dgrad", [g_qkv], tokens, h, 3 * h, True, **kw)
        g.gemm(t + "qkv.wgrad", [ln1, g_qkv], h, 3 * h, tokens, False, tensor=f"{t}qkv.dW", **kw)
        grad = g.add(t + "ln1.bwd", "norm", [g_ln1, x_in, g_res1], tokens * h, 8.0 * tokens * h, **kw)
    return g.ops
