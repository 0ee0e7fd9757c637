"""The kernels of one transformer layer on one tensor-parallel rank.

``layer_kernels`` lists, per phase of a layer (forward attention and MLP
blocks, backward input-gradient and weight-gradient blocks, the recomputed
attention core, the LM head and embedding), the kernels a Megatron-LM-style
implementation launches, with tensor-parallel shapes: QKV and fc1 split their
output columns, projection and fc2 their input rows, attention its heads, by
t (Narayanan et al., SC'21, Sec. 3.2). Pointwise kernels on the full hidden
state are replicated over the TP ranks, or split by t with sequence
parallelism (Korthikanti et al., MLSys 2023).

Kernel inventory (Megatron-LM, megatron/model/transformer.py and
megatron/model/fused_*.py; Transformer Engine for fp8):

- norms: LayerNorm/RMSNorm forward reads x and writes y; backward reads x
  and dy, writes dx;
- attention core: ``flash``: one fused kernel forward and one backward
  (FlashAttention-2; its backward recomputes the scores, so there is no
  separate recomputation); ``materialized``: the scores GEMM (batched over
  heads, the 1/sqrt(d) scale in the GEMM's alpha), the softmax with scale and
  causal mask (``fused_kernels``: Megatron's scaled-masked-softmax, one
  kernel; otherwise a mask-fill kernel then a softmax kernel), attention
  dropout (reads and writes the s x s probabilities and a 1-byte mask) and
  the values GEMM; backward the four batched GEMMs and the softmax backward;
- after the projection and fc2: bias + dropout + residual add (fused:
  Megatron's bias-dropout-add, one kernel; otherwise one kernel each);
- after fc1: bias + GeLU (fused: Megatron's bias-GeLU) or SwiGLU (reads the
  gate and up halves);
- fp8 (Transformer Engine): the GEMMs read fp8 operands and write bf16;
  LayerNorm and GeLU produce their fp8 copies in the same kernel
  (LayerNormLinear, LayerNormMLP), the attention output is cast in its own
  kernel, and in the backward each linear layer's output gradient is cast
  and transposed in one kernel (``cast_transpose``).

Weight gradients (``gradient_accumulation_fusion``): with Megatron-LM's
fused wgrad kernel (``--gradient-accumulation-fusion``, apex's
``fused_weight_gradient_mlp_cuda``) the wgrad GEMMs accumulate into the fp32
main gradients in their epilogue, which the GEMM model overlaps with the main
loop; without it each weight's gradient is written by its GEMM and then added
to the main-gradient buffer by its own kernel, once per micro-batch
(Megatron-LM's DistributedDataParallel hook ``param.main_grad.add_(param.grad)``,
megatron/model/distributed.py; or autograd's gradient accumulation; the cost
fusion removes is described in AMD-AGI/Primus pull request 995, "an extra
full-size read-modify-write of main_grad per microbatch"): it reads
the gradient and the main gradient and writes the main gradient, fp32 main
gradients for bf16 and fp8 models, the parameters' dtype for fp16 (Megatron's
default without ``--accumulate-allreduce-grads-in-fp32``). Bias and norm
weights are left out (a few thousand elements per layer).

Element sizes: the model's storage dtype for activations (bf16 under fp8),
1 byte per dropout-mask element. FLOPs of pointwise kernels are estimates
(they are memory-bound): 5 per element for norms and softmax, 8 for GeLU,
1 for adds, bias and dropout.

Each norm, softmax, dropout and GeLU kernel names its ``work`` (``norm``,
``norm_backward``, ``softmax``, ``dropout``, ``gelu``, ``gelu_backward``) and
its elements; the device spec's ``sm_array.instructions_per_element`` gives
the thread instructions per element of each (measured on an H200, see
topologies/devices/h200_sxm_141gb.yaml), which bound the kernel at the SMs'
issue rate when they exceed the bytes' time (sim.hardware.kernels). Adds,
bias, casts, dropout's backward (a masked scale) and softmax's backward name
no work and stay bandwidth-bound.
"""

from __future__ import annotations

from sim.hardware.gemm import precision
from sim.hardware.kernels import AttentionShape, Kernel
from sim.workload.transformer import ModelConfig

NORM_FLOPS, SOFTMAX_FLOPS, GELU_FLOPS, ADD_FLOPS = 5.0, 5.0, 8.0, 1.0
MASK_BYTES = 1.0    # dropout masks: one byte per element (Korthikanti et al., Sec. 4)


