"""``accsim run``: simulate a scenario, write its outputs, print a summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sim.cli.format import format_bytes, format_seconds, format_si


COMM_LABELS = {"tp": "TP", "pp": "PP", "dp": "DP", "embedding_sync": "embedding sync"}


def _utilization_lines(utilization) -> list[str]:
    """Per unit, one row per device for up to 4 devices, else means over devices;
    network links summarized in one line."""
    rows = utilization.to_pylist()
    devices = sorted({r["device"] for r in rows if r["device"] != "network"})
    lines = [f"{'device':<14} {'unit':<11} {'ops':>7} {'busy':>11} {'util':>7} {'achieved':>16}"]

    def rate(row_or_rows, category):
        key = "achieved_flops_per_s" if category == "compute" else "achieved_bytes_per_s"
        unit = "FLOP/s" if category == "compute" else "B/s"
        values = [r[key] for r in row_or_rows]
        return format_si(sum(values) / len(values), unit)

    device_rows = [r for r in rows if r["device"] != "network"]
    if len(devices) <= 4:
        for r in device_rows:
            lines.append(f"{r['device']:<14} {r['unit']:<11} {r['ops']:>7} {format_seconds(r['busy_s']):>11} "
                         f"{100 * r['utilization']:>6.1f}% {rate([r], r['category']):>16}")
    else:
        units: dict[str, list] = {}
        for r in device_rows:
            units.setdefault(r["unit"], []).append(r)
        for unit, group in units.items():
            mean_busy = sum(r["busy_s"] for r in group) / len(group)
            mean_util = sum(r["utilization"] for r in group) / len(group)
            lines.append(f"{f'mean of {len(group)}':<14} {unit:<11} {sum(r['ops'] for r in group):>7} "
                         f"{format_seconds(mean_busy):>11} {100 * mean_util:>6.1f}% "
                         f"{rate(group, group[0]['category']):>16}")
    links = [r for r in rows if r["device"] == "network"]
    if links:
        busiest = max(links, key=lambda r: r["utilization"])
        mean = sum(r["utilization"] for r in links) / len(links)
        lines.append(f"network: {len(links)} directed links used, mean utilization {100 * mean:.1f}%, "
                     f"busiest {busiest['unit']} at {100 * busiest['utilization']:.1f}%")
    return lines


def print_summary(summary: dict, utilization, out_dir: str | None, stream=None,
                  fmt: str = "arrow") -> None:
    """A short human-readable report of a run."""
    lines = []
    if "iteration_time_s" in summary:
        p = summary["parallel"]
        mem = summary["memory_per_gpu"]
        exposed = summary["exposed_comm_s"]
        lines += [
            f"scenario   {summary['scenario']}: {summary['model']} on {summary['gpus']} x {summary['device']} "
            f"(tp {p['tp']}, pp {p['pp']}, dp {p['dp']}; {p['schedule']}"
            + (f" x{p['virtual_stages']}" if p["virtual_stages"] > 1 else "")
            + f", {p['microbatches']} microbatches of {p['microbatch_size']}, recompute {p['recompute']})",
            f"iteration  {format_seconds(summary['iteration_time_s'])}   "
            f"{format_si(summary['tokens_per_s'], 'tokens/s')}   "
            f"{format_si(summary['model_flops_per_gpu_per_s'], 'FLOP/s')} per GPU   "
            f"MFU {100 * summary['mfu']:.1f}%   HFU {100 * summary['hfu']:.1f}%",
            f"bubbles    {100 * summary['bubble_fraction']:.1f}% of the iteration (mean over stages); "
            f"idle per GPU (mean of the {summary['devices']} simulated): "
            + ", ".join(f"{cause} {format_seconds(sec)}"
                        for cause, sec in summary["bubble_s_by_cause_per_device"].items()),
            "exposed communication per GPU (mean): "
            + ", ".join(f"{COMM_LABELS.get(kind, kind)} {format_seconds(sec)}" for kind, sec in exposed.items()),
            f"memory per GPU (worst: stage {mem['worst_stage']}): {format_bytes(mem['peak_bytes'])} = weights "
            f"{format_bytes(mem['weights_bytes'])} + gradients {format_bytes(mem['gradients_bytes'])} + "
            f"optimizer {format_bytes(mem['optimizer_bytes'])} + activations {format_bytes(mem['activations_bytes'])}",
            f"simulated  {summary['devices']} devices ({summary['fidelity']}), {summary['ops']} ops, "
            f"{summary['events']} events, {summary['wall_s']:.2f} s wall",
        ]
    else:
        lines += [
            f"scenario   {summary['scenario']}  on  {summary['device']}",
            f"makespan   {format_seconds(summary['makespan_s'])}",
            f"work       {format_si(summary['total_flops'], 'FLOP')} in {summary['ops']} ops "
            f"({summary['events']} events, {summary['wall_s']:.3f} s wall)",
            f"achieved   {format_si(summary['achieved_flops_per_s'], 'FLOP/s')} of "
            f"{format_si(summary['peak_flops_per_s'], 'FLOP/s')} peak  (MFU {100 * summary['mfu']:.1f}%)",
        ]
        for device, tiers in summary["peak_memory_bytes"].items():
            peaks = ", ".join(f"{tier} {format_bytes(n)} of {format_bytes(summary['capacity_bytes'][device][tier])}"
                              for tier, n in tiers.items())
            lines.append(f"peak memory {device}: {peaks}")
        bubbles = summary.get("bubble_s_by_cause") or {}
        if bubbles:
            devices = summary["devices"]
            lines.append(f"idle (bubbles, summed over {devices} device{'s' if devices != 1 else ''}): "
                         + ", ".join(f"{cause} {format_seconds(sec)}" for cause, sec in bubbles.items()))
    limit = summary.get("power_limit")
    if limit:
        lines.append(f"power      {limit['device']} would draw {limit['power_w_at_full_clock']:.0f} W while computing "
                     f"at full clock, over its {limit['limit_w']:.0f} W limit: SM clock scaled to "
                     f"{100 * limit['clock_scale']:.1f}% ({limit['simulations']} simulations)")
    lines.append("")
    lines += _utilization_lines(utilization)
    if summary.get("energy"):
        from sim.energy.table import energy_lines
        lines.append("")
        lines += energy_lines(summary["energy"])
    if out_dir:
        lines.append("")
        lines.append(f"wrote {out_dir}/timeline.{fmt}, bubbles.{fmt}, utilization.{fmt}, "
                     f"memory.{fmt}, summary.json")
    (stream or sys.stdout).write("\n".join(lines) + "\n")


def cmd_run(args: argparse.Namespace) -> int:
    import sim
    if args.dry_run:
        from sim.cli.plan import cmd_dry_run
        return cmd_dry_run(args)
    if args.json:
        raise sim.AccsimError("--json: only with --dry-run (a run's results are in DIR/summary.json)")
    if args.out is None:
        raise sim.AccsimError("--out DIR is required (unless --dry-run)")
    import sim.runtime.simulate  # noqa: F401  (the simulator's modules load before "loading" is timed)
    from sim.progress import Progress
    from sim.reports.writer import prepare_output
    prepare_output(args.out, args.overwrite)          # before any simulating
    overrides = list(args.set or [])
    if args.fidelity:
        overrides.append(f"training.fidelity={args.fidelity}")
    progress = Progress(enabled=not args.quiet)
    with progress.stage(f"loading {args.scenario}"):
        scenario = sim.load_scenario(args.scenario, overrides)
    serving = not isinstance(scenario, sim.Scenario)      # sim.serving: requests over time
    if serving and args.write_trace:
        raise sim.AccsimError("--write-trace: a serving scenario has no operator trace to write")
    try:
        result = sim.run(scenario, progress=progress)
    finally:
        progress.close()             # a bar left by a failing run ends its line
    extras = []
    if args.write_trace:
        from sim.workload.trace import write_trace
        extras.append(lambda folder: write_trace(scenario.trace.ops, folder / "trace.arrow"))
    if args.perfetto:
        from sim.reports.perfetto import export

        def perfetto(folder: Path) -> None:
            with progress.stage("writing the Perfetto trace"):
                export(folder, folder / "trace.pftrace")
        extras.append(perfetto)
    with progress.stage(f"writing {args.out}"):
        result.write(args.out, overwrite=args.overwrite, format=args.format, extras=extras)
    if not args.quiet and serving:
        from sim.serving.report import print_serving_summary
        print_serving_summary(result.summary, args.out, fmt=args.format)
        if args.perfetto:
            print(f"wrote {args.out}/trace.pftrace (open it at https://ui.perfetto.dev)")
    elif not args.quiet:
        print_summary(result.summary, result.utilization, args.out, fmt=args.format)
        if args.write_trace:
            print(f"wrote {args.out}/trace.arrow (replay it with cluster: and trace: in a scenario)")
        if args.perfetto:
            print(f"wrote {args.out}/trace.pftrace (open it at https://ui.perfetto.dev)")
    return 0


def register(sub) -> None:
    run = sub.add_parser("run", help="simulate a scenario and write Arrow timelines",
                         description="Simulate a scenario YAML and write DIR/timeline.arrow, "
                                     "bubbles.arrow, utilization.arrow, memory.arrow and summary.json "
                                     "(whole or not at all).",
                         epilog="Examples: accsim run scenarios/quickstart.yaml --out runs/quickstart; "
                                "accsim run quickstart --out runs/q --set parallel.pp=4 --set parallel.dp=1")
    run.add_argument("scenario", help="scenario YAML file (e.g. scenarios/quickstart.yaml), or the name "
                                      "of a shipped scenario (quickstart)")
    run.add_argument("--out", metavar="DIR",
                     help="output directory (required unless --dry-run): created; if it exists it must be "
                          "empty (see --overwrite)")
    run.add_argument("--dry-run", action="store_true",
                     help="training scenarios: validate the scenario and its plan and print the memory per GPU "
                          "of each pipeline stage against the device's capacity, without simulating or writing "
                          "anything; exit 0 if the plan fits, 2 (one line) if it is invalid or does not fit")
    run.add_argument("--json", action="store_true", help="with --dry-run: print the memory per stage as JSON")
    run.add_argument("--overwrite", action="store_true",
                     help="replace the run already in DIR (only a run's own files: *.arrow, *.parquet, "
                          "summary.json, trace.pftrace)")
    run.add_argument("--format", choices=["arrow", "parquet"], default="arrow",
                     help="table files: Arrow IPC (default) or Parquet (DuckDB and Spark read it directly)")
    run.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                     help="override a scenario key before validation; repeatable "
                          "(e.g. --set device_overrides.pim.mode=blocked)")
    run.add_argument("--fidelity", choices=["folded", "full"],
                     help="training scenarios: simulate one rank per pipeline stage (folded, default) "
                          "or every rank (full)")
    run.add_argument("--perfetto", action="store_true",
                     help="also write DIR/trace.pftrace for ui.perfetto.dev")
    run.add_argument("--write-trace", action="store_true",
                     help="also write the operator trace that was simulated (generated for training "
                          "scenarios) as DIR/trace.arrow; a scenario with cluster: and trace: replays it "
                          "(docs/trace-format.md says which metrics can differ)")
    run.add_argument("--quiet", action="store_true", help="print nothing on success (no progress either)")
    run.set_defaults(func=cmd_run)
