"""H100-SXM5-80GB GEMM throughput against published measurements."""

from __future__ import annotations

from sim.validation import Group
from sim.validation.groups._kernel_points import calibration_points, gemm_point

DEVICE = "h100_sxm5_80gb"
XLA = ("OpenXLA, xla/service/gpu/model/matmul_interpolator_data.h, measured table \"sm_90\" "
       "(tensorflow/tensorflow third_party/xla)")
AZURE = ("Azure/AI-benchmarking-guide, Azure Results/ND_H100_v5_results.md (cuBLASLt FP8, CUDA 12.6)")
MAMF = "Bekman, stas00/ml-engineering, compute/accelerator: MAMF (torch.mm, best of a shape search)"
TORCH = "zzc0721/torch-performance-test-data issue #79 (torch.matmul, PyTorch 2.7 + CUDA 12.8)"
VLLM = "vllm-project/vllm pull request #49363 (H100 BF16 decode GEMMs, N 12288, K 5376)"

# (b, m, n, k): published BF16 TFLOP/s from the OpenXLA table (a spread of the 72 shapes).
XLA_CHECKS = {
    (1, 512, 256, 256): 11.5, (4, 256, 256, 256): 22.6, (1, 1024, 2048, 256): 139.5,
    (2, 256, 2048, 2048): 332.2, (1, 4096, 512, 512): 238.8, (4, 4096, 256, 2048): 588.7,
    (2, 1024, 2048, 1024): 493.4, (1, 256, 2048, 4096): 285.9, (4, 1024, 2048, 2048): 712.7,
    (1, 2048, 2048, 2048): 632.0, (1, 256, 512, 4096): 91.7, (1, 4096, 4096, 256): 392.2,
    (2, 4096, 4096, 2048): 763.0, (1, 1024, 1024, 2048): 350.0, (1, 2048, 1024, 2048): 523.3,
    (4, 4096, 4096, 512): 619.9, (2, 4096, 1024, 4096): 750.6, (1, 1024, 256, 1024): 68.3,
    (2, 512, 512, 2048): 216.5, (4, 256, 256, 4096): 171.6,
}


# (spec key set, (batch, m, n, k), dtype, published TFLOP/s, source): sim.validation.calibrate.
# The smallest GEMM (5.86 us) sets the launch overhead; XLA's f32 matmuls run on TF32 tensor cores.
CALIBRATION = (
    ("sm_array.launch_overhead_s", (1, 256, 512, 256), "bf16", 11.46, XLA),
    ("sm_array.mainloop_efficiency.default", (1, 4096, 4096, 4096), "bf16", 783.3, XLA),
    ("sm_array.mainloop_efficiency.tf32", (1, 4096, 4096, 4096), "tf32", 401.6, XLA),
    ("sm_array.mainloop_efficiency.fp8", (1, 8192, 8192, 8192), "fp8", 1290.1, AZURE),
)


def group() -> Group:
    points = (
        *calibration_points(DEVICE, CALIBRATION),
        *(gemm_point(DEVICE, shape, "bf16", tflops, XLA) for shape, tflops in XLA_CHECKS.items()),
        gemm_point(DEVICE, (1, 8192, 8192, 8192), "bf16", 797.5, TORCH),
        gemm_point(DEVICE, (1, 2048, 2048, 13312), "bf16", 794.5, MAMF, note="the best shape of a search"),
        gemm_point(DEVICE, (1, 1024, 9216, 14336), "fp8", 1402.6, MAMF, note="the best shape of a search"),
        gemm_point(DEVICE, (1, 1024, 1024, 1024), "fp8", 274.1, AZURE),
        gemm_point(DEVICE, (1, 2048, 2048, 2048), "fp8", 1011.3, AZURE),
        gemm_point(DEVICE, (1, 4096, 4096, 4096), "fp8", 1216.9, AZURE),
        gemm_point(DEVICE, (1, 16384, 16384, 16384), "fp8", 1377.3, AZURE),
        gemm_point(DEVICE, (1, 6144, 12288, 12288), "fp8", 1351.4, AZURE),
        gemm_point(DEVICE, (1, 802816, 192, 768), "fp8", 663.8, AZURE, note="skinny, memory-bound"),
        gemm_point(DEVICE, (1, 16, 12288, 5376), "bf16", 46.5, VLLM, note="decode: weights from HBM"),
        gemm_point(DEVICE, (1, 128, 12288, 5376), "bf16", 352.6, VLLM, note="decode: weights from HBM"),
    )
    return Group(
        name="gemm_h100",
        title="GEMM throughput, H100-SXM5-80GB",
        description=(
            "TFLOP/s of single GEMMs predicted by the kernel model against OpenXLA's measured matmul table "
            "(BF16 and TF32 shapes from 256 to 4096 per dimension, batches 1 to 4), cuBLASLt FP8 "
            "measurements, a PyTorch square GEMM, Bekman's maximum-achievable search and decode-shaped "
            "GEMMs from vLLM. Four points calibrate the spec: the smallest measured GEMM sets the launch "
            "overhead (2.79 us) and the largest BF16, TF32 and FP8 GEMMs set the main-loop efficiencies "
            "(0.886, 0.872, 0.711: FP8 tensor cores sustain a smaller share of their doubled peak), with "
            "the tiles' prologue and epilogue (5036 SM clocks) measured on the H200 (group kernels_h200). "
            "Hopper's L2 bandwidth is not published, so no L2 bound applies. Tolerance: 15% on average, "
            "50% at worst (as every GEMM group; here the worst are small-K shapes whose output traffic "
            "the model overlaps with the main loop more than the kernels do)."),
        points=points, mape_tolerance=0.15, max_tolerance=0.50)
