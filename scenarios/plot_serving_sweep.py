"""Latency versus throughput from a serving request-rate sweep.

    accsim sweep scenarios/sweep_serving_rate.yaml --out runs/serving-sweep --workers 2
    python scenarios/plot_serving_sweep.py runs/serving-sweep [--out runs/serving-sweep/latency.png]

Prints one row per design point (policy, rate, achieved throughput, TTFT and
TPOT percentiles) and, when matplotlib is installed (``pip install -e
'.[plot]'``), draws p50 and p99 TTFT and TPOT against output-token
throughput, one curve per scheduling policy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

RATE = "serving.requests.arrivals.rate_per_s"
POLICY = "serving.scheduler.policy"


def load(sweep_dir: Path) -> list[dict]:
    import pyarrow.dataset as ds
    table = ds.dataset(str(sweep_dir / "results"), format="parquet").to_table()
    rows = [r for r in table.to_pylist() if r["status"] == "ok"]
    return sorted(rows, key=lambda r: (str(r.get(POLICY)), r.get(RATE) or 0.0))


def print_table(rows: list[dict]) -> None:
    print(f"{'policy':<16} {'rate/s':>7} {'tokens/s':>9} {'TTFT p50':>9} {'TTFT p99':>9} "
          f"{'TPOT p50':>9} {'TPOT p99':>9}   (ms)")
    for r in rows:
        print(f"{str(r.get(POLICY)):<16} {r.get(RATE) or 0:>7g} {r['throughput_tokens_per_s']:>9.0f} "
              f"{1e3 * r['ttft_p50_s']:>9.1f} {1e3 * r['ttft_p99_s']:>9.1f} "
              f"{1e3 * r['tpot_p50_s']:>9.1f} {1e3 * r['tpot_p99_s']:>9.1f}")


def plot(rows: list[dict], out: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for policy in sorted({str(r.get(POLICY)) for r in rows}):
        mine = [r for r in rows if str(r.get(POLICY)) == policy]
        x = [r["throughput_tokens_per_s"] for r in mine]
        for axis, metric in zip(axes, ("ttft", "tpot")):
            axis.plot(x, [1e3 * r[f"{metric}_p50_s"] for r in mine], marker="o", label=f"{policy} p50")
            axis.plot(x, [1e3 * r[f"{metric}_p99_s"] for r in mine], marker="x", linestyle="--",
                      label=f"{policy} p99")
    for axis, name in zip(axes, ("time to first token (ms)", "time per output token (ms)")):
        axis.set_xlabel("throughput (output tokens/s)")
        axis.set_ylabel(name)
        axis.set_yscale("log")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="the --out folder of accsim sweep")
    parser.add_argument("--out", type=Path, help="PNG to write (default SWEEP_DIR/latency_throughput.png)")
    args = parser.parse_args(argv)
    if not (args.sweep_dir / "results").is_dir():
        print(f"{args.sweep_dir}: no results/ folder; run accsim sweep first", file=sys.stderr)
        return 2
    rows = load(args.sweep_dir)
    print_table(rows)
    out = args.out or args.sweep_dir / "latency_throughput.png"
    if plot(rows, out):
        print(f"wrote {out}")
    else:
        print("(install matplotlib, pip install -e '.[plot]', to draw the curves)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
