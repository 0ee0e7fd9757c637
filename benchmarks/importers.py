"""Import speed and memory: a Kineto trace of a given size, streamed.

    python benchmarks/importers.py [--size-mb 1024] [--sizes 100,1024] [--keep DIR]

For each size it writes a synthetic GPU training trace of about that many
megabytes (sim/importers/kineto_synth.py: steps of 100 layers, per layer a GEMM kernel with its
aten::mm, cudaLaunchKernel, ac2g flows, python_function stack events, an
event record and stream wait, record_param_comms and an NCCL all-reduce
kernel; the composition of a real trace recorded with shapes and stacks),
then runs ``accsim import kineto FILE --out FILE.arrow`` in a child process and
prints its wall time, throughput and peak resident memory (the child's
ru_maxrss), and, for the smallest size, the peak memory of ``json.load`` of
the same file, the non-streaming alternative. It also times the Chakra and
SCALE-Sim imports of the shipped examples. Results: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.importers.kineto_synth import Step, write  # noqa: E402

PADDING = 40             # python_function (stack) events per kernel launch, as with_stack=True records
BYTES_PER_LAYER = 11_034  # measured for PADDING = 40: about 53 events of 210 bytes per layer


def child(code_or_args: list[str]) -> tuple[float, float, str]:
    """Run a child python; (wall s, peak RSS MiB, stdout)."""
    script = ("import resource, subprocess, sys, time\n"
              "start = time.perf_counter()\n"
              "proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
              "wall = time.perf_counter() - start\n"
              "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
              "print(f'{wall} {peak}'); print(proc.stdout.strip()); print(proc.stderr.strip()[-300:])\n"
              "sys.exit(proc.returncode)\n")
    proc = subprocess.run([sys.executable, "-c", script, *code_or_args], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(code_or_args)}\n{proc.stdout}")
    first, rest = proc.stdout.split("\n", 1)
    wall, peak = map(float, first.split())
    return wall, peak, rest.strip()


def kineto(size_mb: float, folder: Path, compare_json: bool) -> None:
    steps = max(1, int(size_mb * 1e6 / BYTES_PER_LAYER / 100))
    start = time.perf_counter()
    (path,) = write(Step(ranks=1, layers=100, steps=steps, padding=PADDING), folder, stem=f"bench{int(size_mb)}_")
    made = time.perf_counter() - start
    size = path.stat().st_size / 1e6
    out = path.with_suffix(".arrow")
    wall, peak, text = child([sys.executable, "-m", "sim", "import", "kineto", str(path), "--out", str(out),
                              "--quiet"])
    ops = text.split(":")[1].split(" ops")[0].strip() if ":" in text else "?"
    print(f"kineto  {size:>9.1f} MB  {ops:>9} ops  import {wall:>7.1f} s  {size / wall:>6.1f} MB/s  "
          f"peak RSS {peak:>7.0f} MiB  (written in {made:.0f} s)")
    if compare_json:
        code = f"import json; json.load(open({str(path)!r}))"
        wall, peak, _ = child([sys.executable, "-c", code])
        print(f"json.load of the same file: {wall:.1f} s, peak RSS {peak:.0f} MiB")
    out.unlink(missing_ok=True)


def shipped() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for args in (["chakra", "traces/chakra_dp", "--comm-groups", "traces/chakra_dp.comm_groups.json"],
                     ["scalesim", "traces/resnet50.csv"],
                     ["kineto", "traces/kineto_tiny_transformer.json.gz", "--quiet"]):
            wall, peak, text = child([sys.executable, "-m", "sim", "import", *args, "--out",
                                      str(Path(tmp) / "o.arrow")])
            print(f"{args[0]:<8} {args[1]:<40} {wall:>6.2f} s  peak RSS {peak:>5.0f} MiB  ({text.split(':')[1][:40].strip()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1024", help="trace sizes in MB, comma-separated")
    parser.add_argument("--keep", type=Path, help="write the traces here (default: a temporary folder)")
    args = parser.parse_args()
    os.chdir(ROOT)
    shipped()
    sizes = [float(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        for i, size in enumerate(sizes):
            kineto(size, folder, compare_json=i == 0)
            if args.keep is None:
                for path in folder.glob("bench*"):
                    path.unlink()


if __name__ == "__main__":
    main()
