"""Transformer models as operator graphs, with FLOPs and bytes from the shapes.

Shapes follow Megatron-LM (Narayanan et al., "Efficient Large-Scale Language
Model Training on GPU Clusters Using Megatron-LM", SC'21): per layer and
microbatch of b sequences of s tokens with hidden size h, the forward GEMMs
are QKV (2*b*s*h*3h), attention scores and attention-over-values
(2*b*s^2*h each), the output projection (2*b*s*h^2) and the two MLP GEMMs
(2*b*s*h*4h each): 24*b*s*h^2 + 4*b*s^2*h FLOPs, the per-layer term of the
paper's Eq. 3. The backward pass has an input-gradient and a weight-gradient
GEMM per forward GEMM (2x the forward FLOPs); full recomputation replays the
forward before the backward (Korthikanti et al., "Reducing Activation
Recomputation in Large Transformer Models", MLSys 2023), selective
recomputation replays only the attention core.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.hardware.specs import DTYPE_BYTES
from sim.workload.moe import MoEConfig
from sim.workload.trace import Op

RECOMPUTE_MODES = ("none", "selective", "full")
ATTENTION_KINDS = ("flash", "materialized")
# Dtypes a model trains in. fp8 is Transformer Engine's recipe: GEMMs in fp8 (e4m3 forward,
# e5m2 gradients), weights, activations, norms and softmax in bf16 (Micikevicius et al.,
# "FP8 Formats for Deep Learning", 2022; NVIDIA Transformer Engine documentation).
MODEL_DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8")


@dataclass(frozen=True)
class ModelConfig:
    """A GPT- or Llama-style decoder-only transformer.

    ``ffn_hidden`` defaults to 4 * hidden; ``gated_mlp`` (SwiGLU) doubles the
    first MLP GEMM's output width; ``kv_heads`` < ``heads`` is grouped-query
    attention. ``dtype`` is the GEMMs' (see MODEL_DTYPES); ``attention`` is
    ``flash`` (one fused kernel per pass, FlashAttention-2) or
    ``materialized`` (the s x s scores through HBM: batched GEMMs and softmax
    kernels, as Megatron-LM in 2021); ``fused_kernels`` selects Megatron-LM's
    fused bias-GeLU, bias-dropout-add and scaled-masked-softmax kernels over
    one kernel per elementwise step; ``dropout`` is the hidden and attention
    dropout probability (0: no dropout kernels); ``bias`` whether the linear
    layers have biases; ``gradient_accumulation_fusion`` whether the
    weight-gradient GEMMs accumulate straight into the fp32 main gradients
    (Megatron-LM's fused wgrad kernel) rather than writing a gradient that a
    separate kernel then adds to them (sim.workload.layer_kernels).
    """

    name: str
    layers: int
    hidden: int
    heads: int
    seq_len: int
    vocab: int
    kv_heads: int | None = None
    ffn_hidden: int | None = None
    gated_mlp: bool = False
    dtype: str = "bf16"
    attention: str = "flash"
    fused_kernels: bool = True
    dropout: float = 0.0
    bias: bool = True
    gradient_accumulation_fusion: bool = True
    moe: MoEConfig | None = None  # mixture-of-experts layers (sim.workload.moe)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        return (self.kv_heads or self.heads) * self.head_dim

    @property
    def ffn(self) -> int:
        return self.ffn_hidden or 4 * self.hidden

    @property
    def storage_dtype(self) -> str:
        """Dtype of weights, activations and pointwise kernels: bf16 under fp8 training."""
        return "bf16" if self.dtype == "fp8" else self.dtype

    @property
    def dtype_bytes(self) -> float:
        """Bytes per element of weights, gradients and activations."""
        return DTYPE_BYTES[self.storage_dtype]


@dataclass
class OpBuilder:
    """Appends ops with consecutive ids; each op depends on ``deps`` given."""

    dtype: str
    next_id: int = 0
    ops: list[Op] = field(default_factory=list)

    @property
    def width(self) -> int:
        return DTYPE_BYTES[self.dtype]

    def add(self, **fields) -> int:
        op = Op(id=self.next_id, dtype=self.dtype, **fields)
        self.ops.append(op)
        self.next_id += 1
        return op.id

    def gemm(self, name: str, m: int, n: int, k: int, batch: int = 1, shared_b: bool = False,
             **fields) -> int:
        """C[m,n] = A[m,k] B[k,n], ``batch`` times; ``shared_b`` when B is one
        weight matrix read once for the whole batch."""
        d = self.width
        b_reads = k * n if shared_b else batch * k * n
        return self.add(name=name, op="gemm", m=m, n=n, k=k, batch=batch,
                        flops=2.0 * batch * m * n * k,
                        bytes_read=float(d * (batch * m * k + b_reads)),
                        bytes_written=float(d * batch * m * n), **fields)

    def pointwise(self, name: str, op: str, elements: int, reads: int, flops_per_element: float,
                  **fields) -> int:
        """An elementwise/softmax/norm op reading ``reads`` tensors of ``elements``."""
        d = self.width
        return self.add(name=name, op=op, flops=float(flops_per_element * elements),
                        bytes_read=float(d * reads * elements), bytes_written=float(d * elements),
                        **fields)


# FLOPs per element of the pointwise ops (an estimate; they are bandwidth-bound,
# and the Megatron-LM FLOPs formula counts only the GEMMs).
_LAYERNORM_FLOPS = 5.0
_SOFTMAX_FLOPS = 5.0
_GELU_FLOPS = 8.0


def _forward_layer(bld: OpBuilder, cfg: ModelConfig, layer: int, b: int, prefix: str,
                   keep: bool) -> list[str]:
    """Append one layer's forward ops; return the activation tensors it keeps."""
    s, h, a, hd = cfg.seq_len, cfg.hidden, cfg.heads, cfg.head_dim
    tokens = b * s
    tag = f"L{layer}.{prefix}"
    kept: list[str] = []

    def out(name: str) -> dict:
        if not keep:
            return {}
        tensor = f"{tag}{name}"
        kept.append(tensor)
        return {"tensor": tensor}

    common = {"layer": layer}
    bld.pointwise(f"{tag}ln1", "norm", tokens * h, 1, _LAYERNORM_FLOPS, **common, **out("ln1"))
    bld.gemm(f"{tag}qkv", tokens, h + 2 * cfg.kv_dim, h, shared_b=True, **common, **out("qkv"))
    bld.gemm(f"{tag}attn_scores", s, s, hd, batch=b * a, **common)
    bld.pointwise(f"{tag}softmax", "softmax", b * a * s * s, 1, _SOFTMAX_FLOPS, **common,
                  **out("softmax"))
    bld.gemm(f"{tag}attn_values", s, hd, s, batch=b * a, **common, **out("context"))
    bld.gemm(f"{tag}proj", tokens, h, h, shared_b=True, **common)
    bld.pointwise(f"{tag}residual1", "elementwise", tokens * h, 2, 1.0, **common, **out("res1"))
    bld.pointwise(f"{tag}ln2", "norm", tokens * h, 1, _LAYERNORM_FLOPS, **common, **out("ln2"))
    fc1_width = 2 * cfg.ffn if cfg.gated_mlp else cfg.ffn
    bld.gemm(f"{tag}fc1", tokens, fc1_width, h, shared_b=True, **common, **out("fc1"))
    bld.pointwise(f"{tag}act", "elementwise", tokens * cfg.ffn, 2 if cfg.gated_mlp else 1,
                  _GELU_FLOPS, **common, **out("act"))
    bld.gemm(f"{tag}fc2", tokens, h, cfg.ffn, shared_b=True, **common)
    bld.pointwise(f"{tag}residual2", "elementwise", tokens * h, 2, 1.0, **common)
    return kept


def _backward_layer(bld: OpBuilder, cfg: ModelConfig, layer: int, b: int,
                    frees: list[str]) -> None:
    """Append one layer's backward ops, in reverse order of the forward.

    Every weight GEMM becomes an input-gradient (dgrad) and a weight-gradient
    (wgrad) GEMM; each batched attention GEMM becomes two GEMMs of the same
    size (gradients of both inputs). The last op frees the layer's activations.
    """
    s, h, a, hd = cfg.seq_len, cfg.hidden, cfg.heads, cfg.head_dim
    tokens = b * s
    tag = f"L{layer}.bwd."
    common = {"layer": layer}
    fc1_width = 2 * cfg.ffn if cfg.gated_mlp else cfg.ffn
    bld.pointwise(f"{tag}residual2", "elementwise", tokens * h, 1, 1.0, **common)
    bld.gemm(f"{tag}fc2_dgrad", tokens, cfg.ffn, h, shared_b=True, **common)
    bld.gemm(f"{tag}fc2_wgrad", cfg.ffn, h, tokens, shared_b=True, **common)
    bld.pointwise(f"{tag}act", "elementwise", tokens * cfg.ffn, 2, _GELU_FLOPS, **common)
    bld.gemm(f"{tag}fc1_dgrad", tokens, h, fc1_width, shared_b=True, **common)
    bld.gemm(f"{tag}fc1_wgrad", h, fc1_width, tokens, shared_b=True, **common)
    bld.pointwise(f"{tag}ln2", "norm", tokens * h, 2, _LAYERNORM_FLOPS, **common)
    bld.gemm(f"{tag}proj_dgrad", tokens, h, h, shared_b=True, **common)
    bld.gemm(f"{tag}proj_wgrad", h, h, tokens, shared_b=True, **common)
    bld.gemm(f"{tag}attn_values_dgrad", s, s, hd, batch=b * a, **common)
    bld.gemm(f"{tag}attn_values_wgrad", s, hd, s, batch=b * a, **common)
    bld.pointwise(f"{tag}softmax", "softmax", b * a * s * s, 2, _SOFTMAX_FLOPS, **common)
    bld.gemm(f"{tag}attn_scores_dq", s, hd, s, batch=b * a, **common)
    bld.gemm(f"{tag}attn_scores_dk", s, hd, s, batch=b * a, **common)
    bld.gemm(f"{tag}qkv_dgrad", tokens, h, h + 2 * cfg.kv_dim, shared_b=True, **common)
    bld.gemm(f"{tag}qkv_wgrad", h, h + 2 * cfg.kv_dim, tokens, shared_b=True, **common)
    bld.pointwise(f"{tag}ln1", "norm", tokens * h, 2, _LAYERNORM_FLOPS, frees=tuple(frees),
                  **common)


def _attention_core(bld: OpBuilder, cfg: ModelConfig, layer: int, b: int) -> None:
    s, a, hd = cfg.seq_len, cfg.heads, cfg.head_dim
    tag = f"L{layer}.recompute."
    bld.gemm(f"{tag}attn_scores", s, s, hd, batch=b * a, layer=layer)
    bld.pointwise(f"{tag}softmax", "softmax", b * a * s * s, 1, _SOFTMAX_FLOPS, layer=layer)
    bld.gemm(f"{tag}attn_values", s, hd, s, batch=b * a, layer=layer)


def training_ops(cfg: ModelConfig, microbatch: int, layers: int | None = None,
                 recompute: str = "none", first_id: int = 0) -> list[Op]:
    """Forward then backward of ``layers`` transformer layers for one microbatch,
    on one stream (so each op follows the previous one).

    With ``recompute='full'`` only each layer's input is kept in the forward and
    the whole layer forward is replayed before its backward; with
    ``'selective'`` the attention core is replayed.
    """
    if recompute not in RECOMPUTE_MODES:
        raise ValueError(f"recompute: expected one of {RECOMPUTE_MODES}, got {recompute!r}")
    layers = cfg.layers if layers is None else layers
    bld = OpBuilder(cfg.dtype, next_id=first_id)
    kept: dict[int, list[str]] = {}
    for layer in range(layers):
        kept[layer] = _forward_layer(bld, cfg, layer, microbatch, "fwd.", keep=recompute == "none")
    for layer in reversed(range(layers)):
        if recompute == "full":
            kept[layer] = _forward_layer(bld, cfg, layer, microbatch, "recompute.", keep=True)
        elif recompute == "selective":
            _attention_core(bld, cfg, layer, microbatch)
        _backward_layer(bld, cfg, layer, microbatch, kept[layer])
    return bld.ops


def decode_step_ops(cfg: ModelConfig, batch: int, context_len: int, layers: int | None = None,
                    weight_tier: str = "hbm", compute_tier: str = "scratchpad",
                    prefetch_depth: int = 2) -> list[Op]:
    """One decode step (one new token for each of ``batch`` requests) on an
    NPU + PIM device, NeuPIMs-style.

    The weight GEMMs (QKV, projection, MLP) run on the matrix unit from
    ``compute_tier``: each weight matrix is copied there from ``weight_tier``
    on stream 1 (a DMA queue), allocated as a tensor and freed by its GEMM. The
    copy of weight j waits for the GEMM of weight j - ``prefetch_depth``, so at
    most that many weight matrices occupy the scratchpad and the next copy
    overlaps the current GEMM (double buffering with the default of 2).
    Attention reads each request's KV cache (context_len x kv_dim per layer,
    for K and again for V) with GEMVs, which go to PIM when the device has it.
    """
    layers = cfg.layers if layers is None else layers
    h, hd, a = cfg.hidden, cfg.head_dim, cfg.heads
    bld = OpBuilder(cfg.dtype)
    d = bld.width
    fc1_width = 2 * cfg.ffn if cfg.gated_mlp else cfg.ffn
    shapes = {"qkv": (h + 2 * cfg.kv_dim, h), "proj": (h, h), "fc1": (fc1_width, h),
              "fc2": (h, cfg.ffn)}
    sequence = [(layer, name) for layer in range(layers) for name in shapes]
    copy_ids: dict[int, int] = {}

    def load(j: int, deps: tuple[int, ...]) -> None:
        layer, name = sequence[j]
        n, k = shapes[name]
        copy_ids[j] = bld.add(name=f"L{layer}.load_{name}", op="copy", flops=0.0,
                              bytes_read=float(d * k * n), bytes_written=float(d * k * n),
                              src_tier=weight_tier, dst_tier=compute_tier,
                              tensor=f"L{layer}.{name}.w", stream=1, layer=layer, deps=deps)

    for j in range(min(prefetch_depth, len(sequence))):
        load(j, ())
    previous: list[int] = []

    def step(make) -> None:
        previous[:] = [make(tuple(previous))]

    weight_index = 0

    def weight_gemm(layer: int, name: str) -> None:
        nonlocal weight_index
        j = weight_index
        n, k = shapes[name]
        step(lambda deps: bld.gemm(f"L{layer}.{name}", batch, n, k, shared_b=True,
                                   deps=deps + (copy_ids[j],), tier=compute_tier,
                                   frees=(f"L{layer}.{name}.w",), layer=layer))
        if j + prefetch_depth < len(sequence):
            load(j + prefetch_depth, (previous[0],))
        weight_index += 1

    kv_bytes = float(d * batch * context_len * cfg.kv_dim)
    gemv_flops = 2.0 * batch * context_len * a * hd
    for layer in range(layers):
        tag = f"L{layer}."
        weight_gemm(layer, "qkv")
        step(lambda deps: bld.add(name=f"{tag}attn_scores", op="gemv", deps=deps, layer=layer,
                                  flops=gemv_flops, bytes_read=kv_bytes,
                                  bytes_written=float(d * batch * a * context_len)))
        step(lambda deps: bld.pointwise(f"{tag}softmax", "softmax", batch * a * context_len, 1,
                                        _SOFTMAX_FLOPS, deps=deps, layer=layer))
        step(lambda deps: bld.add(name=f"{tag}attn_values", op="gemv", deps=deps, layer=layer,
                                  flops=gemv_flops, bytes_read=kv_bytes,
                                  bytes_written=float(d * batch * h)))
        weight_gemm(layer, "proj")
        step(lambda deps: bld.pointwise(f"{tag}residual1", "elementwise", batch * h, 2, 1.0,
                                        deps=deps, layer=layer))
        weight_gemm(layer, "fc1")
        step(lambda deps: bld.pointwise(f"{tag}act", "elementwise", batch * cfg.ffn, 1,
                                        _GELU_FLOPS, deps=deps, layer=layer))
        weight_gemm(layer, "fc2")
        step(lambda deps: bld.pointwise(f"{tag}residual2", "elementwise", batch * h, 2, 1.0,
                                        deps=deps, layer=layer))
    return bld.ops


def matrix_flops(ops: list[Op]) -> float:
    return sum(op.flops for op in ops if op.op in ("gemm", "gemv", "attention"))
