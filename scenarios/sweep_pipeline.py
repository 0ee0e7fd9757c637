"""Sweep pipeline depth x microbatches x schedule for a GPT model on a Dask
LocalCluster and print the bubble-fraction table next to the closed form.

    python scenarios/sweep_pipeline.py [--workers 2] [--out runs/sweep_pipeline]

The sweep is a Python mapping handed to sim.sweep, the same machinery as
``accsim sweep``; results also land in OUT/results/ as Parquet.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sim  # noqa: E402

SWEEP = {
    "scenario": str(ROOT / "scenarios" / "pipeline_ideal.yaml"),
    "grid": {
        "parallel.pp": [2, 4, 8],
        "parallel.microbatches": [8, 16, 32],
        "parallel.schedule": ["gpipe", "1f1b"],
        "training.continue_on_oom": [True],
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="runs/sweep_pipeline")
    args = parser.parse_args()
    table = sim.sweep(SWEEP, out=args.out, workers=args.workers)
    rows = sorted(table.to_pylist(), key=lambda r: (r["parallel.schedule"], r["parallel.pp"],
                                                    r["parallel.microbatches"]))
    print(f"{'schedule':<8} {'pp':>3} {'m':>4} {'bubble':>8} {'(p-1)/(m+p-1)':>14} {'iteration':>11} {'peak mem/GPU':>13}")
    for r in rows:
        p, m = r["parallel.pp"], r["parallel.microbatches"]
        if r["status"] != "ok":
            print(f"{r['parallel.schedule']:<8} {p:>3} {m:>4}  {r['status']}: {r['error']}")
            continue
        print(f"{r['parallel.schedule']:<8} {p:>3} {m:>4} {r['bubble_fraction']:>8.4f} {(p - 1) / (m + p - 1):>14.4f} "
              f"{r['iteration_time_s']:>10.3f}s {r['peak_memory_per_gpu_bytes'] / 2**30:>10.1f} GiB")


if __name__ == "__main__":
    main()
