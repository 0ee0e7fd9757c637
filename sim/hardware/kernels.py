"""Kernel models: what one GPU kernel (or one op on an NPU unit) costs.

A ``Kernel`` describes one kernel by its shape: a (batched) GEMM, a fused
attention kernel, or a memory-bound pointwise kernel (norm, softmax,
activation, dropout, residual add, optimizer). ``price`` turns it into the
units it asks for and its time on the units granted, from the device spec;
each distinct (kernel shape, units) is priced once per spec
(``DeviceSpec.kernel_cache``), so a training iteration that repeats a few
shapes a million times costs a few hundred evaluations.

Models (times in seconds; all non-increasing in SMs, clock and bandwidth):

- GEMM on SMs: sim.hardware.gemm (tiles, waves, split-K, main loop, traffic).
- Fused attention on SMs (FlashAttention-2, Dao 2023, Algorithms 1 and 2):
  thread blocks of ``BLOCK`` query rows (forward) or key rows (backward) per
  (batch, head); a block's work is 4 x BLOCK x kv extent x head_dim matmul
  FLOPs forward (S = Q K^T and O = P V) and 10 x ... backward (S recomputed,
  dP, dV, dK, dQ: 2.5x the forward, as the paper counts), plus BLOCK x kv
  extent exponentials on the special-function units, which FlashAttention-2
  runs after the matmul that produces their input (not overlapped); with a
  causal mask a block only visits keys up to its diagonal (about half the
  work; FLOPs reported halved, the paper's convention). Blocks run in waves
  over the SMs (mean block time per wave for causal masks, whose blocks
  differ). Backward, where the device gives its L2 bandwidth, the blocks
  also send their dQ contributions to L2 as fp32 atomic adds (4 bytes per
  query row and head dimension a block visits), which the model lets through
  L2 at its full bandwidth without overlapping the matmuls. HBM traffic: Q, K, V read and O written once forward (K, V with
  the KV heads only: grouped-query and multi-query attention read less),
  log-sum-exp in fp32; backward reads Q, K, V, O, dO and writes dQ, dK, dV
  plus FlashAttention-2's fp32 dQ accumulator. Time = launches x overhead +
  max(waves x block time, bytes / achievable bandwidth).
- Pointwise (memory-bound) kernels on SMs: overhead + max(FLOPs / (SMs x
  CUDA-core rate), bytes / achievable bandwidth): the roofline (Williams et
  al., CACM 2009) at the bandwidth copy benchmarks reach.
- Systolic arrays, vector units, PIM: sim.hardware.cost (SCALE-Sim folds,
  rooflines).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from sim.hardware import cost, gemm
from sim.hardware.gemm import KernelTime, timed
from sim.hardware.specs import DeviceSpec, SmArraySpec

BLOCK = 128   # FlashAttention-2's block of query (forward) / key (backward) rows on A100 and H100


@dataclass(frozen=True)
class AttentionShape:
    """Scaled dot-product attention of ``batch`` sequences, ``heads`` query
    heads sharing ``kv_heads`` key/value heads, ``seq_q`` queries attending
    ``seq_kv`` keys of ``head_dim``."""

    batch: int
    heads: int
    kv_heads: int
    seq_q: int
    seq_kv: int
    head_dim: int
    causal: bool = True

    def flops(self, backward: bool = False) -> float:
        """Matmul FLOPs as FlashAttention counts them: 4 b h s_q s_kv d forward,
        2.5x backward, halved with a causal mask."""
        fwd = 4.0 * self.batch * self.heads * self.seq_q * self.seq_kv * self.head_dim
        fwd = fwd / 2 if self.causal else fwd
        return 2.5 * fwd if backward else fwd

    def hbm_bytes(self, element_bytes: float, backward: bool = False) -> float:
        """HBM bytes of the fused kernel (see the module docstring)."""
        q = self.batch * self.heads * self.seq_q * self.head_dim
        kv = self.batch * self.kv_heads * self.seq_kv * self.head_dim
        rows = self.batch * self.heads * self.seq_q
        if not backward:
            return element_bytes * (2 * q + 2 * kv) + 4.0 * rows
        return element_bytes * (4 * q + 4 * kv) + 4.0 * (2 * q) + 4.0 * 2 * rows


@dataclass(frozen=True)
class Kernel:
    """One kernel. ``kind``: ``gemm`` (m, n, k, batch), ``attention``
    (``attention`` shape, ``backward``), ``matrix`` (matrix FLOPs without a
    shape: the tensor-core rate and the roofline) or ``pointwise`` (flops and
    bytes)."""

    name: str
    kind: str
    flops: float
    bytes_read: float
    bytes_written: float
    dtype: str = "bf16"
    m: int = 0
    n: int = 0
    k: int = 0
    batch: int = 1
    attention: AttentionShape | None = None
    backward: bool = False
    instructions: float = 0.0
    work: str = ""
    elements: float = 0.0

    def instructions_on(self, sm: SmArraySpec) -> float:
        """Thread instructions of this kernel on ``sm``'s instruction counts."""
        per_element = sm.instructions_per_element.get(self.work, 0.0) if self.work else 0.0
        return self.instructions + self.elements * per_element

    @property
    def bytes(self) -> float:
        return self.bytes_read + self.bytes_written


