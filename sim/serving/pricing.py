"""What one iteration of a replica costs, from the device kernel models.

An iteration runs a batch of prefill chunks and decode tokens through one
pipeline stage of a model replica. Its ops, per layer on one GPU of the
tensor-parallel group (Megatron-LM's split, Shoeybi et al. 2019: QKV and MLP
up-projection split by columns, output and down-projection by rows):

- input norm, QKV GEMM (tokens x (hidden + 2 kv_dim) / tp x hidden), output
  projection (tokens x hidden x hidden / tp), post-attention norm, MLP up
  (tokens x ffn (x2 gated) / tp x hidden), activation, MLP down (tokens x
  hidden x ffn / tp), two residual adds: GEMMs on the batch's token count with
  the weights read once per iteration (``bytes_read`` = activations + the
  whole weight matrix, in the weight dtype);
- attention of every request on its own context: decode tokens read their
  request's whole KV cache (memory-bound), prefill chunks attend causally to
  the cached context plus themselves (FlashAttention: K and V read once, no
  s x s matrix in memory; Dao et al., NeurIPS 2022). One kernel per layer
  covers the batch (as vLLM's PagedAttention and FlashAttention's varlen
  kernels launch one grid over all sequences): its FLOPs and bytes are the
  sums over the requests;
- two all-reduces of tokens x hidden (tensor parallel, sim.serving.comm);
- the first stage adds the embedding lookup; the last the final norm and
  the LM head on the sequences that sample a token; a stage that is not the
  last sends its output to the next (sim.serving.comm).

Each op is an ordinary ``sim.workload.trace.Op`` priced by
``sim.engine.device.bind_op`` and ``isolated_seconds``, the same binding
and kernel models trace replay uses, so device models and calibrations
apply to serving as they are. Kernels run one after another on the GPU's
stream, so the iteration's time is the sum of its ops' times.

Speed: prices are cached per component. The token-proportional part is
keyed by the token count, exact up to 256 and above that rounded up to 1/128
of its octave (at most 0.8% more tokens than the batch has); decode
attention by the number of sequences and a grid of 16 points per octave of
the summed context, interpolated linearly in between (a decode-only
iteration is one lookup of that affine piece, weights and head included); prefill attention by
its sums rounded up like the token count. 100,000 requests then need a few
thousand distinct prices.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.engine.device import bind_op, isolated_seconds
from sim.errors import ScenarioError, TraceError
from sim.hardware.specs import DeviceSpec
from sim.serving.kvcache import weight_params
from sim.workload.trace import Op
from sim.workload.transformer import ModelConfig

EXACT_BELOW = 256
FRACTION_BITS = 7       # 2^7 = 128 steps per octave above EXACT_BELOW
GRID_BITS = 4           # 2^4 = 16 interpolation points per octave of the summed context
NORM_FLOPS = 5.0        # per element, as sim.workload.transformer
ACT_FLOPS = 8.0


def grid(value: int) -> tuple[int, int]:
    """The integer points of the interpolation grid around ``value``: itself below 32,
    else the multiples of 2^(floor(log2 value) - 4) below and above it (16 points per
    octave)."""
    shift = value.bit_length() - 1 - GRID_BITS
    if shift <= 0:
        return value, value
    low = (value >> shift) << shift
    return low, low + (1 << shift)


def bucket(value: int) -> int:
    """``value`` rounded up to the price grid: exact up to 256, then to a
    multiple of 2^(floor(log2 value) - 7)."""
    if value <= EXACT_BELOW:
        return value
    quantum = 1 << (value.bit_length() - 1 - FRACTION_BITS)
    return -(-value // quantum) * quantum


@dataclass(frozen=True)
class Precision:
    """Bytes per element of weights, KV cache and activations; ``compute_dtype`` the math
    dtype of the matrix units (its peak is the one that counts); ``gemm_dtype`` the GEMM
    precision of the kernel models (sim.hardware.gemm.PRECISIONS: ``bf16``, ``fp8``,
    ``int8`` for W8A8, ``w8a16`` / ``w4a16`` for weight-only quantization); attention and
    pointwise kernels run in ``act_dtype``, the model's type."""

    weight_bytes: float
    kv_bytes: float
    act_bytes: float
    compute_dtype: str
    gemm_dtype: str = ""
    act_dtype: str = "bf16"


