"""One kernel on one device, as a user asks for it: ``accsim kernel`` and ``sim.kernel``.

``kernel(device, op, ...)`` validates its arguments (one-line ``AccsimError``
on bad input), loads the device spec (catalog name or path, with optional
``overrides`` as in a scenario's ``device_overrides``), prices the kernel
with the models of sim.hardware.kernels and returns a ``KernelResult``:
time, achieved FLOP/s and bandwidth, the share of the dense peak, what bounds
it (compute, memory or latency) and, for GEMMs, the tile and split-K the
library would pick and the waves it runs in. ``sweep`` prices a series of
sizes (a throughput curve).

Ops: ``gemm`` (m, n, k, batch), ``attention`` (fused FlashAttention-2
forward or backward: batch, heads, kv_heads, seq, seq_kv, head_dim, causal),
``pointwise`` (a memory-bound kernel moving ``bytes`` with ``flops``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, Mapping, Optional

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from sim.errors import AccsimError
from sim.hardware.gemm import PRECISIONS, precision
from sim.hardware.kernels import AttentionShape, Kernel, sm_kernel_time
from sim.hardware.specs import load_device_spec
from sim.schema import Bool, Bytes, NonNegativeFloat, PositiveInt, StrictModel, validate

OPS = ("gemm", "attention", "pointwise")


class KernelArgs(StrictModel):
    """What ``kernel`` accepts (every field documented in ``accsim kernel --help``)."""

    op: Literal["gemm", "attention", "pointwise"] = "gemm"
    dtype: Optional[str] = None
    m: Optional[PositiveInt] = None
    n: Optional[PositiveInt] = None
    k: Optional[PositiveInt] = None
    batch: PositiveInt = 1
    heads: Optional[PositiveInt] = None
    kv_heads: Optional[PositiveInt] = None
    seq: Optional[PositiveInt] = None
    seq_kv: Optional[PositiveInt] = None
    head_dim: Optional[PositiveInt] = None
    causal: Bool = True
    backward: Bool = False
    bytes: Optional[Bytes] = None
    flops: NonNegativeFloat = 0.0
    instructions: NonNegativeFloat = 0.0
    sms: Optional[PositiveInt] = None

    @model_validator(mode="after")
    def _complete(self):
        need = {"gemm": ("m", "n", "k"), "attention": ("heads", "seq", "head_dim"), "pointwise": ("bytes",)}
        missing = [name for name in need[self.op] if getattr(self, name) is None]
        if missing:
            raise PydanticCustomError("accsim", f"op {self.op} needs {', '.join('--' + m.replace('_', '-') for m in missing)}")
        if self.dtype is not None and self.dtype not in PRECISIONS:
            raise PydanticCustomError("accsim", f"dtype: expected one of {sorted(PRECISIONS)}, got {self.dtype!r}")
        if self.op == "attention" and self.kv_heads is not None and self.heads % self.kv_heads:
            raise PydanticCustomError("accsim", f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.op == "pointwise" and self.bytes <= 0:
            raise PydanticCustomError("accsim", "bytes: expected a positive size")
        return self


@dataclass(frozen=True)
class KernelResult:
    """A priced kernel. ``bound``: compute, memory or latency (the fixed
    launch overhead dominates, with a GEMM's tile prologues and epilogues).
    ``peak_fraction``: achieved over the dense tensor-core peak of the dtype
    (GEMM, attention) or the bandwidth over the datasheet bandwidth
    (pointwise). ``tile_overhead_s``: the time a GEMM's tiles spend outside
    their main loop, all waves (``sm_array.gemm_tile_overhead_clocks``)."""

    device: str
    op: str
    shape: str
    dtype: str
    seconds: float
    flops: float
    hbm_bytes: float
    flops_per_s: float
    bytes_per_s: float
    peak_fraction: float
    bound: str
    tile: str
    tiles: int
    waves: int
    sms: int
    tile_overhead_s: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def _shape_text(a: KernelArgs) -> str:
    if a.op == "gemm":
        return f"{a.batch}x{a.m}x{a.n}x{a.k}" if a.batch > 1 else f"{a.m}x{a.n}x{a.k}"
    if a.op == "attention":
        kv = a.kv_heads or a.heads
        return (f"b{a.batch} h{a.heads}/{kv} s{a.seq}x{a.seq_kv or a.seq} d{a.head_dim}"
                f"{' causal' if a.causal else ''}{' bwd' if a.backward else ''}")
    return f"{a.bytes} B"


def kernel(device: str, op: str = "gemm", overrides: Mapping[str, Any] | None = None, **args) -> KernelResult:
    """Price one kernel on ``device`` (a catalog name such as ``h100_sxm5_80gb``
    or a spec file). See the module docstring for ``op`` and its arguments."""
    a = validate(KernelArgs, {"op": op, **{k: v for k, v in args.items() if v is not None}}, "kernel", AccsimError)
    spec = load_device_spec(device, overrides=overrides)
    if spec.sm_array is None:
        raise AccsimError(f"device {spec.name}: the kernel models are for GPUs (an sm_array); this device has "
                          f"{list(spec.unit_kinds)}")
    dtype = a.dtype or spec.default_dtype
    sm = spec.sm_array
    if a.op in ("gemm", "attention") and precision(dtype).math not in sm.matrix_flops_per_clock_per_sm:
        raise AccsimError(f"dtype {dtype}: device {spec.name} has no {precision(dtype).math} tensor-core rate; "
                          f"it lists {sorted(sm.matrix_flops_per_clock_per_sm)}")
    if a.sms is not None and a.sms > sm.count:
        raise AccsimError(f"sms: {a.sms} is more than the {sm.count} SMs of {spec.name}")
    if a.op == "gemm":
        k = Kernel("gemm", "gemm", 2.0 * a.batch * a.m * a.n * a.k, 0.0, 0.0, dtype, a.m, a.n, a.k, a.batch)
        peak = sm.matrix_flops_per_s[precision(dtype).math]
    elif a.op == "attention":
        shape = AttentionShape(a.batch, a.heads, a.kv_heads or a.heads, a.seq, a.seq_kv or a.seq, a.head_dim,
                               a.causal)
        k = Kernel("attention", "attention", shape.flops(a.backward), 0.0, 0.0, dtype, attention=shape,
                   backward=a.backward)
        peak = sm.matrix_flops_per_s[precision(dtype).math]
    else:
        k = Kernel("pointwise", "pointwise", a.flops, a.bytes / 2, a.bytes / 2, dtype, instructions=a.instructions)
        peak = None
    t = sm_kernel_time(k, spec, sms=a.sms)
    bandwidth = spec.tier(spec.default_tier).bandwidth_bytes_per_s
    bytes_per_s = t.hbm_bytes / t.seconds if t.seconds > 0 else 0.0
    fraction = (t.flops_per_s / peak) if peak else bytes_per_s / bandwidth
    return KernelResult(spec.name, a.op, _shape_text(a), dtype, t.seconds, t.flops, t.hbm_bytes, t.flops_per_s,
                        bytes_per_s, fraction, t.bound, t.tile, t.tiles, t.waves, t.sms, t.tile_overhead_s)


SWEEP_SIZES = (128, 256, 512, 1024, 2048, 3072, 4096, 6144, 8192, 12288, 16384)
SWEEP_SEQ = (512, 1024, 2048, 4096, 8192, 16384)
SWEEP_BYTES = tuple(2 ** p for p in range(10, 33, 2))   # 1 KiB .. 4 GiB


def sweep(device: str, op: str = "gemm", overrides: Mapping[str, Any] | None = None, **args) -> list[KernelResult]:
    """A throughput curve: GEMM dimensions not given (m, n, k) swept together
    over SWEEP_SIZES (all three: square GEMMs); attention over sequence length
    (SWEEP_SEQ); pointwise over bytes (SWEEP_BYTES)."""
    args = {k: v for k, v in args.items() if v is not None}
    if op == "gemm":
        free = [d for d in ("m", "n", "k") if d not in args] or ["m", "n", "k"]
        return [kernel(device, op, overrides, **{**args, **{d: size for d in free}}) for size in SWEEP_SIZES]
    if op == "attention":
        return [kernel(device, op, overrides, **{**args, "seq": seq, "seq_kv": None}) for seq in SWEEP_SEQ]
    if op == "pointwise":
        return [kernel(device, op, overrides, **{**args, "bytes": size}) for size in SWEEP_BYTES]
    validate(KernelArgs, {"op": op}, "kernel", AccsimError)
    raise AccsimError(f"kernel: op: expected one of {list(OPS)}, got {op!r}")
