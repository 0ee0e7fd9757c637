"""Achievable HBM bandwidth (copy benchmarks) against the spec's memory-bound kernel model."""

from __future__ import annotations

from sim.validation import Group
from sim.validation.groups._kernel_points import copy_point

AZ = "Azure/AI-benchmarking-guide, {file} (BabelStream)"


A100 = AZ.format(file="Azure_Results/ND_A100_v4_results.md")
H100 = AZ.format(file="Azure Results/ND_H100_v5_results.md")
H200 = AZ.format(file="Azure_Results/ND_H200_v5_results.md")
MI300X = ("Azure/AI-benchmarking-guide results for ND MI300X v5 (BabelStream), fork "
          "yosoyjay/AI-benchmarking-guide, Azure_Results/ND_MI300X_v5_results.md")
# device -> (copy TB/s that sets memory.hbm.efficiency, triad TB/s that checks it, source)
MEASURED = {"a100_sxm4_80gb": (1.61, 1.70, A100), "h100_sxm5_80gb": (2.90, 2.97, H100),
            "h200_sxm_141gb": (4.01, 4.15, H200), "mi300x": (4.15, 4.10, MI300X)}


def group() -> Group:
    points = tuple(point for device, (copy, triad, source) in MEASURED.items() for point in (
        copy_point(device, copy, 2, source, "calibration", "sets memory.hbm.efficiency"),
        copy_point(device, triad, 3, source, "check")))
    return Group(
        name="hbm_bandwidth",
        title="Achievable HBM bandwidth (BabelStream)",
        description=(
            "Memory-bound kernels run at the tier's achievable bandwidth, datasheet x `efficiency`; the "
            "efficiency of each HBM tier is set from BabelStream's Copy kernel (two 268 MB arrays, the "
            "bytes of both counted) and the Triad kernel (three arrays) checks it. The B200 has no "
            "published copy measurement we could read; it assumes the H100's fraction. Predictions "
            "include the kernel launch overhead. The model has one efficiency per tier, whatever the mix of "
            "reads and writes: Triad (two reads per write) runs 2-6% faster than Copy (one read per write) on the "
            "NVIDIA parts (1% slower on the MI300X), which the model does not capture. "
            "Tolerance: 5% on average, 6% at worst."),
        points=points, mape_tolerance=0.05, max_tolerance=0.06)
