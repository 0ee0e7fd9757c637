"""``accsim trace validate|info``: check or describe an operator trace."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from sim.cli.format import format_bytes, format_seconds, format_si


def _load(path: str):
    from sim.progress import Progress
    from sim.workload.trace import load_trace
    with Progress().stage(f"reading and checking {path}"):
        return load_trace(path)


def cmd_trace_validate(args: argparse.Namespace) -> int:
    trace = _load(args.file)
    print(f"{args.file}: ok ({len(trace.ops)} ops, {len(trace.streams())} streams)")
    return 0


def cmd_trace_info(args: argparse.Namespace) -> int:
    from sim.workload.trace import COMM_OPS, critical_path
    trace = _load(args.file)
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
    print(f"  total: {format_si(info['total_flops'], 'FLOP')}, read {format_bytes(info['total_bytes_read'])}, "
          f"written {format_bytes(info['total_bytes_written'])}")
    print(f"  critical path: {info['critical_path_ops']} ops, "
          f"{format_si(info['critical_path_flops'], 'FLOP')} along the heaviest chain")
    if args.device:
        print(f"  on {info['device']} (each op alone): critical path {format_seconds(info['critical_path_s'])}, "
              f"sum of op times {format_seconds(info['sum_of_op_times_s'])}"
              + (" (collectives not costed: they need a cluster; use accsim run)"
                 if any(k in info["op_counts"] for k in COMM_OPS) else ""))
    return 0


def register(sub) -> None:
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
