"""GEMM throughput of the H200, B200 and MI300X against published measurements."""

from __future__ import annotations

from sim.validation import Group
from sim.validation.groups._kernel_points import calibration_points, gemm_point

H200_AZURE = "Azure/AI-benchmarking-guide, Azure_Results/ND_H200_v5_results.md (cuBLASLt FP8, CUDA 12.6)"
B200_XLA = ("OpenXLA, xla/service/gpu/model/matmul_interpolator_data.h, measured table \"sm_100\" "
            "(tensorflow/tensorflow third_party/xla)")
MI300X_AZURE = ("Azure/AI-benchmarking-guide results for ND MI300X v5 (hipBLASLt FP8), fork "
                "yosoyjay/AI-benchmarking-guide, Azure_Results/ND_MI300X_v5_results.md")
MI300X_MAMF = "Bekman, stas00/ml-engineering, compute/accelerator: MAMF (BF16, ROCm 6.3, TunableOp)"


# device -> (spec key set, (batch, m, n, k), dtype, published TFLOP/s, source): sim.validation.calibrate.
# The smallest GEMM measured sets the launch overhead (B200: 256^3 in 4.96 us).
CALIBRATION = {
    "b200": (("sm_array.launch_overhead_s", (1, 256, 256, 256), "bf16", 6.77, B200_XLA),
             ("sm_array.mainloop_efficiency.default", (1, 4096, 4096, 4096), "bf16", 1416.9, B200_XLA),
             ("sm_array.mainloop_efficiency.fp8", (1, 4096, 4096, 4096), "fp8", 2765.0, B200_XLA)),
    "mi300x": (("sm_array.launch_overhead_s", (1, 1024, 1024, 1024), "fp8", 278.2, MI300X_AZURE),
               ("sm_array.mainloop_efficiency.default", (1, 10240, 15360, 8192), "bf16", 668.4, MI300X_MAMF),
               ("sm_array.mainloop_efficiency.fp8", (1, 8192, 8192, 8192), "fp8", 1222.9, MI300X_AZURE)),
}


def group() -> Group:
    points = (
        # H200: the H100's compute die and calibration; these only check it
        gemm_point("h200_sxm_141gb", (1, 2048, 2048, 2048), "fp8", 1013.4, H200_AZURE),
        gemm_point("h200_sxm_141gb", (1, 4096, 4096, 4096), "fp8", 1249.1, H200_AZURE),
        gemm_point("h200_sxm_141gb", (1, 8192, 8192, 8192), "fp8", 1300.6, H200_AZURE),
        gemm_point("h200_sxm_141gb", (1, 16384, 16384, 16384), "fp8", 1366.3, H200_AZURE),
        gemm_point("h200_sxm_141gb", (1, 6144, 12288, 12288), "fp8", 1318.0, H200_AZURE),
        gemm_point("h200_sxm_141gb", (1, 802816, 192, 768), "fp8", 717.5, H200_AZURE,
                   note="skinny, memory-bound: the H200's extra bandwidth shows"),
        # B200
        *calibration_points("b200", CALIBRATION["b200"]),
        gemm_point("b200", (1, 4096, 1024, 2048), "bf16", 990.3, B200_XLA),
        gemm_point("b200", (1, 4096, 1024, 4096), "bf16", 1204.9, B200_XLA),
        gemm_point("b200", (1, 4096, 2048, 4096), "bf16", 1343.5, B200_XLA),
        gemm_point("b200", (1, 4096, 4096, 2048), "bf16", 1277.8, B200_XLA),
        gemm_point("b200", (1, 4096, 256, 4096), "bf16", 645.1, B200_XLA),
        gemm_point("b200", (1, 4096, 4096, 2048), "fp8", 2485.0, B200_XLA),
        gemm_point("b200", (1, 4096, 1024, 2048), "fp8", 1462.6, B200_XLA),
        # MI300X
        *calibration_points("mi300x", CALIBRATION["mi300x"]),
        gemm_point("mi300x", (1, 2048, 2048, 2048), "fp8", 726.9, MI300X_AZURE),
        gemm_point("mi300x", (1, 4096, 4096, 4096), "fp8", 1085.4, MI300X_AZURE),
        gemm_point("mi300x", (1, 16384, 16384, 16384), "fp8", 1081.4, MI300X_AZURE),
        gemm_point("mi300x", (1, 6144, 12288, 12288), "fp8", 1148.7, MI300X_AZURE),
    )
    return Group(
        name="gemm_others",
        title="GEMM throughput, H200, B200 and MI300X",
        description=(
            "The same kernel model on the newer parts. The H200 has no calibration of its own: its "
            "compute figures are the H100's (same die, clocks and power limit), and Azure's FP8 GEMMs "
            "check them. The B200 is calibrated on OpenXLA's measured table (its largest shapes are "
            "4096 per dimension; its per-SM tensor rate and clock are assumptions, grade C in the spec), "
            "the MI300X on Bekman's BF16 search and Azure's hipBLASLt FP8 runs (AMD's GEMM throughput "
            "depends on the ROCm release more than on the silicon). Tolerance: 15% on average and 50% at "
            "worst, as every GEMM group (the worst is the skinny shape on the H200, which the model "
            "prices as HBM-bound: see gemm_a100)."),
        points=points, mape_tolerance=0.15, max_tolerance=0.50)