def pointwise_time(flops: float, nbytes: float, sm: SmArraySpec, bandwidth_bytes_per_s: float,
                   dtype: str = "bf16", sms: int | None = None, instructions: float = 0.0) -> KernelTime:
    """A memory-bound kernel on ``sms`` SMs: overhead + roofline at the
    achievable bandwidth, its compute term the larger of its FLOPs at the
    CUDA-core rate and its ``instructions`` at the SMs' issue rate
    (``issue_lanes_per_clock_per_sm`` x clock: an instruction-throughput
    roofline, as for GPU kernels generally; Williams et al., "Roofline",
    CACM 2009, Sec. 4's in-core ceilings)."""
    sms = sm.count if sms is None else sms
    compute = flops / (sms * sm.vector_per_sm(dtype)) if flops else 0.0
    issue = sm.instructions_per_s_per_sm()
    if instructions and issue:
        compute = max(compute, instructions / (sms * issue))
    memory = nbytes / bandwidth_bytes_per_s if nbytes else 0.0
    return timed(compute, memory, sm.launch_overhead_s, flops, nbytes, sms=sms)


def _block_extents(rows: int, other: int, causal: bool, forward: bool) -> list[int]:
    """Keys (forward: per block of query rows) or queries (backward: per block
    of key rows) a block visits; with a causal mask, up to the diagonal."""
    blocks = math.ceil(rows / BLOCK)
    if not causal:
        return [other] * blocks
    if forward:   # rows are queries, the last ``rows`` positions of ``other`` keys
        offset = other - rows
        return [max(0, min(other, offset + (i + 1) * BLOCK)) for i in range(blocks)]
    offset = rows - other   # rows are keys; queries are the last ``other`` positions
    return [other - max(0, min(other, i * BLOCK - offset)) for i in range(blocks)]


def flash_attention_time(shape: AttentionShape, sm: SmArraySpec, bandwidth_bytes_per_s: float,
                         dtype: str = "bf16", backward: bool = False, sms: int | None = None) -> KernelTime:
    """Fused attention (FlashAttention-2) forward or backward on ``sms`` SMs."""
    sms = sm.count if sms is None else sms
    p = gemm.precision(dtype)
    if backward:
        extents = _block_extents(shape.seq_kv, shape.seq_q, shape.causal, forward=False)
        matmul_per_row, launches = 10.0, 3      # preprocess, main kernel, dQ conversion
    else:
        extents = _block_extents(shape.seq_q, shape.seq_kv, shape.causal, forward=True)
        matmul_per_row, launches = 4.0, 1
    rate = sm.matrix_per_sm(p.math) * sm.efficiency(p.math)
    exp_rate = sm.exp_per_s_per_sm()
    mean_extent = sum(extents) / len(extents)
    block_s = BLOCK * mean_extent * (matmul_per_row * shape.head_dim / rate + 1.0 / exp_rate)
    tiles = shape.batch * shape.heads * len(extents)
    waves = math.ceil(tiles / sms)
    compute = waves * block_s
    l2_bw = sm.l2_bandwidth_bytes_per_s
    if backward and l2_bw:
        # dQ accumulated with fp32 atomic adds in L2 after each block's dQ matmul (FlashAttention-2
        # backward): 4 bytes per query row and head dimension visited, through the whole L2
        compute += tiles * mean_extent * shape.head_dim * 4.0 / l2_bw
    nbytes = shape.hbm_bytes(p.a_bytes, backward)
    return timed(compute, nbytes / bandwidth_bytes_per_s, launches * sm.launch_overhead_s,
                  shape.flops(backward), nbytes, tiles=tiles, waves=waves, sms=sms, tile=f"{BLOCK} rows")


