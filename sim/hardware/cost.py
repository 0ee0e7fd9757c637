"""Cost models: pure functions from an operator's shape to time on a unit
(the roofline, SCALE-Sim's systolic folds, PIM). GPU kernels (GEMM tiles and
waves, fused attention, memory-bound kernels) are in sim.hardware.gemm and
sim.hardware.kernels.

Every function states its formula and its source; tests/test_cost_models.py
checks each against hand-computed values. Times are in seconds, sizes in
bytes, work in FLOPs (one multiply-accumulate = 2 FLOPs).
"""

from __future__ import annotations

import math


def roofline_s(flops: float, bytes_moved: float, peak_flops_per_s: float,
               bandwidth_bytes_per_s: float) -> float:
    """Roofline time: max(flops / peak, bytes / bandwidth).

    Williams, Waterman and Patterson, "Roofline: an insightful visual
    performance model for multicore architectures", CACM 52(4), 2009.
    """
    compute = flops / peak_flops_per_s if flops else 0.0
    memory = bytes_moved / bandwidth_bytes_per_s if bytes_moved else 0.0
    return max(compute, memory)


def systolic_fold_shape(m: int, n: int, k: int, dataflow: str) -> tuple[int, int, int]:
    """Map C[M,N] = A[M,K] B[K,N] onto (S_R, S_C, T) for a dataflow.

    Samajdar et al., "A Systematic Methodology for Characterizing Scalability
    of DNN Accelerators using SCALE-Sim", ISPASS 2020, Table II:
    output stationary  S_R = M, S_C = N, T = K;
    weight stationary  S_R = K, S_C = N, T = M;
    input stationary   S_R = K, S_C = M, T = N.
    """
    if dataflow == "os":
        return m, n, k
    if dataflow == "ws":
        return k, n, m
    if dataflow == "is":
        return k, m, n
    raise ValueError(f"unknown dataflow {dataflow!r}; expected os, ws or is")


def systolic_fold_cycles(rows: int, cols: int, t: int, dataflow: str) -> int:
    """Cycles of one fold on an R x C array streaming T operand rows.

    Weight and input stationary: 2R + C + T - 2 (R cycles to preload the
    stationary operand, R + C - 2 to fill and drain the skewed wavefront, T
    to stream), Samajdar et al., ISPASS 2020, Eq. 3. Output stationary:
    R + C + T - 2, because the outputs left in the PEs drain while the next
    fold fills; this is how SCALE-Sim v2/v3 schedule OS folds
    (scalesim.compute.systolic_compute_os), and tests check both against it.
    """
    if dataflow == "os":
        return rows + cols + t - 2
    return 2 * rows + cols + t - 2


def systolic_gemm_cycles(m: int, n: int, k: int, rows: int, cols: int, dataflow: str,
                         arrays: int = 1, batch: int = 1) -> int:
    """Compute cycles of a (batched) GEMM on ``arrays`` R x C systolic arrays.

    SCALE-Sim's fold model (Samajdar et al., ISPASS 2020, Sec. IV): the
    operand is cut into ceil(S_R / R) * ceil(S_C / C) folds, each taking
    ``systolic_fold_cycles``. With several arrays the folds of all ``batch``
    GEMMs are spread over them in waves, the scale-out partitioning of the
    same paper: cycles = ceil(batch * folds / arrays) * fold_cycles.

    This is a count of cycles, equal to the rows of SCALE-Sim 3's demand
    matrices (one row per cycle). SCALE-Sim's report prints one less as
    "Compute cycles": it reports the largest serviced cycle *index*, numbered
    from 0 (``max(ofmap_serviced_cycles)`` in
    scalesim/memory/double_buffered_scratchpad_mem.py), so a GEMM of F folds
    of P cycles each, with no memory stalls, prints F * P - 1. accsim counts
    the F * P cycles the array is busy, so that time = cycles / clock;
    tests/test_scalesim_oracle.py checks both numbers against SCALE-Sim.
    """
    if m == 0 or n == 0 or k == 0:
        return 0
    s_r, s_c, t = systolic_fold_shape(m, n, k, dataflow)
    folds = math.ceil(s_r / rows) * math.ceil(s_c / cols)
    return math.ceil(batch * folds / arrays) * systolic_fold_cycles(rows, cols, t, dataflow)


def systolic_arrays_wanted(m: int, n: int, k: int, rows: int, cols: int, dataflow: str,
                           array_count: int, batch: int = 1) -> int:
    """Arrays a GEMM can keep busy: one per fold, at most all of them."""
    s_r, s_c, _ = systolic_fold_shape(m, n, k, dataflow)
    folds = batch * math.ceil(s_r / rows) * math.ceil(s_c / cols)
    return max(1, min(array_count, folds))


def pim_gemv_s(bytes_read: float, flops: float, banks: int, bank_bandwidth_bytes_per_s: float,
               bank_flops_per_s: float) -> float:
    """Time of a GEMV-like op on PIM banks in all-bank mode.

    Each bank streams its share of the matrix through its own MAC unit at the
    bank's internal bandwidth, so the op is a roofline over the aggregate
    internal bandwidth and compute: max(bytes / (banks * bank_bw),
    flops / (banks * bank_flops)). Heo et al., "NeuPIMs: NPU-PIM Heterogeneous
    Acceleration for Batched LLM Inferencing", ASPLOS 2024 (Sec. 2-3); He et
    al., "Newton: a DRAM-maker's accelerator-in-memory", MICRO 2020.
    """
    return roofline_s(flops, bytes_read, banks * bank_flops_per_s,
                      banks * bank_bandwidth_bytes_per_s)
