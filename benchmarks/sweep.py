"""Sweep throughput: design points per minute with 1 and 2 worker processes of
the embedded Dask LocalCluster, on the same 48-point sweep (pipeline_ideal:
pp x microbatches x schedule x hidden). Cluster start-up is excluded; each run
writes to a fresh directory.

    python benchmarks/sweep.py

Expectation (issue 6): close to 2x with 2 workers on this 2-core machine.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dask.distributed import Client, LocalCluster  # noqa: E402

import sim  # noqa: E402

SWEEP = {
    "scenario": str(ROOT / "scenarios" / "pipeline_ideal.yaml"),
    "grid": {"parallel.pp": [2, 4, 8], "parallel.microbatches": [16, 24, 32, 48],
             "parallel.schedule": ["gpipe", "1f1b"], "model.hidden": [1024, 2048],
             "training.continue_on_oom": [True]},
}


def main() -> None:
    rates = {}
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          host="127.0.0.1", silence_logs=logging.WARNING) as cluster, Client(cluster) as client:
            client.run(lambda: __import__("sim.parallel.emit"))  # warm the workers' imports
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                table = sim.sweep(SWEEP, out=out, client=client, progress=False)
                wall = time.perf_counter() - start
        rates[workers] = table.num_rows / wall * 60
        print(f"{workers} worker(s): {table.num_rows} points in {wall:.1f} s = {rates[workers]:.0f} points/min")
    print(f"speed-up with 2 workers: {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
