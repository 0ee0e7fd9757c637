"""``accsim import chakra|kineto|scalesim``: other tools' workloads as accsim traces.

    accsim import chakra ET_PREFIX --out TRACE.arrow [--comm-groups FILE.json] [--reprice]
    accsim import kineto RANK0.json[.gz] [RANK1.json ...] --out TRACE.arrow [--reprice] [--dtype D]
    accsim import scalesim TOPOLOGY.csv --out TRACE.arrow [--layout auto|conv|gemm] [--batch N] [--dtype D]

The output is an ordinary trace (docs/trace-format.md, "Importing"): replay
it with ``accsim run`` (a scenario naming the trace and a device or cluster),
describe it with ``accsim trace info``.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter


def _report(trace, out: str, extra: str = "") -> None:
    counts = Counter(op.op for op in trace.ops)
    ranks = sorted({op.rank for op in trace.ops})
    print(f"wrote {out}: {len(trace.ops)} ops ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}) "
          f"on {len(ranks)} rank{'s' if len(ranks) != 1 else ''}, {len(trace.streams())} "
          f"stream{'s' if len(trace.streams()) != 1 else ''}{extra}")


def cmd_scalesim(args: argparse.Namespace) -> int:
    from sim.importers import check_output, write_imported
    from sim.importers.scalesim import convert
    check_output(args.out)
    ops = convert(args.topology, layout=args.layout, images=args.batch, dtype=args.dtype)
    _report(write_imported(ops, args.out, str(args.topology)), args.out)
    return 0


def cmd_chakra(args: argparse.Namespace) -> int:
    from sim.importers import check_output, write_imported
    from sim.importers.chakra import convert
    check_output(args.out)
    ops = convert(args.prefix, comm_groups=args.comm_groups, reprice=args.reprice,
                  local_tier=args.local_tier, remote_tier=args.remote_tier)
    _report(write_imported(ops, args.out, f"{args.prefix}.*.et"), args.out)
    return 0


def cmd_kineto(args: argparse.Namespace) -> int:
    from sim.importers import check_output, write_imported
    from sim.importers.kineto import convert
    check_output(args.out)
    result = convert(args.files, reprice=args.reprice, dtype=args.dtype, step=args.step,
                     progress=not args.quiet and sys.stderr.isatty())
    trace = write_imported(result.ops, args.out, ", ".join(args.files))
    _report(trace, args.out, f"; measured step {result.measured_step_s * 1e3:.3f} ms "
                             f"({result.window})")
    return 0


def register(sub) -> None:
    parser = sub.add_parser("import", help="convert Chakra, Kineto (PyTorch profiler) or SCALE-Sim files into a trace",
                            description="Convert another tool's workload into an accsim trace (.arrow or .jsonl). "
                                        "Bad input: one line naming the file and node/event/row, exit 2, nothing written.")
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")

    chakra = formats.add_parser("chakra", help="MLCommons Chakra execution traces, PREFIX.<rank>.et per rank",
                                description="Read PREFIX.0.et, PREFIX.1.et, ... (Chakra et_def protobuf: "
                                            "GlobalMetadata then Node messages, each length-delimited).")
    chakra.add_argument("prefix", help="path prefix of the per-rank files (ASTRA-sim's --workload-configuration)")
    chakra.add_argument("--out", required=True, help="output trace, .arrow or .jsonl")
    chakra.add_argument("--comm-groups", help="ASTRA-sim communicator-group JSON: {\"<pg_name>\": [ranks...]}")
    chakra.add_argument("--reprice", action="store_true",
                        help="price GPU compute nodes from num_ops and tensor_size on the replay device "
                             "instead of keeping duration_micros")
    chakra.add_argument("--local-tier", default="hbm", help="tier MEM_LOAD nodes write and MEM_STORE nodes read (hbm)")
    chakra.add_argument("--remote-tier", default="host", help="tier MEM_LOAD nodes read and MEM_STORE nodes write (host)")
    chakra.set_defaults(func=cmd_chakra)

    kineto = formats.add_parser("kineto", help="PyTorch profiler (Kineto) traces, one JSON per rank",
                                description="Read Chrome-trace JSON written by torch.profiler (.json or .json.gz, "
                                            "streamed), one file per rank in rank order.")
    kineto.add_argument("files", nargs="+", help="RANK0.json[.gz] [RANK1.json[.gz] ...]")
    kineto.add_argument("--out", required=True, help="output trace, .arrow or .jsonl")
    kineto.add_argument("--reprice", action="store_true",
                        help="drop the measured time of GEMMs whose shapes the trace records, so the "
                             "replay device's kernel model prices them; other ops keep their measured time")
    kineto.add_argument("--dtype", help="element type of repriced GEMMs (default: the recorded one)")
    kineto.add_argument("--step", type=int,
                        help="import only ProfilerStep#STEP (default: every profiled step)")
    kineto.add_argument("--quiet", action="store_true", help="no progress bar")
    kineto.set_defaults(func=cmd_kineto)

    scalesim = formats.add_parser("scalesim", help="SCALE-Sim topology CSV (convolution or GEMM layers)",
                                  description="Read a SCALE-Sim topology file: convolution rows (layer, IFMAP "
                                              "height, width, filter height, width, channels, filters, stride) "
                                              "or GEMM rows (layer, M, N, K).")
    scalesim.add_argument("topology", help="SCALE-Sim topology .csv")
    scalesim.add_argument("--out", required=True, help="output trace, .arrow or .jsonl")
    scalesim.add_argument("--layout", default="auto", choices=("auto", "conv", "gemm"),
                          help="row layout (auto: from the header)")
    scalesim.add_argument("--batch", type=int, default=1, help="images per convolution (default 1)")
    scalesim.add_argument("--dtype", default="bf16", help="element type (default bf16)")
    scalesim.set_defaults(func=cmd_scalesim)
