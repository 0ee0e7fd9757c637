"""Predicted against measured all-reduce bus bandwidth, 8 B to 4 GiB: the figure
in docs/validation.md.

    pip install -e '.[plot]'            # matplotlib, the only extra this needs
    python scenarios/collectives_busbw_plot.py [--out docs/collectives_busbw.png]

Three panels: one DGX A100 (the nccl-tests runs with one process per GPU and
with one process driving 8 GPUs, and Azure's table), one DGX H100 (Azure's
table, a -g 8 run, and the maintainers' ring and NVLS plateaus), and two DGX
H100 / DGX A100 nodes. Lines are accsim with NCCL's own choice of algorithm
and protocol (`accsim collective --algorithm nccl`), markers the published
rows (sim/validation/nccl_tests_data.py, sources there and in
docs/validation.md). A -g 8 run is predicted with --gpus-per-process 8.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.network.runtime import simulate_collective  # noqa: E402
from sim.network.topology import load_topology  # noqa: E402
from sim.validation import nccl_tests_data as data  # noqa: E402

SIZES = [8 << i for i in range(30)]          # 8 B .. 4 GiB


def predicted_busbw(topology: str, gpus_per_process: int = 1, algorithm: str = "nccl",
                    sizes=SIZES) -> list[float]:
    cluster = load_topology(topology)
    n = cluster.size
    out = []
    for size in sizes:
        result = simulate_collective(cluster, "allreduce", algorithm, size)
        time_s = max(result.time_s, gpus_per_process * cluster.nccl.host_call_overhead)
        out.append(size / time_s * 2 * (n - 1) / n / 1e9)
    return out


def _measured(ax, run: data.Run, ranks: int, marker: str, colour: str) -> None:
    points = sorted(run.measured_busbw_gb_s(ranks).items())
    ax.plot([s for s, _ in points], [b for _, b in points], marker, color=colour, markersize=4,
            linestyle="none", label=f"measured: {run.label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "collectives_busbw.png"))
    args = parser.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("this script needs matplotlib: pip install -e '.[plot]'")

    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    ax = axes[0]
    ax.plot(SIZES, predicted_busbw("dgx_a100"), "-", color="tab:blue", label="accsim, one process per GPU")
    ax.plot(SIZES, predicted_busbw("dgx_a100", 8), "--", color="tab:orange", label="accsim, -g 8")
    _measured(ax, data.A100_MPI, 8, "o", "tab:blue")
    _measured(ax, data.A100_G8, 8, "s", "tab:orange")
    _measured(ax, data.A100_DKH, 8, "^", "tab:red")
    _measured(ax, data.A100_AZURE, 8, "x", "tab:green")
    ax.set_title("8 x A100 (dgx_a100), all-reduce")

    ax = axes[1]
    ax.plot(SIZES, predicted_busbw("dgx_h100", 8), "--", color="tab:orange", label="accsim, -g 8 (NCCL's choice)")
    ax.plot(SIZES, predicted_busbw("dgx_h100"), "-", color="tab:blue", label="accsim, one process per GPU")
    ax.plot(SIZES, predicted_busbw("dgx_h100", algorithm="nccl_ring"), ":", color="tab:gray",
            label="accsim, ring only")
    _measured(ax, data.H100_AZURE, 8, "x", "tab:green")
    _measured(ax, data.H100_G8, 8, "s", "tab:orange")
    ax.axhline(480, color="tab:purple", linewidth=0.8, label="maintainers: NVLS ~480")
    ax.axhline(370, color="tab:gray", linewidth=0.8, label="maintainers: ring ~370")
    ax.set_title("8 x H100 (dgx_h100), all-reduce")

    ax = axes[2]
    ax.plot(SIZES, predicted_busbw("h100_2node"), "-", color="tab:blue", label="accsim, 2 x DGX H100")
    ax.plot(SIZES, predicted_busbw("a100_2node"), "-", color="tab:red", label="accsim, 2 x DGX A100")
    _measured(ax, data.H100_TWO_NODES, 16, "o", "tab:blue")
    ax.plot([1 << 30, 1 << 30], [186.67, 170.99], "o", color="tab:red", markersize=4, linestyle="none",
            label="measured: 2 x 8 A100, 1 GiB (two runs)")
    ax.axhline(192, color="tab:red", linewidth=0.8, label="maintainers: 8 x HDR ~192")
    ax.set_title("two nodes, all-reduce")

    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("size (bytes)")
        ax.set_ylabel("bus bandwidth (GB/s)")
        ax.set_ylim(1e-3, 800)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, metadata={"Software": None})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