class Cost:
    """An iteration's (or a component's) time, FLOPs and bytes moved on one GPU.

    A plain slotted class (treated as immutable): iterations create several
    each, and a frozen dataclass's constructor is several times slower."""

    __slots__ = ("seconds", "flops", "bytes")

    def __init__(self, seconds: float, flops: float, nbytes: float):
        self.seconds = seconds
        self.flops = flops
        self.bytes = nbytes

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.seconds + other.seconds, self.flops + other.flops, self.bytes + other.bytes)

    def __eq__(self, other) -> bool:
        return isinstance(other, Cost) and (self.seconds, self.flops, self.bytes) == (
            other.seconds, other.flops, other.bytes)

    def __repr__(self) -> str:
        return f"Cost(seconds={self.seconds!r}, flops={self.flops!r}, bytes={self.bytes!r})"

    def scaled(self, factor: float) -> "Cost":
        return Cost(self.seconds * factor, self.flops * factor, self.bytes * factor)

    def toward(self, other: "Cost", weight: float) -> "Cost":
        """Linear interpolation: ``weight`` 0 gives this cost, 1 gives ``other``."""
        return Cost(self.seconds + (other.seconds - self.seconds) * weight,
                    self.flops + (other.flops - self.flops) * weight,
                    self.bytes + (other.bytes - self.bytes) * weight)


ZERO = Cost(0.0, 0.0, 0.0)


class BatchShape:
    """What an iteration computes, summed over its requests.

    ``prefill_tokens``: prompt tokens processed; ``prefill_seqs``: requests
    prefilling; ``prefill_pairs``: sum over chunks of (query, key) pairs of
    causal attention, q x cached + q (q + 1) / 2; ``prefill_context``: sum of
    the keys each chunk reads (cached + q); ``decode_seqs`` and
    ``decode_context`` (sum of the contexts the decode tokens attend to);
    ``sampled``: sequences that produce a token. (A slotted class rather than a
    dataclass: one is made per iteration.)
    """

    __slots__ = ("prefill_tokens", "prefill_seqs", "prefill_pairs", "prefill_context", "decode_seqs",
                 "decode_context", "sampled")

    def __init__(self, prefill_tokens: int = 0, prefill_seqs: int = 0, prefill_pairs: int = 0,
                 prefill_context: int = 0, decode_seqs: int = 0, decode_context: int = 0, sampled: int = 0):
        self.prefill_tokens = prefill_tokens
        self.prefill_seqs = prefill_seqs
        self.prefill_pairs = prefill_pairs
        self.prefill_context = prefill_context
        self.decode_seqs = decode_seqs
        self.decode_context = decode_context
        self.sampled = sampled

    @property
    def tokens(self) -> int:
        return self.prefill_tokens + self.decode_seqs

    def __repr__(self) -> str:
        return "BatchShape(" + ", ".join(f"{k}={getattr(self, k)}" for k in self.__slots__) + ")"