class _Kernels:
    """Builds Kernel descriptions for one model in its dtypes."""

    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.gemm_dtype = cfg.dtype
        self.point_dtype = cfg.storage_dtype
        self.width = cfg.dtype_bytes

    def gemm(self, name: str, m: int, n: int, k: int, batch: int = 1) -> Kernel:
        p = precision(self.gemm_dtype)
        return Kernel(name, "gemm", 2.0 * batch * m * n * k, batch * (m * k * p.a_bytes + k * n * p.b_bytes),
                      batch * m * n * p.c_bytes, self.gemm_dtype, m, n, k, batch)

    def point(self, name: str, elements: float, reads: int, writes: int = 1, flops: float = ADD_FLOPS,
              masks: int = 0, work: str = "") -> Kernel:
        """A pointwise kernel reading ``reads`` and writing ``writes`` tensors of
        ``elements``, plus ``masks`` 1-byte masks (read or written); ``work``
        names its kind for the device's instructions per element."""
        extra = masks * MASK_BYTES * elements
        return Kernel(name, "pointwise", flops * elements, reads * self.width * elements + extra / 2,
                      writes * self.width * elements + extra / 2, self.point_dtype,
                      work=work, elements=elements)

    def attention(self, name: str, shape: AttentionShape, backward: bool) -> Kernel:
        nbytes = shape.hbm_bytes(precision(self.gemm_dtype).a_bytes, backward)
        return Kernel(name, "attention", shape.flops(backward), nbytes / 2, nbytes / 2, self.gemm_dtype,
                      attention=shape, backward=backward)


def _accumulate(k: _Kernels, name: str, params: float) -> list[Kernel]:
    """Without gradient-accumulation fusion: main_grad += grad for ``params`` weights."""
    if k.cfg.gradient_accumulation_fusion:
        return []
    main = 2.0 if k.cfg.storage_dtype == "fp16" else 4.0
    return [Kernel(name, "pointwise", params, params * (k.width + main), params * main, "fp32")]


def _bias_dropout_add(k: _Kernels, name: str, elements: float, backward: bool = False) -> list[Kernel]:
    """After the projection or fc2: bias + dropout + residual (or their backward)."""
    cfg = k.cfg
    dropout = cfg.dropout > 0
    if backward:   # the residual passes the gradient through; dropout masks it; bias sums it
        if cfg.fused_kernels:
            return [k.point(f"{name}_bwd", elements, 1, 1, masks=int(dropout))] if (dropout or cfg.bias) else []
        out = [k.point(f"{name}.dropout_bwd", elements, 1, 1, masks=1)] if dropout else []
        return out + ([k.point(f"{name}.bias_grad", elements, 1, 0)] if cfg.bias else [])
    if cfg.fused_kernels:
        return [k.point(name, elements, 2, 1, flops=3.0, masks=int(dropout),
                        work="dropout" if dropout else "")]
    out = [k.point(f"{name}.bias", elements, 1)] if cfg.bias else []
    out += [k.point(f"{name}.dropout", elements, 1, 1, masks=1, work="dropout")] if dropout else []
    return out + [k.point(f"{name}.add", elements, 2)]


def _activation(k: _Kernels, tokens: int, ffn: int, backward: bool = False) -> list[Kernel]:
    """After fc1: bias + GeLU, or SwiGLU on the gate and up halves."""
    cfg = k.cfg
    elements = tokens * ffn
    if cfg.gated_mlp:
        if backward:
            return [k.point("swiglu_bwd", elements, 3, 2, flops=GELU_FLOPS)]
        return [k.point("swiglu", elements, 2, 1, flops=GELU_FLOPS)]
    if backward:
        unfused_bias = cfg.bias and not cfg.fused_kernels
        return [k.point("gelu_bwd", elements, 2, 1, flops=GELU_FLOPS, work="gelu_backward")] + \
            ([k.point("fc1.bias_grad", elements, 1, 0)] if unfused_bias else [])
    if cfg.fused_kernels or not cfg.bias:
        return [k.point("bias_gelu" if cfg.bias else "gelu", elements, 1, 1, flops=GELU_FLOPS,
                        work="gelu")]
    return [k.point("fc1.bias", elements, 1),
            k.point("gelu", elements, 1, 1, flops=GELU_FLOPS, work="gelu")]


def _materialized_core(k: _Kernels, b: int, s: int, heads: int, hd: int, backward: bool) -> list[Kernel]:
    cfg = k.cfg
    scores = b * heads * s * s
    dropout = cfg.dropout > 0
    if backward:
        out = [k.gemm("values_dgrad", s, s, hd, b * heads), k.gemm("values_wgrad", s, hd, s, b * heads)]
        out += [k.point("attention_dropout_bwd", scores, 1, 1, masks=1)] if dropout else []
        out += [k.point("softmax_bwd", scores, 2, 1, flops=SOFTMAX_FLOPS)]
        return out + [k.gemm("scores_dq", s, hd, s, b * heads), k.gemm("scores_dk", s, hd, s, b * heads)]
    out = [k.gemm("scores", s, s, hd, b * heads)]
    if cfg.fused_kernels:
        out += [k.point("scaled_masked_softmax", scores, 1, 1, flops=SOFTMAX_FLOPS, work="softmax")]
    else:
        out += [k.point("mask_fill", scores, 1, 1),
                k.point("softmax", scores, 1, 1, flops=SOFTMAX_FLOPS, work="softmax")]
    out += [k.point("attention_dropout", scores, 1, 1, masks=1, work="dropout")] if dropout else []
    return out + [k.gemm("values", s, hd, s, b * heads)]


