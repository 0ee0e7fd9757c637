"""Outputs and start-up (issue 13): whole-process time of a small command, the
size of a big run directory, and the time of ``accsim perfetto`` on a big run.

    python benchmarks/outputs.py startup [--repeat 5] [--tree DIR ...]
    python benchmarks/outputs.py size RUN_DIR [RUN_DIR ...]
    python benchmarks/outputs.py perfetto RUN_DIR [--repeat 3] [--tree DIR ...]

``startup`` times ``python -m sim collective --topology dgx_a100 --op allreduce
--bytes 1GiB`` (8 ranks) as a whole process, wall, CPU (user + system of the
child) and peak resident memory, each the best of ``--repeat``; ``--tree``
(repeatable) runs the same command with another checkout of accsim first on
PYTHONPATH (e.g. the commit before a change), interleaved with this one, so a loaded machine affects both alike.
Bytecode: run once with PYTHONDONTWRITEBYTECODE unset (or ``python -m
compileall sim``) so both trees start from cached ``.pyc`` files, as an
installed wheel does.

``size`` prints each run directory's files and total in bytes and checks that
pyarrow, pandas and (if installed) polars read every ``.arrow`` table in it.

``perfetto`` times ``python -m sim perfetto RUN_DIR -o TMP.pftrace --quiet``
the same way (targets: 8-rank collective <= 0.25 s; Llama-2 70B / 64 H100 run
directory <= 40 MB; perfetto of the GPT-3 175B / 1,024 A100 run <= 5 s).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIVE = ["collective", "--topology", "dgx_a100", "--op", "allreduce", "--bytes", "1GiB"]


def timed_process(tree: Path, args: list[str]) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, peak RSS in MB) of the child ``python -m sim
    ARGS`` run with ``tree`` first on the path (its own rusage, from wait4)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "sim", *args], cwd=tree, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, child.args)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024      # Linux: ru_maxrss in KiB


def compare(trees: list[Path], args: list[str], repeat: int, label: str) -> None:
    best = {tree: (float("inf"), float("inf"), float("inf")) for tree in trees}
    for _ in range(repeat):
        for tree in trees:                     # interleaved: load hits every tree alike
            measured = timed_process(tree, args)
            best[tree] = tuple(min(a, b) for a, b in zip(best[tree], measured))
    print(f"{label}, best of {repeat}:")
    for tree in trees:
        wall, cpu, rss = best[tree]
        print(f"  {str(tree):<40} wall {wall:7.3f} s   cpu {cpu:7.3f} s   peak RSS {rss:7.1f} MB")


def size(run_dirs: list[Path]) -> None:
    import pyarrow.ipc as ipc
    for run_dir in run_dirs:
        files = sorted(p for p in run_dir.iterdir() if p.is_file())
        total = sum(p.stat().st_size for p in files)
        print(f"{run_dir}: {total:,} bytes ({total / 1e6:.1f} MB)")
        for path in files:
            print(f"  {path.name:<22} {path.stat().st_size:>14,}")
        for path in files:
            if path.suffix != ".arrow":
                continue
            with open(path, "rb") as fh:
                rows = ipc.open_file(fh).read_all().num_rows
            readers = [f"pyarrow {rows} rows"]
            try:
                import pandas
                readers.append(f"pandas {len(pandas.read_feather(path))}")
            except ImportError:
                pass
            try:
                import polars
                readers.append(f"polars {polars.read_ipc(path).height}")
            except ImportError:
                pass
            print(f"  read {path.name}: " + ", ".join(readers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["startup", "size", "perfetto"])
    parser.add_argument("run_dirs", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tree", action="append", type=Path, default=[],
                        help="another accsim checkout to compare with (repeatable)")
    args = parser.parse_args()
    trees = [ROOT, *[t.resolve() for t in args.tree]]
    if args.what == "startup":
        compare(trees, COLLECTIVE, args.repeat, "accsim " + " ".join(COLLECTIVE))
    elif args.what == "size":
        size(args.run_dirs)
    else:
        for run_dir in args.run_dirs:
            with tempfile.TemporaryDirectory() as tmp:
                command = ["perfetto", str(run_dir.resolve()), "-o", str(Path(tmp) / "trace.pftrace"), "--quiet"]
                compare(trees, command, args.repeat, f"accsim perfetto {run_dir}")


if __name__ == "__main__":
    main()
