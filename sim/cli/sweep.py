"""``accsim sweep``: a parameter sweep on Dask."""

from __future__ import annotations

import argparse


def cmd_sweep(args: argparse.Namespace) -> int:
    from collections import Counter as Tally

    from sim.errors import AccsimError
    from sim.sweeps.points import load_sweep
    from sim.sweeps.runner import check_options, sweep
    check_options(args.workers, args.timeout, args.scheduler)
    from sim.progress import Progress
    with Progress(enabled=not args.quiet).stage(f"loading {args.sweep} and checking every point"):
        spec = load_sweep(args.sweep)
    table = sweep(spec, args.out, workers=args.workers, scheduler=args.scheduler, timeout_s=args.timeout,
                  keep_timelines=args.keep_timelines, progress=not args.quiet)
    statuses = table["status"].to_pylist()
    counts = Tally(statuses)
    if not args.quiet:
        print(f"wrote {args.out}/results/ ({table.num_rows} points: "
              + ", ".join(f"{counts[s]} {s}" for s in ("ok", "invalid", "error") if counts[s]) + ")")
    if table.num_rows and not counts["ok"]:
        first = next(e for s, e in zip(statuses, table["error"].to_pylist()) if s != "ok")
        raise AccsimError(f"no point of the sweep ran; the first error: {first}")
    return 0


def register(sub) -> None:
    sw = sub.add_parser("sweep", help="run a parameter sweep on a Dask cluster",
                        description="Run every design point of a sweep file (grid / zip / random axes over "
                                    "a base scenario) on Dask; results go to DIR/results/ as a Parquet "
                                    "dataset, one row per point. Re-running resumes.",
                        epilog="Example: accsim sweep scenarios/sweep_pipeline.yaml --out runs/sweep --workers 2")
    sw.add_argument("sweep", metavar="SWEEP.yaml")
    sw.add_argument("--out", required=True, metavar="DIR")
    sw.add_argument("--workers", type=int, metavar="N", help="worker processes of the embedded local cluster "
                                                             "(default: the CPU count)")
    sw.add_argument("--scheduler", metavar="ADDRESS", help="use a running Dask scheduler, e.g. tcp://host:8786")
    sw.add_argument("--timeout", type=float, metavar="S", help="per-point time limit in seconds")
    sw.add_argument("--keep-timelines", action="store_true", help="keep each point's Arrow files in DIR/points/ID/")
    sw.add_argument("--quiet", action="store_true", help="no progress output")
    sw.set_defaults(func=cmd_sweep)
