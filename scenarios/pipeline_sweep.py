"""Pipeline schedule study: GPT-3 2.7B on 16 A100s (2 DGX nodes), TP 2 x PP 8, varying the
schedule and the number of microbatches, printing iteration time, bubble fraction (simulated
and the closed form) and MFU.

    python scenarios/pipeline_sweep.py

It builds each scenario as a Python mapping and calls sim.run, the same path as
``accsim run``; a parameter sweep over a Dask cluster does the same at scale.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sim  # noqa: E402

BASE = {
    "cluster": "a100_2node",
    "model": {"name": "gpt3-2.7b", "layers": 32, "hidden": 2560, "heads": 32, "seq_len": 2048,
              "vocab": 51200},
    "parallel": {"tp": 2, "pp": 8, "dp": 1, "microbatch_size": 1, "recompute": "selective"},
}


def main() -> None:
    print(f"{'schedule':<12} {'v':>2} {'m':>4} {'iteration':>10} {'bubble':>8} {'(p-1)/(vm+p-1)':>15} {'MFU':>6}")
    pp = BASE["parallel"]["pp"]
    for schedule, v in (("gpipe", 1), ("1f1b", 1), ("interleaved", 2), ("interleaved", 4)):
        for m in (8, 16, 32, 64):
            raw = {**BASE, "parallel": {**BASE["parallel"], "schedule": schedule, "virtual_stages": v,
                                        "microbatches": m},
                   "training": {"continue_on_oom": True}}
            summary = sim.run(raw).summary
            closed = (pp - 1) / (v * m + pp - 1)
            oom = " (exceeds HBM)" if summary["memory_per_gpu"]["peak_bytes"] > 80e9 else ""
            print(f"{schedule:<12} {v:>2} {m:>4} {summary['iteration_time_s']:>9.3f}s "
                  f"{summary['bubble_fraction']:>8.3f} {closed:>15.3f} {summary['mfu']:>6.1%}{oom}")


if __name__ == "__main__":
    main()
