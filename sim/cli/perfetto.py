"""``accsim perfetto``: a run's timeline as a Perfetto trace or Chrome JSON."""

from __future__ import annotations

import argparse


def cmd_perfetto(args: argparse.Namespace) -> int:
    from sim.progress import Progress
    from sim.reports.perfetto import export
    model = export(args.run_dir, args.output, args.format, args.devices, args.start, args.end,
                   args.max_slices, progress=Progress(enabled=not args.quiet))
    if args.quiet:
        return 0
    print(f"wrote {args.output}: {model.slice_count} slices on {len(model.tracks)} tracks "
          f"(open it at https://ui.perfetto.dev)")
    return 0


def register(sub) -> None:
    perf = sub.add_parser("perfetto", help="convert a run's timeline to a Perfetto trace",
                          description="Write a run directory's timeline, bubbles, memory and link "
                                      "activity as a native Perfetto trace (.pftrace) or Chrome JSON.")
    perf.add_argument("run_dir", metavar="RUN_DIR", help="directory written by accsim run (Arrow or Parquet tables)")
    perf.add_argument("-o", "--output", required=True, metavar="FILE", help="trace file to write")
    perf.add_argument("--format", choices=["pftrace", "json"],
                      help="default: json for a .json file, else pftrace")
    perf.add_argument("--devices", metavar="GLOB", help="only devices matching, e.g. 'node0/*' or 'network'")
    perf.add_argument("--start", type=float, metavar="S", help="only slices ending after S seconds")
    perf.add_argument("--end", type=float, metavar="S", help="only slices starting before S seconds")
    perf.add_argument("--max-slices", type=int, metavar="N", help="keep the first N slices (warns on stderr)")
    perf.add_argument("--quiet", action="store_true", help="print nothing on success")
    perf.set_defaults(func=cmd_perfetto)