def sm_kernel_time(kernel: Kernel, spec: DeviceSpec, tier: str | None = None,
                   sms: int | None = None) -> KernelTime:
    """``kernel`` on the SM array of ``spec`` (``sms`` of them; all by default),
    its memory traffic on ``tier`` (the default tier), priced once per shape."""
    sm = spec.sm_array
    sms = sm.count if sms is None else max(1, min(sms, sm.count))
    tier = tier or spec.default_tier
    key = (kernel.kind, kernel.dtype, tier, sms, kernel.m, kernel.n, kernel.k, kernel.batch, kernel.attention,
           kernel.backward,
           None if kernel.kind in ("gemm", "attention")
           else (kernel.flops, kernel.bytes, kernel.instructions, kernel.work, kernel.elements))
    cache = spec.kernel_cache
    hit = cache.get(key)
    if hit is not None:
        return hit
    bandwidth = spec.tier(tier).achievable_bandwidth_bytes_per_s
    if kernel.kind == "gemm":
        full = _gemm_plan(kernel, spec, tier)
        plan = full if sms == sm.count else gemm.plan_on(full, kernel.m, kernel.n, kernel.k, sm, bandwidth,
                                                         kernel.dtype, kernel.batch, sms)
        result = plan
    elif kernel.kind == "attention":
        result = flash_attention_time(kernel.attention, sm, bandwidth, kernel.dtype, kernel.backward, sms)
    elif kernel.kind == "matrix":
        math_dtype = gemm.precision(kernel.dtype).math
        rate = sms * sm.matrix_per_sm(math_dtype) * sm.efficiency(math_dtype)
        result = timed(kernel.flops / rate, kernel.bytes / bandwidth, sm.launch_overhead_s, kernel.flops,
                        kernel.bytes, sms=sms)
    else:
        result = pointwise_time(kernel.flops, kernel.bytes, sm, bandwidth, kernel.dtype, sms,
                                kernel.instructions_on(sm))
    cache[key] = result
    return result


def _gemm_plan(kernel: Kernel, spec: DeviceSpec, tier: str) -> KernelTime:
    """The configuration chosen for all SMs (cached: kernels granted fewer SMs keep it)."""
    key = ("gemm-plan", kernel.dtype, tier, kernel.m, kernel.n, kernel.k, kernel.batch)
    cache = spec.kernel_cache
    if key not in cache:
        cache[key] = gemm.gemm_plan(kernel.m, kernel.n, kernel.k, spec.sm_array,
                                    spec.tier(tier).achievable_bandwidth_bytes_per_s, kernel.dtype,
                                    kernel.batch)
    return cache[key]


def sms_wanted(kernel: Kernel, spec: DeviceSpec, tier: str | None = None) -> int:
    """SMs a kernel can use: one per tile (GEMM) or block (attention), else all."""
    count = spec.sm_array.count
    if kernel.kind in ("gemm", "attention"):
        return max(1, min(count, sm_kernel_time(kernel, spec, tier).tiles))
    return count


def price(kernel: Kernel, spec: DeviceSpec, unit: str, tier: str | None = None
          ) -> tuple[int, Callable[[int], float]]:
    """(units wanted, function: units granted -> seconds) of ``kernel`` on a unit kind."""
    if unit == "sm_array":
        wanted = sms_wanted(kernel, spec, tier)
        return wanted, lambda granted: sm_kernel_time(kernel, spec, tier, granted).seconds
    if unit == "systolic_array":
        sa = spec.systolic_array
        if kernel.kind == "gemm" and kernel.m and kernel.n and kernel.k:
            wanted = cost.systolic_arrays_wanted(kernel.m, kernel.n, kernel.k, sa.rows, sa.cols, sa.dataflow,
                                                 sa.count, kernel.batch)
            return wanted, lambda g: cost.systolic_gemm_cycles(
                kernel.m, kernel.n, kernel.k, sa.rows, sa.cols, sa.dataflow, g, kernel.batch) / sa.clock_hz
        per_array = 2.0 * sa.rows * sa.cols * sa.clock_hz
        return sa.count, lambda g: kernel.flops / (g * per_array)
    if unit == "vector":
        vec = spec.vector
        table = vec.flops_per_s
        peak = table.get(kernel.dtype) or table.get("fp32") or max(table.values())
        return 1, lambda g: kernel.flops / peak
    pim = spec.pim
    return 1, lambda g: cost.pim_gemv_s(kernel.bytes_read, kernel.flops, pim.banks,
                                        pim.bank_bandwidth_bytes_per_s, pim.bank_flops_per_s)


def isolated_seconds(kernel: Kernel, spec: DeviceSpec, unit: str, tier: str | None = None) -> float:
    """Time of ``kernel`` alone on an idle device: every unit it wants, and no
    faster than its bytes over the tier's achievable bandwidth."""
    wanted, seconds = price(kernel, spec, unit, tier)
    compute = seconds(wanted)
    if unit == "pim":
        return compute
    bandwidth = spec.tier(tier or spec.default_tier).achievable_bandwidth_bytes_per_s
    return max(compute, kernel.bytes / bandwidth)
