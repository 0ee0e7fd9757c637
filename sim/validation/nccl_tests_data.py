"""Published nccl-tests all-reduce runs: the tables the collectives validation
group samples and scenarios/collectives_busbw_plot.py draws.

Each ``Run`` is one public table as printed (out-of-place time in us, or bus
bandwidth in GB/s where only that was published), the cluster file and ranks
it is predicted on, and how many GPUs one process drove (nccl-tests ``-g``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30

THANOS = ("public nccl-tests log, 8 x A100-SXM4-80GB on one host ('thanos'), all_reduce_perf -b 8 -e 4G, "
          "run both as mpirun -np 8 -g 1 and as -g 8 (search-index document 33201577724; repository "
          "not identified)")
DKH = ("public nccl-tests 2.19.4 log, 8 x A100-SXM4-80GB, all_reduce_perf -g 8, NCCL 2.19.3 "
       "(search-index document 69473998636)")
AZURE_A100 = ("Azure ND A100 v4, NCCL 2.18.5: samuel-bohman/AI-benchmarking-guide "
              "Azure_Results/ND_A100_v4_results.md@26d18e94 (fork of Azure/AI-benchmarking-guide)")
AZURE_H100 = ("Azure ND H100 v5, NCCL 2.18.5: samuel-bohman/AI-benchmarking-guide "
              "Azure_Results/ND_H100_v5_results.md@26d18e94")
H100_NODE = ("public nccl-tests log, 8 x H100 80GB HBM3, all_reduce_perf -g 8, 128 MiB - 4 GiB "
             "(search-index document 69758259407)")
H100_2NODE = ("public README 'Multiple Nodes NCCL Test', 2 x 8 H100 80GB HBM3, 8 NICs per node "
              "(search-index document 15057250191)")


@dataclass(frozen=True)
class Run:
    """A published all-reduce table: ``time_us`` or ``busbw_gb_s`` by size in bytes."""

    label: str
    source: str
    topology: str
    gpus_per_process: int
    time_us: dict[int, float] = field(default_factory=dict)
    busbw_gb_s: dict[int, float] = field(default_factory=dict)
    note: str = ""

    def measured_busbw_gb_s(self, ranks: int) -> dict[int, float]:
        """Bus bandwidth per size (from the time where that is what was published)."""
        if self.busbw_gb_s:
            return dict(self.busbw_gb_s)
        factor = 2 * (ranks - 1) / ranks
        return {size: size / (t * 1e-6) * factor / 1e9 for size, t in self.time_us.items()}


def _doubling(start: int, times: list[float]) -> dict[int, float]:
    return {start << i: t for i, t in enumerate(times)}


A100_MPI = Run("8x A100 all-reduce, mpirun -np 8", THANOS, "dgx_a100", 1, _doubling(8, [
    20.26, 17.90, 20.75, 22.30, 23.91, 23.61, 24.36, 24.43, 24.32, 25.29, 25.84, 26.15, 30.25, 31.82,
    31.90, 27.65, 28.11, 37.89, 55.39, 81.66, 130.6, 213.3, 377.6, 615.7, 1181.6, 2218.2, 4248.8,
    8244.5, 16288, 32285]))
A100_G8 = Run("8x A100 all-reduce, -g 8", THANOS, "dgx_a100", 8, _doubling(8, [
    40.12, 39.64, 39.06, 38.89, 39.53, 39.08, 39.17, 42.05, 38.39, 39.12, 39.39, 39.47, 40.93, 40.97,
    42.26, 43.97, 48.31, 52.61, 59.30, 103.8, 162.6, 260.5, 439.2, 695.5, 1305.0, 2392.6, 4627.5,
    8247.6, 16330, 32336]))
A100_DKH = Run("8x A100 all-reduce, -g 8 (2.19)", DKH, "dgx_a100", 8, _doubling(8, [
    34.84, 35.44, 35.58, 36.13, 36.85, 36.93, 36.53, 36.57, 36.58, 37.17, 36.86, 36.47, 36.74, 37.48,
    40.33, 46.38, 56.27, 67.31, 81.12, 106.56, 161.65, 273.12, 431.40, 671.74, 1295.41]))
A100_AZURE = Run("8x A100 all-reduce, Azure", AZURE_A100, "dgx_a100", 8, busbw_gb_s=_doubling(KIB, [
    0.04, 0.08, 0.17, 0.33, 0.67, 1.37, 2.70, 5.15, 10.11, 19.24, 36.22, 53.54, 71.43, 89.99, 109.22,
    132.77, 166.63, 174.18, 213.87, 221.58, 228.10, 230.22, 230.48]), note="launch mode not stated; -g 8 assumed")
H100_AZURE = Run("8x H100 all-reduce, Azure", AZURE_H100, "dgx_h100", 8, busbw_gb_s=_doubling(KIB, [
    0.07, 0.14, 0.27, 0.53, 0.95, 1.71, 2.72, 5.40, 10.86, 21.35, 43.70, 81.93, 128.73, 172.13, 234.45,
    295.53, 361.78, 400.61, 423.38, 438.46, 466.35, 472.36, 475.54]), note="launch mode not stated; -g 8 assumed")
H100_G8 = Run("8x H100 all-reduce, -g 8", H100_NODE, "dgx_h100", 8, _doubling(128 * MIB, [
    613.3, 1139.2, 2175.8, 4038.8, 8020.3, 15870]))
H100_TWO_NODES = Run("2x DGX H100 all-reduce", H100_2NODE, "h100_2node", 1, _doubling(256 * MIB, [
    1291.8, 2375.3, 4490.8, 8747.2, 17316]), note="launch mode not stated")

RUNS = (A100_MPI, A100_G8, A100_DKH, A100_AZURE, H100_AZURE, H100_G8, H100_TWO_NODES)