def _core(k: _Kernels, b: int, s: int, heads: int, kv_heads: int, hd: int, backward: bool) -> list[Kernel]:
    if k.cfg.attention == "flash":
        shape = AttentionShape(b, heads, kv_heads, s, s, hd, causal=True)
        return [k.attention("flash_attention_bwd" if backward else "flash_attention", shape, backward)]
    return _materialized_core(k, b, s, heads, hd, backward)


def layer_kernels(cfg: ModelConfig, microbatch: int, tp: int, sequence_parallel: bool) -> dict[str, list[Kernel]]:
    """Kernels of one layer on one TP rank per phase (see the module docstring).
    Keys: fwd.attn, fwd.mlp, bwd.mlp.dgrad, bwd.mlp.wgrad, bwd.attn.dgrad,
    bwd.attn.wgrad, recompute.core (empty with flash attention), and with a
    vocabulary fwd.head, bwd.head, fwd.embed, bwd.embed."""
    b, s, h, t = microbatch, cfg.seq_len, cfg.hidden, tp
    tokens = b * s
    heads, kv_heads, hd = cfg.heads // t, (cfg.kv_heads or cfg.heads) // t, cfg.head_dim
    qkv = (h + 2 * cfg.kv_dim) // t
    fc1 = (2 * cfg.ffn if cfg.gated_mlp else cfg.ffn) // t
    ffn = cfg.ffn // t
    point = tokens // t if sequence_parallel else tokens
    k = _Kernels(cfg)
    fp8 = cfg.dtype == "fp8"

    def cast_transpose(name: str, elements: float) -> list[Kernel]:
        """fp8: a bf16 tensor read once, its fp8 copy and fp8 transpose written."""
        if not fp8:
            return []
        return [Kernel(name, "pointwise", elements, 2.0 * elements, 2.0 * elements, k.point_dtype)]

    norm = lambda name: k.point(name, point * h, 1, 1, flops=NORM_FLOPS,                    # noqa: E731
                                work="norm")
    norm_bwd = lambda name: k.point(name, point * h, 2, 1, flops=NORM_FLOPS,                # noqa: E731
                                    work="norm_backward")
    kernels = {
        "fwd.attn": [norm("ln1"), k.gemm("qkv", tokens, qkv, h), *_core(k, b, s, heads, kv_heads, hd, False),
                     *cast_transpose("proj.cast", tokens * h // t), k.gemm("proj", tokens, h, h // t)],
        "fwd.mlp": [*_bias_dropout_add(k, "bias_dropout_add1", point * h), norm("ln2"),
                    k.gemm("fc1", tokens, fc1, h), *_activation(k, tokens, ffn),
                    k.gemm("fc2", tokens, h, ffn), *_bias_dropout_add(k, "bias_dropout_add2", point * h)],
        "bwd.mlp.dgrad": [*_bias_dropout_add(k, "bias_dropout_add2", point * h, backward=True),
                          *cast_transpose("fc2.grad_cast", tokens * h), k.gemm("fc2_dgrad", tokens, ffn, h),
                          *_activation(k, tokens, ffn, backward=True),
                          *cast_transpose("fc1.grad_cast", tokens * fc1), k.gemm("fc1_dgrad", tokens, h, fc1),
                          norm_bwd("ln2_bwd")],
        "bwd.mlp.wgrad": [k.gemm("fc2_wgrad", ffn, h, tokens), *_accumulate(k, "fc2.grad_accumulate", ffn * h),
                          k.gemm("fc1_wgrad", h, fc1, tokens), *_accumulate(k, "fc1.grad_accumulate", h * fc1)],
        "bwd.attn.dgrad": [*_bias_dropout_add(k, "bias_dropout_add1", point * h, backward=True),
                           *cast_transpose("proj.grad_cast", tokens * h), k.gemm("proj_dgrad", tokens, h // t, h),
                           *_core(k, b, s, heads, kv_heads, hd, True),
                           *cast_transpose("qkv.grad_cast", tokens * qkv), k.gemm("qkv_dgrad", tokens, h, qkv),
                           norm_bwd("ln1_bwd")],
        "bwd.attn.wgrad": [k.gemm("proj_wgrad", h // t, h, tokens), *_accumulate(k, "proj.grad_accumulate", h // t * h),
                           k.gemm("qkv_wgrad", h, qkv, tokens), *_accumulate(k, "qkv.grad_accumulate", h * qkv)],
        "recompute.core": [] if cfg.attention == "flash" else _materialized_core(k, b, s, heads, hd, False),
    }
    if cfg.vocab:
        v = cfg.vocab // t
        kernels["fwd.head"] = [k.gemm("logits", tokens, v, h),
                               k.point("loss", tokens * v, 1, 1, flops=SOFTMAX_FLOPS, work="softmax")]
        kernels["bwd.head"] = [k.point("loss_bwd", tokens * v, 1, 1, flops=SOFTMAX_FLOPS),
                               k.gemm("logits_dgrad", tokens, h, v), k.gemm("logits_wgrad", h, v, tokens),
                               *_accumulate(k, "logits.grad_accumulate", h * v)]
        kernels["fwd.embed"] = [k.point("embed", point * h, 1, 1, flops=0.0)]
        kernels["bwd.embed"] = [k.point("embed_bwd", point * h, 1, 1)]
    return kernels
