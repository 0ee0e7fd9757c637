"""nccl-tests output: read a saved log, print accsim's predictions in the same format.

nccl-tests (github.com/NVIDIA/nccl-tests) prints, per message size, one row
under a header naming its columns::

    # nThread 1 nGpus 8 minBytes 8 maxBytes 4294967296 step: 2(factor) ...
    #       size         count      type   redop    root     time   algbw   busbw #wrong     time ...
    #        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us) ...
               8             2     float     sum      -1    40.12    0.00    0.00      0    38.85 ...

The parser is driven by the header: it takes ``size``, the first ``time``,
``algbw`` and ``busbw`` (out-of-place), and ``algorithm`` / ``protocol``
where present (accsim's own table adds them), so older layouts without
``redop`` / ``root`` read too. The header line ``nGpus`` is how many GPUs one
process drives (nccl-tests ``-g``), the ``Rank`` lines count the ranks, and
``Collective test starting: NAME_perf`` (or the file name) names the
operation. Anything else is an error of one line naming the file and line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from sim.errors import AccsimError

MAX_LOG_BYTES = 8 * 2**20
# nccl-tests binary names -> accsim ops
TESTS = {"all_reduce": "allreduce", "all_gather": "allgather", "reduce_scatter": "reduce_scatter",
         "broadcast": "broadcast", "reduce": "reduce", "alltoall": "alltoall", "sendrecv": "sendrecv",
         "scatter": "scatter", "gather": "gather", "hypercube": "allgather"}
PERF_NAME = {op: f"{name}_perf" for name, op in TESTS.items() if name != "hypercube"}
REDUCING = ("allreduce", "reduce", "reduce_scatter")
_START = re.compile(r"Collective test starting:\s*([a-z_]+)_perf")
_GPUS = re.compile(r"\bnGpus\s+(\d+)")
_RANK = re.compile(r"^#\s*Rank\s+\d+\s+Group")


class NcclTestsError(AccsimError):
    """An nccl-tests log accsim cannot read."""


@dataclass(frozen=True)
class Row:
    """One size of an nccl-tests table (out-of-place figures)."""

    size_bytes: int
    time_s: float
    algbw_bytes_per_s: float
    busbw_bytes_per_s: float
    algorithm: str = ""
    protocol: str = ""


@dataclass(frozen=True)
class Log:
    op: str | None
    gpus_per_process: int
    ranks: int | None
    rows: tuple[Row, ...] = field(default_factory=tuple)


def read_log(path: str | Path) -> Log:
    """Parse a saved nccl-tests log file."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_LOG_BYTES:
            raise NcclTestsError(f"{path}: larger than {MAX_LOG_BYTES // 2**20} MiB; not an nccl-tests log")
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise NcclTestsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    log = parse(text, str(path))
    if log.op is None:
        stem = re.match(r"([a-z_]+?)_perf", path.name)
        if stem and stem.group(1) in TESTS:
            log = Log(TESTS[stem.group(1)], log.gpus_per_process, log.ranks, log.rows)
    return log


def parse(text: str, where: str = "log") -> Log:
    """Parse nccl-tests output (or accsim's table in its format)."""
    op, gpus, ranks = None, 1, 0
    columns: list[str] | None = None
    rows: list[Row] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            found = _START.search(stripped)
            if found and found.group(1) in TESTS:
                op = TESTS[found.group(1)]
            found = _GPUS.search(stripped)
            if found:
                gpus = int(found.group(1))
            if _RANK.match(stripped):
                ranks += 1
            tokens = stripped.lstrip("#").split()
            if "size" in tokens and "time" in tokens and "busbw" in tokens:
                columns = tokens
            continue
        if columns is None:
            continue                    # banners, NCCL INFO lines, MPI noise before the table
        tokens = stripped.split()
        if len(tokens) < 2 or not (tokens[0].isdigit() and tokens[1].isdigit()):
            continue                    # interleaved noise ("8 more processes have sent ...")
        rows.append(_row(tokens, columns, where, number))
    if not rows:
        raise NcclTestsError(f"{where}: no nccl-tests result rows found (expected a header line "
                             f"'# size count type ... time algbw busbw' and rows under it)")
    return Log(op, gpus, ranks or None, tuple(rows))


def _row(tokens: list[str], columns: list[str], where: str, number: int) -> Row:
    if len(tokens) < columns.index("busbw") + 1:
        raise NcclTestsError(f"{where}:{number}: expected {len(columns)} columns "
                             f"({' '.join(columns)}), got {len(tokens)}")

    def number_at(name: str) -> float:
        text = tokens[columns.index(name)]
        try:
            value = float(text)
        except ValueError:
            raise NcclTestsError(f"{where}:{number}: column {name}: expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0:
            raise NcclTestsError(f"{where}:{number}: column {name}: expected a non-negative number, got {text!r}")
        return value

    size = number_at("size")
    if size != int(size) or size > 2**62:
        raise NcclTestsError(f"{where}:{number}: column size: expected a byte count, got {tokens[0]!r}")
    time_us = number_at("time")
    if time_us <= 0:
        raise NcclTestsError(f"{where}:{number}: column time: expected a positive time in us, got {time_us}")
    extra = {name: tokens[columns.index(name)] for name in ("algorithm", "protocol")
             if name in columns and columns.index(name) < len(tokens)}
    return Row(int(size), time_us * 1e-6, number_at("algbw") * 1e9, number_at("busbw") * 1e9, **extra)


# ---------------------------------------------------------------- printing


def _time_text(time_us: float) -> str:
    """nccl-tests' time format: 2 decimals below 100 us, 1 below 10 ms, none above."""
    if time_us >= 10000:
        return f"{time_us:7.0f}"
    if time_us >= 100:
        return f"{time_us:7.1f}"
    return f"{time_us:7.2f}"


def header(op: str, ranks: int, gpus_per_process: int, title: str = "") -> list[str]:
    perf = PERF_NAME.get(op, f"{op}_perf")
    lines = [f"# accsim prediction of {perf} on {ranks} ranks{(': ' + title) if title else ''}",
             f"# Collective test starting: {perf}",
             f"# nThread 1 nGpus {gpus_per_process} ranks {ranks}",
             "#",
             f"# {'size':>10}  {'count':>12}  {'type':>8}  {'redop':>6}  {'root':>6}  {'time':>7}  "
             f"{'algbw':>6}  {'busbw':>6}  {'algorithm':>14}  {'protocol':>8}",
             f"# {'(B)':>10}  {'(elements)':>12}  {'':>8}  {'':>6}  {'':>6}  {'(us)':>7}  "
             f"{'(GB/s)':>6}  {'(GB/s)':>6}"]
    return lines


def row_text(op: str, size: int, time_s: float, algbw: float, busbw: float, algorithm: str,
             protocol: str) -> str:
    kind, width = ("float", 4) if size % 4 == 0 else ("int8", 1)
    redop = "sum" if op in REDUCING else "none"
    root = 0 if op in ("broadcast", "reduce") else -1
    return (f"{size:>12}  {size // width:>12}  {kind:>8}  {redop:>6}  {root:>6}  "
            f"{_time_text(time_s * 1e6)}  {algbw / 1e9:6.2f}  {busbw / 1e9:6.2f}  {algorithm:>14}  "
            f"{protocol or '-':>8}")
