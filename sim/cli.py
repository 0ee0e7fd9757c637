"""The ``accsim`` command line.

    accsim run SCENARIO --out DIR [--set key.path=value ...]
    accsim trace validate FILE
    accsim trace info FILE [--device NAME] [--json]
    accsim collective --topology TOPO --op OP --algorithm ALGO --bytes SIZE [...]
    accsim perfetto RUN_DIR -o FILE [--format pftrace|json] [--devices GLOB] [--start S --end S]
    accsim sweep SWEEP.yaml --out DIR [--workers N] [--scheduler ADDRESS] [--timeout S] [--keep-timelines]
    accsim devices

Input errors print one line, ``accsim: error: ...``, to stderr and exit with
status 2; nothing is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from collections import Counter
from typing import Sequence

from sim.errors import AccsimError
from sim.units import format_bytes


def _progress_printer(stream=sys.stderr):
    """Progress of long runs on stderr: a line rewritten in place on a terminal,
    one line per 10% otherwise."""
    tty = stream.isatty()
    state = {"decile": 0}

    def report(done: int, total: int) -> None:
        if total < 20000:
            return
        if tty:
            stream.write(f"\r  simulated {done}/{total} ops ({100.0 * done / total:.0f}%)")
            if done >= total:
                stream.write("\n")
        else:
            decile = int(10 * done / total)
            if decile <= state["decile"]:
                return
            state["decile"] = decile
            stream.write(f"  simulated {done}/{total} ops ({10 * decile}%)\n")
        stream.flush()
    return report


def _format_si(value: float, unit: str) -> str:
    for prefix, factor in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _format_seconds(value: float) -> str:
    for unit, factor in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if abs(value) >= factor:
            return f"{value / factor:.4g} {unit}"
    return f"{value:.3g} s"


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
        return _format_si(sum(values) / len(values), unit)

    device_rows = [r for r in rows if r["device"] != "network"]
    if len(devices) <= 4:
        for r in device_rows:
            lines.append(f"{r['device']:<14} {r['unit']:<11} {r['ops']:>7} {_format_seconds(r['busy_s']):>11} "
                         f"{100 * r['utilization']:>6.1f}% {rate([r], r['category']):>16}")
    else:
        units: dict[str, list] = {}
        for r in device_rows:
            units.setdefault(r["unit"], []).append(r)
        for unit, group in units.items():
            mean_busy = sum(r["busy_s"] for r in group) / len(group)
            mean_util = sum(r["utilization"] for r in group) / len(group)
            lines.append(f"{f'mean of {len(group)}':<14} {unit:<11} {sum(r['ops'] for r in group):>7} "
                         f"{_format_seconds(mean_busy):>11} {100 * mean_util:>6.1f}% "
                         f"{rate(group, group[0]['category']):>16}")
    links = [r for r in rows if r["device"] == "network"]
    if links:
        busiest = max(links, key=lambda r: r["utilization"])
        mean = sum(r["utilization"] for r in links) / len(links)
        lines.append(f"network: {len(links)} directed links used, mean utilization {100 * mean:.1f}%, "
                     f"busiest {busiest['unit']} at {100 * busiest['utilization']:.1f}%")
    return lines


def print_summary(summary: dict, utilization, out_dir: str | None, stream=sys.stdout) -> None:
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
            f"iteration  {_format_seconds(summary['iteration_time_s'])}   "
            f"{_format_si(summary['tokens_per_s'], 'tokens/s')}   "
            f"{_format_si(summary['model_flops_per_gpu_per_s'], 'FLOP/s')} per GPU   "
            f"MFU {100 * summary['mfu']:.1f}%   HFU {100 * summary['hfu']:.1f}%",
            f"bubbles    {100 * summary['bubble_fraction']:.1f}% of the iteration per stage (mean): "
            + ", ".join(f"{cause} {_format_seconds(sec)}" for cause, sec in summary["bubble_s_by_cause"].items()),
            f"exposed communication per GPU: TP {_format_seconds(exposed['tp'])}, "
            f"PP {_format_seconds(exposed['pp'])}, DP {_format_seconds(exposed['dp'])}",
            f"memory per GPU (worst: stage {mem['worst_stage']}): {format_bytes(mem['peak_bytes'])} = weights "
            f"{format_bytes(mem['weights_bytes'])} + gradients {format_bytes(mem['gradients_bytes'])} + "
            f"optimizer {format_bytes(mem['optimizer_bytes'])} + activations {format_bytes(mem['activations_bytes'])}",
            f"simulated  {summary['devices']} devices ({summary['fidelity']}), {summary['ops']} ops, "
            f"{summary['events']} events, {summary['wall_s']:.2f} s wall",
        ]
    else:
        lines += [
            f"scenario   {summary['scenario']}  on  {summary['device']}",
            f"makespan   {_format_seconds(summary['makespan_s'])}",
            f"work       {_format_si(summary['total_flops'], 'FLOP')} in {summary['ops']} ops "
            f"({summary['events']} events, {summary['wall_s']:.3f} s wall)",
            f"achieved   {_format_si(summary['achieved_flops_per_s'], 'FLOP/s')} of "
            f"{_format_si(summary['peak_flops_per_s'], 'FLOP/s')} peak  (MFU {100 * summary['mfu']:.1f}%)",
        ]
        for device, tiers in summary["peak_memory_bytes"].items():
            peaks = ", ".join(f"{tier} {format_bytes(n)} of {format_bytes(summary['capacity_bytes'][device][tier])}"
                              for tier, n in tiers.items())
            lines.append(f"peak memory {device}: {peaks}")
        bubbles = summary.get("bubble_s_by_cause") or {}
        if bubbles:
            lines.append("idle (bubbles): " + ", ".join(f"{cause} {_format_seconds(sec)}"
                                                        for cause, sec in bubbles.items()))
    lines.append("")
    lines += _utilization_lines(utilization)
    if out_dir:
        lines.append("")
        lines.append(f"wrote {out_dir}/timeline.arrow, bubbles.arrow, utilization.arrow, "
                     f"memory.arrow, summary.json")
    stream.write("\n".join(lines) + "\n")


def cmd_run(args: argparse.Namespace) -> int:
    import sim
    overrides = list(args.set or [])
    if args.fidelity:
        overrides.append(f"training.fidelity={args.fidelity}")
    scenario = sim.load_scenario(args.scenario, overrides)
    progress = None if args.quiet else _progress_printer()
    result = sim.run(scenario, progress=progress)
    result.write(args.out)
    if args.write_trace:
        from sim.workload.trace import write_trace
        write_trace(scenario.trace.ops, Path(args.out) / "trace.arrow")
    if args.perfetto:
        from sim.reports.perfetto import export
        export(args.out, Path(args.out) / "trace.pftrace")
    if not args.quiet:
        print_summary(result.summary, result.utilization, args.out)
        if args.perfetto:
            print(f"wrote {args.out}/trace.pftrace (open it at https://ui.perfetto.dev)")
    return 0


def cmd_perfetto(args: argparse.Namespace) -> int:
    from sim.reports.perfetto import export
    model = export(args.run_dir, args.output, args.format, args.devices, args.start, args.end,
                   args.max_slices)
    print(f"wrote {args.output}: {len(model.slices)} slices on {len(model.tracks)} tracks "
          f"(open it at https://ui.perfetto.dev)")
    return 0


def cmd_trace_validate(args: argparse.Namespace) -> int:
    from sim.workload.trace import load_trace
    trace = load_trace(args.file)
    print(f"{args.file}: ok ({len(trace.ops)} ops, {len(trace.streams())} streams)")
    return 0


def cmd_trace_info(args: argparse.Namespace) -> int:
    from sim.workload.trace import COMM_OPS, critical_path, load_trace
    trace = load_trace(args.file)
    ops = trace.ops
    counts = Counter(op.op for op in ops)
    length_ops, path = critical_path(trace)
    length_flops, _ = critical_path(trace, {op.id: op.flops for op in ops})
    info = {
        "file": str(args.file),
        "ops": len(ops),
        "streams": len(trace.streams()),
        "op_counts": dict(sorted(counts.items())),
        "total_flops": sum(op.flops for op in ops),
        "total_bytes_read": sum(op.bytes_read for op in ops),
        "total_bytes_written": sum(op.bytes_written for op in ops),
        "critical_path_ops": int(length_ops),
        "critical_path_flops": length_flops,
    }
    if args.device:
        from sim.hardware.specs import load_device_spec
        from sim.runtime.isolated import isolated_op_seconds
        spec = load_device_spec(args.device)
        seconds = isolated_op_seconds(trace, spec)
        info["device"] = spec.name
        info["critical_path_s"] = critical_path(trace, seconds)[0]
        info["sum_of_op_times_s"] = sum(seconds.values())
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    streams = info["streams"]
    print(f"{info['file']}: {info['ops']} ops on {streams} stream{'s' if streams != 1 else ''}")
    print("  ops by type: " + ", ".join(f"{k} {v}" for k, v in info["op_counts"].items()))
    print(f"  total: {_format_si(info['total_flops'], 'FLOP')}, read {format_bytes(info['total_bytes_read'])}, "
          f"written {format_bytes(info['total_bytes_written'])}")
    print(f"  critical path: {info['critical_path_ops']} ops, "
          f"{_format_si(info['critical_path_flops'], 'FLOP')} along the heaviest chain")
    if args.device:
        print(f"  on {info['device']} (each op alone): critical path {_format_seconds(info['critical_path_s'])}, "
              f"sum of op times {_format_seconds(info['sum_of_op_times_s'])}"
              + (" (collectives not costed: they need a cluster; use accsim run)"
                 if any(k in info["op_counts"] for k in COMM_OPS) else ""))
    return 0


def cmd_collective(args: argparse.Namespace) -> int:
    from sim.network.cli_support import parse_group, parse_sizes
    from sim.network.collectives import normalize_algorithm, normalize_op
    from sim.network.runtime import NetworkRuntime, simulate_collectives
    from sim.network.topology import load_topology, with_links

    op, algorithm = normalize_op(args.op), normalize_algorithm(args.algorithm)
    cluster = with_links(load_topology(args.topology), args.link_bandwidth, args.link_latency)
    ranks = parse_group(args.group, cluster.size)
    if op == "sendrecv" and not args.group:
        ranks = ranks[:2]
    sizes = parse_sizes(args.bytes)
    results = []
    networks: list[NetworkRuntime] = []
    for size in sizes:
        results.append(simulate_collectives(cluster, [(op, algorithm, ranks, size)], args.gamma,
                                            args.ecmp, record=bool(args.out),
                                            on_network=networks.append)[0])
    if args.out:
        from sim.reports.network import write_collective_run
        write_collective_run(args.out, cluster, networks[-1], results[-1])
    if args.json:
        for result in results:
            print(json.dumps(result.as_dict()))
        return 0
    print(f"# {op} on {cluster.name}, {len(ranks)} ranks, algorithm {algorithm}")
    print(f"{'size':>12} {'algorithm':>17} {'time':>12} {'algbw':>12} {'busbw':>12}")
    for r in results:
        print(f"{format_bytes(r.nbytes):>12} {r.algorithm:>17} {_format_seconds(r.time_s):>12} "
              f"{r.algbw_bytes_per_s / 1e9:>8.2f} GB/s {r.busbw_bytes_per_s / 1e9:>7.2f} GB/s")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from collections import Counter as Tally

    from sim.sweeps.points import load_sweep
    from sim.sweeps.runner import sweep
    spec = load_sweep(args.sweep)
    print(f"sweep {spec.name}: {len(spec.points)} points over {', '.join(spec.params)}"
          + (f" ({spec.filtered} filtered out by where)" if spec.filtered else ""), file=sys.stderr)
    table = sweep(spec, args.out, workers=args.workers, scheduler=args.scheduler, timeout_s=args.timeout,
                  keep_timelines=args.keep_timelines, progress=not args.quiet)
    counts = Tally(table["status"].to_pylist())
    print(f"wrote {args.out}/results/ ({table.num_rows} points: "
          + ", ".join(f"{counts[s]} {s}" for s in ("ok", "invalid", "error") if counts[s]) + ")")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from sim.hardware.specs import device_catalog, load_device_spec
    for name in device_catalog():
        spec = load_device_spec(name)
        tiers = ", ".join(f"{t.name} {format_bytes(t.capacity_bytes)} @ {_format_si(t.bandwidth_bytes_per_s, 'B/s')}"
                          for t in spec.memory)
        print(f"{name:<16} {spec.name:<16} {_format_si(spec.matrix_peak_flops_per_s(), 'FLOP/s'):>13}  "
              f"units {'+'.join(spec.unit_kinds)}; {tiers}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="accsim", description="Discrete-event simulator of accelerator clusters.",
        epilog="Errors in inputs exit with status 2 and write nothing. See README.md.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="simulate a scenario and write Arrow timelines",
                         description="Simulate a scenario YAML and write DIR/timeline.arrow, "
                                     "bubbles.arrow, utilization.arrow, memory.arrow and summary.json.")
    run.add_argument("scenario", help="scenario YAML file (e.g. scenarios/quickstart.yaml)")
    run.add_argument("--out", required=True, metavar="DIR", help="output directory (created if absent)")
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
                          "scenarios) as DIR/trace.arrow; a scenario with cluster: and trace: replays it")
    run.add_argument("--quiet", action="store_true", help="print nothing on success")
    run.set_defaults(func=cmd_run)

    trace = sub.add_parser("trace", help="check or describe an operator trace")
    trace_sub = trace.add_subparsers(dest="trace_command", required=True, metavar="ACTION")
    validate = trace_sub.add_parser("validate", help="validate a .jsonl or .arrow trace")
    validate.add_argument("file")
    validate.set_defaults(func=cmd_trace_validate)
    info = trace_sub.add_parser("info", help="op counts, totals and critical path of a trace")
    info.add_argument("file")
    info.add_argument("--device", help="device spec (catalog name or path) to cost the critical path in seconds")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=cmd_trace_info)

    coll = sub.add_parser(
        "collective", help="time a collective on a topology (nccl-tests-like table)",
        description="Simulate one collective on a cluster topology and print time, algorithm "
                    "bandwidth and bus bandwidth (nccl-tests' busbw factors).",
        epilog="Examples:\n  accsim collective --topology ring:8 --op allreduce --algorithm ring --bytes 1GiB\n"
               "  accsim collective --topology dgx_a100 --op all-reduce --algorithm auto --bytes 1KiB:4GiB",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    coll.add_argument("--topology", required=True,
                      help="YAML file, catalog name (topologies/clusters) or ring:N, fully_connected:N, "
                           "switch:N, tree:N, torus:AxB[xC], cluster:NODESxGPUS")
    coll.add_argument("--op", required=True,
                      help="allreduce, reduce_scatter, allgather, broadcast, reduce, scatter, gather, "
                           "alltoall, sendrecv (hyphens accepted)")
    coll.add_argument("--algorithm", default="auto",
                      help="ring, mst, halving_doubling, double_binary_tree, hierarchical, auto (fastest "
                           "predicted), nccl (fastest of NCCL's own: ring, double_binary_tree, hierarchical); "
                           "default auto")
    coll.add_argument("--bytes", action="append", required=True, metavar="SIZE",
                      help="message size (4096, 64MiB) or a range LOW:HIGH[:FACTOR]; repeatable")
    coll.add_argument("--group", help="ranks taking part, in ring order: 0,1,2 or 0-7 or 0:64:8 (default: all)")
    coll.add_argument("--link-bandwidth", type=float, metavar="BYTES_PER_S",
                      help="set every link's bandwidth (bytes/s per direction)")
    coll.add_argument("--link-latency", type=float, metavar="SECONDS", help="set every link's latency")
    coll.add_argument("--gamma", type=float, default=0.0, metavar="S_PER_BYTE",
                      help="reduction cost, seconds per byte reduced (default 0)")
    coll.add_argument("--ecmp", action="store_true", help="spread flows over equal-cost paths")
    coll.add_argument("--json", action="store_true", help="one JSON object per size")
    coll.add_argument("--out", metavar="DIR",
                      help="write timeline.arrow, utilization.arrow (per link) and summary.json for the last size")
    coll.set_defaults(func=cmd_collective)

    perf = sub.add_parser("perfetto", help="convert a run's timeline to a Perfetto trace",
                          description="Write a run directory's timeline, bubbles, memory and link "
                                      "activity as a native Perfetto trace (.pftrace) or Chrome JSON.")
    perf.add_argument("run_dir", metavar="RUN_DIR", help="directory written by accsim run")
    perf.add_argument("-o", "--output", required=True, metavar="FILE", help="trace file to write")
    perf.add_argument("--format", choices=["pftrace", "json"],
                      help="default: json for a .json file, else pftrace")
    perf.add_argument("--devices", metavar="GLOB", help="only devices matching, e.g. 'node0/*' or 'network'")
    perf.add_argument("--start", type=float, metavar="S", help="only slices ending after S seconds")
    perf.add_argument("--end", type=float, metavar="S", help="only slices starting before S seconds")
    perf.add_argument("--max-slices", type=int, metavar="N", help="keep the first N slices (warns on stderr)")
    perf.set_defaults(func=cmd_perfetto)

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

    devices = sub.add_parser("devices", help="list the device specs in the catalog")
    devices.set_defaults(func=cmd_devices)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except AccsimError as exc:
        print(f"accsim: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("accsim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
