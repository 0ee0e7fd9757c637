"""Helpers of the fuzz suite (tests/test_fuzz.py): calling the command line in process and
as a subprocess, and the properties every call must have.

Every call must end with exit status 0 or 2 (never a traceback, never 1 or 3); an error is
exactly one line ``accsim: error: ...`` on stderr and leaves nothing written; a success
writes only finite numbers (summary.json is strict JSON, Arrow float columns finite). A
call still running after HANG_S is a hang (a generous bound that detects hangs; it is not
a speed requirement).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import yaml

from sim.cli import main

ROOT = Path(__file__).resolve().parents[1]
HANG_S = 60
CASES: Counter = Counter()     # cases run per surface (the suite asserts >= 1,000 in all)


class Hang(BaseException):
    """Raised in the main thread when a case runs past HANG_S (a BaseException, so
    the CLI's last line of defence does not turn it into an internal error)."""


@contextlib.contextmanager
def hang_guard(seconds: float = HANG_S):
    def alarm(signum, frame):
        raise Hang(f"still running after {seconds} s: a hang")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def accsim(*args, surface: str) -> tuple[int, str, str]:
    """``accsim ARGS`` in this process: (exit status, stdout, stderr)."""
    CASES[surface] += 1
    out, err = io.StringIO(), io.StringIO()
    with hang_guard(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def accsim_subprocess(*args, surface: str, cwd: Path = ROOT, hang_s: float = HANG_S) -> tuple[int, str, str]:
    """``python -m sim ARGS`` as a user runs it: (exit status, stdout, stderr); a run past
    ``hang_s`` is killed and reported as a hang. ``ACCSIM_QUIET=1``: a progress line (a
    stage still running after a second, as on a loaded machine) is not an error line."""
    CASES[surface] += 1
    try:
        proc = subprocess.run([sys.executable, "-m", "sim", *map(str, args)], cwd=cwd, capture_output=True,
                              text=True, timeout=hang_s, errors="backslashreplace",
                              env={**os.environ, "ACCSIM_QUIET": "1"})
    except subprocess.TimeoutExpired:
        raise AssertionError(f"accsim {' '.join(map(str, args))}: still running after {hang_s} s (a hang)")
    return proc.returncode, proc.stdout, proc.stderr


def check_error(code: int, err: str, what: str) -> str:
    """A refused input: exit 2 and exactly one line ``accsim: error: ...``."""
    assert "Traceback" not in err, f"{what}: a traceback:\n{err[-3000:]}"
    assert code == 2, f"{what}: exit status {code}, expected 2; stderr: {err[-2000:]}"
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("accsim: error: "), f"{what}: not one error line: {err!r}"
    assert len(lines[0]) <= 500, f"{what}: an error line of {len(lines[0])} characters"
    return lines[0]


def check_outcome(code: int, err: str, what: str) -> bool:
    """Exit 0 (True) or a clean refusal (False); anything else fails the case."""
    assert "Traceback" not in err, f"{what}: a traceback:\n{err[-3000:]}"
    assert code in (0, 2), f"{what}: exit status {code}; stderr: {err[-2000:]}"
    if code == 2:
        check_error(code, err, what)
    return code == 0


def _strict(constant: str):
    raise ValueError(f"non-finite JSON value {constant}")


def check_finite_outputs(folder: Path, what: str) -> None:
    """Everything a successful run wrote is finite: strict JSON, finite float columns."""
    for path in sorted(Path(folder).rglob("*")):
        if path.suffix == ".json":
            json.loads(path.read_text(), parse_constant=_strict)
        elif path.suffix == ".arrow":
            with open(path, "rb") as fh:
                table = ipc.open_file(fh).read_all()
            for field in table.schema:
                if pa.types.is_floating(field.type) and table.num_rows:
                    finite = pc.fill_null(pc.is_finite(table[field.name]), True)
                    assert pc.all(finite).as_py(), f"{what}: {path.name}.{field.name} holds NaN or infinity"


def nothing_written(folder: Path, before: set[str], what: str) -> None:
    """The folder holds exactly what it held before the failed call."""
    after = {p.name for p in Path(folder).iterdir()}
    assert after == before, f"{what}: a failed call left {sorted(after - before)}"


def dump_yaml(data) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def set_path(data: dict, path: tuple, value) -> dict:
    """A deep copy of ``data`` with ``value`` at the key path (creating mappings)."""
    import copy
    out = copy.deepcopy(data)
    node = out
    for key in path[:-1]:
        child = node.get(key) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value
    return out


def leaf_paths(data, prefix=()) -> list[tuple]:
    """Key paths of every value in nested mappings (lists count as values)."""
    if isinstance(data, dict) and data:
        return [p for key, value in data.items() for p in leaf_paths(value, prefix + (key,))] + [prefix]
    return [prefix]


def is_finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def listing(folder: Path) -> set[str]:
    return {p.name for p in Path(folder).iterdir()} if Path(folder).exists() else set()