class StagePricer:
    """Prices iterations of one pipeline stage (``layers`` layers) on one GPU of a replica."""

    def __init__(self, model: ModelConfig, spec: DeviceSpec, tp: int, layers: int, first: bool,
                 last: bool, precision: Precision, allreduce=None, send=None, where: str = "serving"):
        self.model = model
        self.spec = spec
        self.tp = tp
        self.layers = layers
        self.first = first
        self.last = last
        self.p = precision
        self.allreduce = allreduce
        self.send = send
        self.where = where
        self.heads = model.heads // tp
        self.kv_heads = (model.kv_heads or model.heads) // tp
        self.hd = model.head_dim
        self._linear: dict[int, Cost] = {}
        self._decode: dict[tuple[int, int], Cost] = {}
        self._decode_iter: dict[tuple[int, int], tuple] = {}
        self._prefill: dict[tuple[int, int, int, int], Cost] = {}
        self._head: dict[int, Cost] = {}
        self.weights_bytes = weight_params(model, layers, tp, first, last) * precision.weight_bytes
        self.linear(1)  # fails here, before simulating, if the device cannot run the model's ops

    # ------------------------------------------------------------ pricing ops

    def op(self, name: str, kind: str, flops: float, read: float, written: float, **fields) -> Op:
        """A trace op of this stage's work (``fields``: any other Op field, e.g. shape,
        ``unit``, ``deps``, ``stream``); the matrix dtype unless ``dtype`` says otherwise."""
        fields.setdefault("dtype", self.p.compute_dtype)
        return Op(id=fields.pop("id", 0), name=name, op=kind, flops=float(flops), bytes_read=float(read),
                  bytes_written=float(written), **fields)

    def gemm_op(self, name: str, m: int, n: int, k: int, **fields) -> Op:
        """A weight GEMM: activations [m, k] x weights [k, n], the weights read once."""
        a, w = self.p.act_bytes, self.p.weight_bytes
        fields.setdefault("dtype", self.p.gemm_dtype or self.p.compute_dtype)
        return self.op(name, "gemm", 2.0 * m * n * k, a * m * k + w * k * n, a * m * n, m=m, n=n, k=k, **fields)

    def pointwise_op(self, name: str, kind: str, elements: float, reads: int, flops_per: float,
                     **fields) -> Op:
        """A norm or elementwise op reading ``reads`` tensors of ``elements`` and writing one."""
        a = self.p.act_bytes
        return self.op(name, kind, flops_per * elements, a * reads * elements, a * elements,
                       dtype=self._pointwise_dtype(), **fields)

    def decode_attention_op(self, seqs: int, context: int, **fields) -> Op:
        """Attention of ``seqs`` decode tokens over ``context`` cached keys in all, one layer:
        reads their queries and every cached K and V, writes their outputs and new K, V."""
        a, kv = self.p.act_bytes, self.p.kv_bytes
        q = seqs * self.heads * self.hd
        fields.setdefault("dtype", self.p.act_dtype)
        return self.op("decode_attention", fields.pop("kind", "attention"), 4.0 * context * self.heads * self.hd,
                       q * a + context * 2 * self.kv_heads * self.hd * kv,
                       q * a + seqs * 2 * self.kv_heads * self.hd * kv, **fields)

    def price(self, op: Op) -> Cost:
        """The op alone on the device: ``bind_op`` + ``isolated_seconds`` (sim.engine.device)."""
        try:
            bound = bind_op(op, self.spec, self.where)
        except TraceError as exc:
            raise ScenarioError(str(exc)) from None
        return Cost(isolated_seconds(bound, self.spec), op.flops, op.bytes_read + op.bytes_written)

    def gemm(self, name: str, m: int, n: int, k: int) -> Cost:
        return self.price(self.gemm_op(name, m, n, k))

    def pointwise(self, name: str, kind: str, elements: float, reads: int, flops_per: float) -> Cost:
        return self.price(self.pointwise_op(name, kind, elements, reads, flops_per))

    def _pointwise_dtype(self) -> str:
        """Norms and activations run in the model's 16-bit type even when GEMMs use
        fp8 or int8 (Transformer Engine's recipe); the vector table decides."""
        table = self.spec.sm_array.vector_flops_per_s if self.spec.sm_array else (
            self.spec.vector.flops_per_s if self.spec.vector else {})
        for dtype in (self.p.compute_dtype, self.model.dtype, "bf16", "fp16", "fp32"):
            if dtype in table:
                return dtype
        return self.p.compute_dtype

    # ------------------------------------------------------------ components

    def layer_linear(self, tokens: int) -> Cost:
        """One layer's token-proportional part for ``tokens`` tokens (no attention)."""
        m, h, tp = self.model, self.model.hidden, self.tp
        fc1 = (2 if m.gated_mlp else 1) * m.ffn // tp
        ffn = m.ffn // tp
        t = tokens
        cost = self.pointwise("input_norm", "norm", t * h, 1, NORM_FLOPS)
        cost += self.gemm("qkv", t, (h + 2 * m.kv_dim) // tp, h)
        cost += self.gemm("o_proj", t, h, h // tp)
        cost += self.pointwise("residual", "elementwise", t * h, 2, 1.0)
        cost += self.pointwise("post_norm", "norm", t * h, 1, NORM_FLOPS)
        cost += self.gemm("mlp_up", t, fc1, h)
        cost += self.pointwise("activation", "elementwise", t * ffn, 2 if m.gated_mlp else 1, ACT_FLOPS)
        cost += self.gemm("mlp_down", t, h, ffn)
        cost += self.pointwise("residual", "elementwise", t * h, 2, 1.0)
        if self.allreduce is not None:
            cost += Cost(2.0 * self.allreduce.seconds(t * h * self.p.act_bytes), 0.0, 0.0)
        return cost

    def linear(self, tokens: int) -> Cost:
        """All layers of the stage for ``tokens`` tokens, plus ``extras``."""
        key = bucket(tokens)
        cached = self._linear.get(key)
        if cached is None:
            cached = self._linear[key] = self.layer_linear(key).scaled(self.layers) + self.extras(key)
        return cached

    def extras(self, tokens: int) -> Cost:
        """The embedding lookup (first stage) and the send to the next stage (all but the last)."""
        cost = ZERO
        if self.first:
            cost += self.pointwise("embedding", "elementwise", tokens * self.model.hidden, 1, 0.0)
        if self.send is not None:
            cost += Cost(self.send.seconds(tokens * self.model.hidden * self.p.act_bytes), 0.0, 0.0)
        return cost

    def decode_attention(self, seqs: int, context: int) -> Cost:
        """Attention of ``seqs`` decode tokens over ``context`` cached keys in all (all
        layers), interpolated linearly between prices on ``grid`` points of ``context``
        (exact where the kernel model is linear in it, as a roofline is piecewise)."""
        if seqs == 0:
            return ZERO
        low, high = grid(context)
        a = self._decode_at(seqs, low)
        if high == low:
            return a
        b = self._decode_at(seqs, high)
        return a.toward(b, (context - low) / (high - low))

    def _decode_at(self, seqs: int, context: int) -> Cost:
        key = (seqs, context)
        cached = self._decode.get(key)
        if cached is None:
            cached = self._decode[key] = self.decode_attention_layer(seqs, context).scaled(self.layers)
        return cached

    def decode_iteration(self, seqs: int, context: int) -> Cost:
        """A decode-only iteration (``linear`` + ``decode_attention`` + ``head``), the
        common case, kept per (sequences, grid cell) as an affine function of ``context``
        so that an iteration costs one lookup."""
        low, high = grid(context)
        entry = self._decode_iter.get((seqs, low))
        if entry is None:
            base = self.linear(seqs) + self.head(seqs)
            a = base + self._decode_at(seqs, low)
            b = base + self._decode_at(seqs, high)
            span = float(high - low) or 1.0
            entry = self._decode_iter[(seqs, low)] = (
                a.seconds, (b.seconds - a.seconds) / span, a.flops, (b.flops - a.flops) / span,
                a.bytes, (b.bytes - a.bytes) / span)
        d = context - low
        return Cost(entry[0] + entry[1] * d, entry[2] + entry[3] * d, entry[4] + entry[5] * d)

    def decode_attention_layer(self, seqs: int, context: int) -> Cost:
        return self.price(self.decode_attention_op(seqs, context))

    def prefill_attention(self, shape: BatchShape) -> Cost:
        if shape.prefill_seqs == 0:
            return ZERO
        key = (shape.prefill_seqs, bucket(shape.prefill_tokens), bucket(shape.prefill_pairs),
               bucket(shape.prefill_context))
        cached = self._prefill.get(key)
        if cached is None:
            seqs, tokens, pairs, context = key
            a, kv = self.p.act_bytes, self.p.kv_bytes
            q = tokens * self.heads * self.hd
            layer = self.price(self.op("prefill_attention", "attention", 4.0 * pairs * self.heads * self.hd,
                                       q * a + context * 2 * self.kv_heads * self.hd * kv,
                                       q * a + tokens * 2 * self.kv_heads * self.hd * kv, dtype=self.p.act_dtype))
            cached = self._prefill[key] = layer.scaled(self.layers)
        return cached

    def head(self, sampled: int) -> Cost:
        """Final norm and LM head on the sampled sequences (last stage only)."""
        if not self.last or sampled == 0:
            return ZERO
        key = bucket(sampled)
        cached = self._head.get(key)
        if cached is None:
            h = self.model.hidden
            cost = self.pointwise("final_norm", "norm", key * h, 1, NORM_FLOPS)
            if self.model.vocab:
                cost += self.gemm("lm_head", key, max(1, self.model.vocab // self.tp), h)
            cached = self._head[key] = cost
        return cached

    def iteration(self, shape: BatchShape) -> Cost:
        """The stage's cost for one iteration of ``shape``."""
        tokens = shape.prefill_tokens + shape.decode_seqs
        if tokens == 0:
            return ZERO
        if not shape.prefill_seqs:
            return self.decode_iteration(shape.decode_seqs, shape.decode_context)
        parts = [self.linear(tokens), self.decode_attention(shape.decode_seqs, shape.decode_context),
                 self.head(shape.sampled)]
        if shape.prefill_seqs:
            parts.append(self.prefill_attention(shape))
        return Cost(sum(p.seconds for p in parts), sum(p.flops for p in parts), sum(p.bytes for p in parts))
