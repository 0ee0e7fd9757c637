"""GEMM kernel model for SM arrays: tiles, waves, split-K, main loop and memory.

C[M, N] = A[M, K] B[K, N] (``batch`` times) runs as one kernel of thread
blocks, each computing a ``tile_m`` x ``tile_n`` output tile over a slice of K
(``split_k`` slices). The library picks, among the tiles it offers
(``SmArraySpec.gemm_tiles``) and split-K factors, the configuration with the
least predicted time, as cuBLAS's heuristics and autotuning aim to; each
candidate costs (all pure functions below, times in seconds):

- tile and wave quantization: tiles = batch x ceil(M / tile_m) x
  ceil(N / tile_n) x split_k run in waves of as many tiles as SMs granted,
  waves = ceil(tiles / SMs) (NVIDIA, "Matrix Multiplication Background User's
  Guide", DU-09799-001, "Tile Quantization" and "Wave Quantization");
- main loop of one tile: 2 tile_m tile_n K_q FLOPs at the tensor-core rate of
  one SM (FLOP per clock x clock) times the device's calibrated
  ``mainloop_efficiency``, with K_q the tile's K slice rounded up to the
  128-byte K step of the tensor-core loads (Ampere/Hopper ``ldmatrix``/TMA
  tiles; K step = 128 bytes / element bytes);
- per tile, outside the main loop: the prologue, which waits for the first
  operand stages of the software pipeline to arrive before the tensor cores
  start, and the epilogue, which converts the accumulators and stores the
  output tile (NVIDIA CUTLASS documentation, "Efficient GEMM in CUDA":
  software pipelining and the epilogue; the kernels of cuBLAS and CUTLASS run
  them once per tile, not overlapped with that tile's main loop):
  ``gemm_tile_overhead_clocks`` SM clocks, once per wave. Short-K GEMMs (the
  weight gradients of a micro-batch, whose K is its tokens) pay it over a
  short main loop, so they run below the large-GEMM throughput, and small
  tiles pay it more often than large ones;
- operand traffic: the bytes the kernel moves through HBM at the achievable
  bandwidth (A and B once when both fit in L2, otherwise re-read once per band
  of the swizzled wave raster; C written once; split-K partial sums in fp32
  written and read back), and, where the device gives an L2 bandwidth, every
  tile's A and B slices through L2;
- fixed time: ``launch_overhead_s`` per kernel, two kernels with split-K (the
  GEMM and the reduction of the partial sums, as cuBLAS runs it).

time = kernel launches x launch_overhead_s + max(waves x (main loop of a tile
+ tile overhead),
HBM bytes / achievable HBM bandwidth, L2 bytes / L2 bandwidth)

Split-K is a candidate only when the output tiles alone do not fill the SMs
(skinny or small-output, deep GEMMs), and tiles of fewer than 64 rows only
for GEMMs of at most that many rows (decode-style skinny kernels), as in
cuBLAS's heuristics. What bounds
the kernel (``bound``) is ``latency`` when the fixed time and the tiles'
prologues and epilogues exceed the main loop and the memory time, else
``compute`` or ``memory``, whichever term is the max. Every term is
non-increasing in SMs, clock and bandwidth, and the choice is a minimum, so
more of any of them never makes a GEMM slower (property-tested).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from sim.hardware.specs import DTYPE_BYTES, MATH_DTYPE, SmArraySpec

SPLIT_K = (1, 2, 3, 4, 6, 8, 12, 16)
SWIZZLE_WIDTHS = (1, 2, 4, 8, 16)    # CUTLASS threadblock swizzle (raster band widths in tiles)
PARTIAL_BYTES = 4                    # split-K partial sums are fp32
K_STEP_BYTES = 128                   # bytes of K per tensor-core load step
SKINNY_ROWS = 64                     # tiles with fewer rows are skinny-kernel tiles: only for GEMMs that short


@dataclass(frozen=True)
class Precision:
    """How a GEMM's operands are stored and which tensor-core rate it runs at.

    ``math``: the dtype whose tensor-core rate applies; ``a_bytes`` the left
    (activation) operand, ``b_bytes`` the right (weight) operand and
    ``c_bytes`` the output, per element.
    """

    name: str
    math: str
    a_bytes: float
    b_bytes: float
    c_bytes: float


def _same(dtype: str, out: float | None = None) -> Precision:
    d = DTYPE_BYTES[dtype]
    return Precision(dtype, MATH_DTYPE[dtype], d, d, d if out is None else out)


# GEMM precisions: element dtypes (C in the same dtype; fp8 and int8 GEMMs
# write bf16, as Transformer Engine's fp8 GEMMs and W8A8 kernels with a
# dequantizing epilogue do), and weight-only quantization, where int8 or int4
# weights are dequantized to bf16 inside the main loop and the math is bf16
# (Frantar et al., "GPTQ", 2023; Lin et al., "AWQ", MLSys 2024). W8A8 is
# ``int8`` (Xiao et al., "SmoothQuant", ICML 2023).
PRECISIONS: dict[str, Precision] = {
    **{d: _same(d) for d in ("fp64", "fp32", "tf32", "bf16", "fp16")},
    **{d: _same(d, 2.0) for d in ("fp8", "fp8_e4m3", "fp8_e5m2", "int8", "int4")},
    "w8a8": Precision("w8a8", "int8", 1.0, 1.0, 2.0),
    "w8a16": Precision("w8a16", "bf16", 2.0, 1.0, 2.0),
    "w4a16": Precision("w4a16", "bf16", 2.0, 0.5, 2.0),
}


def precision(dtype: str) -> Precision:
    """The GEMM precision named ``dtype`` (KeyError if unknown)."""
    return PRECISIONS[dtype]


@dataclass(frozen=True)
class KernelTime:
    """A priced kernel: its time on ``sms`` SMs, the terms it is the max of
    (``compute_s``, ``memory_s``) plus ``fixed_s``, what bounds it, and for a
    GEMM the configuration the library picks (``tile_m`` x ``tile_n`` tiles,
    ``split_k``), its ``tiles`` and ``waves``, and the part of ``compute_s``
    its tiles spend outside the main loop (``tile_overhead_s``)."""

    seconds: float
    bound: str
    compute_s: float
    memory_s: float
    fixed_s: float
    flops: float
    hbm_bytes: float
    tiles: int = 1
    waves: int = 1
    sms: int = 1
    tile: str = ""
    tile_m: int = 0
    tile_n: int = 0
    split_k: int = 1
    tile_overhead_s: float = 0.0

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.seconds if self.seconds > 0 else 0.0


def timed(compute: float, memory: float, fixed: float, flops: float, nbytes: float, **extra) -> KernelTime:
    """fixed + max(compute, memory); the bound is ``latency`` when the fixed
    time exceeds both, else the larger term."""
    bound = "latency" if fixed >= max(compute, memory) else ("compute" if compute >= memory else "memory")
    return KernelTime(fixed + max(compute, memory), bound, compute, memory, fixed, flops, nbytes, **extra)


def hbm_traffic_bytes(m: int, n: int, k: int, batch: int, p: Precision, tile_m: int, tile_n: int,
                      split_k: int, sms: int, l2_bytes: int | None) -> float:
    """HBM bytes of one GEMM kernel.

    A (M x K) and B (K x N) are read once when both fit in L2; otherwise the
    wave raster (a band of ``r`` tile rows x ``sms // r`` tile columns, the
    best of the swizzle widths) re-reads A once per band of columns and B once
    per band of rows. C is written once; with split-K the fp32 partials are
    written and read back once each.
    """
    a = m * k * p.a_bytes
    b = k * n * p.b_bytes
    grid_m, grid_n = math.ceil(m / tile_m), math.ceil(n / tile_n)
    if l2_bytes is None or a + b <= l2_bytes:
        operands = a + b
    else:
        operands = min(a * math.ceil(grid_n / min(grid_n, max(1, sms // r))) + b * math.ceil(grid_m / r)
                       for r in SWIZZLE_WIDTHS if r <= max(1, min(grid_m, sms)))
    partials = 2.0 * split_k * m * n * PARTIAL_BYTES if split_k > 1 else 0.0
    return batch * (operands + m * n * p.c_bytes + partials)


def _candidate(m, n, k, batch, p, sm: SmArraySpec, sms, hbm_bw, tile_m, tile_n, split_k):
    k_step = max(1, int(K_STEP_BYTES // p.a_bytes))
    k_slice = math.ceil(k / split_k)
    k_q = math.ceil(k_slice / k_step) * k_step
    tiles = batch * math.ceil(m / tile_m) * math.ceil(n / tile_n) * split_k
    waves = math.ceil(tiles / sms)
    rate = sm.matrix_per_sm(p.math) * sm.efficiency(p.math)
    mainloop = waves * 2.0 * tile_m * tile_n * k_q / rate
    tile_overhead = waves * sm.gemm_tile_overhead_clocks / sm.run_clock_hz
    compute = mainloop + tile_overhead
    hbm = hbm_traffic_bytes(m, n, k, batch, p, tile_m, tile_n, split_k, sms, sm.l2_bytes)
    memory = hbm / hbm_bw
    l2_bw = sm.l2_bandwidth_bytes_per_s
    if l2_bw:
        memory = max(memory, tiles * (tile_m * p.a_bytes + tile_n * p.b_bytes) * k_q / l2_bw)
    fixed = (2 if split_k > 1 else 1) * sm.launch_overhead_s
    tile = f"{tile_m}x{tile_n}" + (f" split-k {split_k}" if split_k > 1 else "")
    plan = timed(compute, memory, fixed, 2.0 * batch * m * n * k, hbm, tiles=tiles, waves=waves, sms=sms,
                 tile=tile, tile_m=tile_m, tile_n=tile_n, split_k=split_k, tile_overhead_s=tile_overhead)
    if fixed + tile_overhead >= max(mainloop, memory):     # launch, prologues and epilogues dominate
        plan = dataclasses.replace(plan, bound="latency")
    return plan


def gemm_plan(m: int, n: int, k: int, sm: SmArraySpec, hbm_bytes_per_s: float, dtype: str = "bf16",
              batch: int = 1, sms: int | None = None) -> KernelTime:
    """The fastest configuration of a (batched) GEMM on ``sms`` SMs (all by
    default), with ``hbm_bytes_per_s`` the achievable HBM bandwidth."""
    p = precision(dtype)
    sms = sm.count if sms is None else max(1, min(sms, sm.count))
    best = None
    for tile_m, tile_n in sm.gemm_tiles:
        if tile_m < SKINNY_ROWS and m > tile_m:
            continue
        output_tiles = batch * math.ceil(m / tile_m) * math.ceil(n / tile_n)
        for split_k in SPLIT_K:
            if split_k > sm.max_split_k or (split_k > 1 and (output_tiles >= sms or k / split_k < 256)):
                continue
            plan = _candidate(m, n, k, batch, p, sm, sms, hbm_bytes_per_s, tile_m, tile_n, split_k)
            if best is None or plan.seconds < best.seconds:
                best = plan
    return best


def plan_on(plan: KernelTime, m: int, n: int, k: int, sm: SmArraySpec, hbm_bytes_per_s: float,
            dtype: str, batch: int, sms: int) -> KernelTime:
    """The same configuration run on ``sms`` SMs (a kernel granted fewer SMs
    than it asked for keeps its tiles and runs more waves)."""
    return _candidate(m, n, k, batch, precision(dtype), sm, max(1, sms), hbm_bytes_per_s,
                      plan.tile_m, plan.tile_n, plan.split_k)
