"""``accsim kernel``: the time of one GPU kernel (GEMM, fused attention, memory-bound) on a device."""

from __future__ import annotations

import argparse
import json

from sim.cli.format import format_bytes, format_seconds, format_si

EPILOG = """examples:
  accsim kernel --device h100_sxm5_80gb --op gemm --m 4096 --n 4096 --k 4096
  accsim kernel --device a100_sxm4_80gb --op gemm --n 12288 --k 12288 --sweep      (M swept)
  accsim kernel --device h100_sxm5_80gb --op gemm --m 8192 --n 8192 --k 8192 --dtype fp8
  accsim kernel --device h100_sxm5_80gb --op gemm --m 16 --n 12288 --k 5376 --dtype w4a16
  accsim kernel --device a100_sxm4_80gb --op attention --batch 8 --heads 16 --seq 2048 --head-dim 128
  accsim kernel --device h200_sxm_141gb --op pointwise --bytes 1GiB
  accsim kernel --device a100_sxm4_80gb --op gemm --m 8192 --n 8192 --k 8192 --set sm_array.count=216

Models and their sources: docs/architecture.md ("Kernel models"); validation against published
measurements: accsim validate --only gemm_a100,gemm_h100 (docs/validation.md)."""


def _overrides(pairs: list[str] | None) -> dict:
    from sim.errors import AccsimError
    from sim.runtime.scenario import apply_overrides
    if not pairs:
        return {}
    for pair in pairs:
        if "=" not in pair:
            raise AccsimError(f"--set {pair}: expected key.path=value, e.g. sm_array.count=216")
    raw = apply_overrides({}, [f"device_overrides.{pair}" for pair in pairs])
    return raw.get("device_overrides") or {}


def _row(r) -> str:
    work = format_si(r.flops_per_s, "FLOP/s") if r.op != "pointwise" else format_si(r.bytes_per_s, "B/s")
    return (f"{r.shape:<28} {format_seconds(r.seconds):>10} {work:>14} {100 * r.peak_fraction:>6.1f}%  "
            f"{r.bound:<8} {r.tile or '-':<20} {r.waves:>6}")


def cmd_kernel(args: argparse.Namespace) -> int:
    from sim.hardware import query
    fields = {name: getattr(args, name) for name in
              ("dtype", "m", "n", "k", "batch", "heads", "kv_heads", "seq", "seq_kv", "head_dim", "bytes",
               "flops", "instructions", "sms")}
    fields["causal"] = not args.no_causal
    fields["backward"] = args.backward
    overrides = _overrides(args.set)
    results = (query.sweep if args.sweep else lambda *a, **kw: [query.kernel(*a, **kw)])(
        args.device, args.op, overrides, **fields)
    if args.json:
        rows = [r.as_dict() for r in results]
        print(json.dumps(rows if args.sweep else rows[0], indent=2))
        return 0
    first = results[0]
    print(f"{first.op} on {first.device} ({first.dtype})")
    what = "achieved" if first.op != "pointwise" else "bandwidth"
    print(f"{'shape':<28} {'time':>10} {what:>14} {'peak':>7}  {'bound':<8} {'tile':<20} {'waves':>6}")
    for r in results:
        print(_row(r))
    if not args.sweep and first.op != "pointwise":
        print(f"HBM traffic {format_bytes(first.hbm_bytes)}, {first.tiles} thread blocks on {first.sms} SMs")
    if not args.sweep and first.op == "gemm" and first.tile_overhead_s > 0:
        print(f"tile prologues and epilogues {format_seconds(first.tile_overhead_s)} over {first.waves} "
              f"wave{'s' if first.waves > 1 else ''} ({100 * first.tile_overhead_s / first.seconds:.1f}% of the time)")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "kernel", help="time one kernel (GEMM, attention, memory-bound) on a device",
        description="Predict one kernel's time on a device with accsim's kernel models: achieved "
                    "throughput, share of the peak, what bounds it (compute, memory, latency), the GEMM "
                    "tile and waves. --sweep prints a curve over sizes.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", required=True, help="catalog name (accsim devices) or spec file")
    p.add_argument("--op", default="gemm", help="gemm (default), attention or pointwise")
    p.add_argument("--dtype", help="bf16 (device default), fp16, tf32, fp8, int8, w8a16, w4a16, ...")
    p.add_argument("--m", help="GEMM rows of A and C (tokens)")
    p.add_argument("--n", help="GEMM columns of B and C")
    p.add_argument("--k", help="GEMM inner dimension")
    p.add_argument("--batch", help="batched GEMMs, or attention sequences (default 1)")
    p.add_argument("--heads", help="attention query heads")
    p.add_argument("--kv-heads", dest="kv_heads", help="attention key/value heads (GQA/MQA; default: heads)")
    p.add_argument("--seq", help="attention query length")
    p.add_argument("--seq-kv", dest="seq_kv", help="attention key length (default: seq)")
    p.add_argument("--head-dim", dest="head_dim", help="attention head dimension")
    p.add_argument("--no-causal", action="store_true", help="attention without the causal mask")
    p.add_argument("--backward", action="store_true", help="attention backward pass")
    p.add_argument("--bytes", help="pointwise: bytes read + written (e.g. 1GiB)")
    p.add_argument("--flops", help="pointwise: FLOPs (default 0)")
    p.add_argument("--instructions", help="pointwise: thread instructions it executes (default 0: bandwidth-bound); "
                   "priced at the SMs' issue rate, e.g. 54.6 per element for a LayerNorm forward")
    p.add_argument("--sms", help="price on this many SMs (default: all)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="edit the device spec, e.g. sm_array.count=216 or memory.hbm.bandwidth_bytes_per_s=4e12")
    p.add_argument("--sweep", action="store_true", help="a curve: GEMM sizes not given, sequence length, bytes")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_kernel)
