"""A100-SXM4-80GB GEMM throughput against published measurements."""

from __future__ import annotations

from sim.validation import Group
from sim.validation.groups._kernel_points import calibration_points, gemm_point

DEVICE = "a100_sxm4_80gb"
AZURE = ("Azure/AI-benchmarking-guide, Azure_Results/ND_A100_v4_results.md (cuBLASLt FP16, CUDA 12.5, "
         "10,000 warm-up iterations)")
MAMF = ("Bekman, stas00/ml-engineering, compute/accelerator: MAMF (torch.mm, best of a shape search; "
        "BF16, PyTorch 2.6 + CUDA 12.6)")


# (spec key set, (batch, m, n, k), dtype, published TFLOP/s, source): sim.validation.calibrate
CALIBRATION = (("sm_array.mainloop_efficiency.default", (1, 8192, 8192, 8192), "fp16", 253.7, AZURE),)


def group() -> Group:
    points = (
        *calibration_points(DEVICE, CALIBRATION),
        gemm_point(DEVICE, (1, 1024, 1024, 1024), "fp16", 119.4, AZURE, note="checks the launch overhead "
                   "taken from the H100"),
        gemm_point(DEVICE, (1, 2048, 2048, 2048), "fp16", 221.8, AZURE),
        gemm_point(DEVICE, (1, 4096, 4096, 4096), "fp16", 228.0, AZURE),
        gemm_point(DEVICE, (1, 16384, 16384, 16384), "fp16", 256.5, AZURE),
        gemm_point(DEVICE, (1, 6144, 12288, 12288), "fp16", 250.8, AZURE),
        gemm_point(DEVICE, (1, 1024, 2145, 1024), "fp16", 132.8, AZURE,
                   note="N odd: no aligned vector loads in cuBLAS, not modelled"),
        gemm_point(DEVICE, (1, 802816, 192, 768), "fp16", 157.8, AZURE, note="skinny, memory-bound"),
        gemm_point(DEVICE, (1, 1024, 10240, 5120), "bf16", 271.2, MAMF, note="the best shape of a search"),
    )
    return Group(
        name="gemm_a100",
        title="GEMM throughput, A100-SXM4-80GB",
        description=(
            "TFLOP/s of single GEMMs predicted by the kernel model (sim/hardware/gemm.py: tile and "
            "split-K choice, wave quantization, main loop at the calibrated efficiency, HBM and L2 "
            "traffic, per-tile prologue and epilogue, launch overhead) against cuBLASLt measurements. One point "
            "calibrates the main-loop efficiency (0.829 of the tensor-core peak); the A100 launch overhead "
            "(2.79 us) is the H100's calibrated figure and the tiles' prologue and epilogue (5036 SM clocks) "
            "the H200's, as no A100 measurement of a minimal or short-K GEMM was found. Tolerance, as for every "
            "GEMM group: 15% on average, 50% at worst. The worst points are known misses: an odd N "
            "(cuBLAS loses its aligned vector loads) and the skinny 802816x192x768 shape, which the "
            "model prices as HBM-bound while the measured kernels reach about two thirds of copy "
            "bandwidth. Mid-size squares "
            "(1024^3, 4096^3) come out about 10% fast: the model may pick any tile to avoid a partial "
            "last wave, cuBLAS's heuristics do not always."),
        points=points, mape_tolerance=0.15, max_tolerance=0.50)
