"""Importers: other tools' workload files as ordinary accsim traces.

One module per format, each with a ``convert(...) -> list[Op]`` that reads
and checks its input and an entry used by ``accsim import`` (sim/cli/importer.py):

- ``chakra``: MLCommons Chakra execution traces (what ASTRA-sim replays), one
  protobuf file per rank (sim/importers/chakra.py, schema in chakra_schema.py);
- ``kineto``: PyTorch profiler (Kineto) Chrome-trace JSON, streamed
  (sim/importers/kineto.py);
- ``scalesim``: SCALE-Sim topology CSV files, convolution and GEMM layers
  (sim/importers/scalesim.py).

The mappings, field by field, are in docs/trace-format.md ("Importing"). Every
importer validates the whole input before writing, reports the first problem
as one line naming the file, the node, event or row and what was expected
(``TraceImportError``, exit status 2), and writes its output atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from sim.errors import AccsimError

OUTPUT_SUFFIXES = (".arrow", ".jsonl")


class TraceImportError(AccsimError):
    """An input file another tool wrote that cannot be imported as it is."""


def check_output(path: str | Path) -> Path:
    """The output path, if accsim can write a trace there; else TraceImportError."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise TraceImportError(f"{path}: output must end in .arrow or .jsonl")
    if not path.parent.is_dir():
        raise TraceImportError(f"{path}: the folder {path.parent} does not exist")
    return path


def write_imported(ops: Sequence, out: str | Path, source: str):
    """Validate ``ops`` as a trace (ids, dependencies, cycles) and write them
    atomically to ``out``; returns the Trace. Nothing is written on error."""
    from sim.workload.trace import validate_ops, write_trace

    trace = validate_ops(list(ops), source)
    write_trace(trace.ops, check_output(out))
    return trace


def match_across_ranks(group, by_rank, signature, count_error, mismatch_error):
    """The k-th call on a communicator in each member's trace is one collective:
    yield the list of calls (one per member, in ``group`` order) for k = 0, 1, ...

    ``by_rank`` maps a rank to its calls in order; ``signature(call)`` is what
    must agree across ranks (type, size). A member with fewer or more calls
    raises ``count_error(few_rank, many_rank, counts)``; a disagreement
    ``mismatch_error(k, call, first_call)``; both return the TraceImportError.
    """
    counts = {r: len(by_rank.get(r, [])) for r in group}
    if len(set(counts.values())) > 1:
        few, many = min(group, key=counts.get), max(group, key=counts.get)
        raise count_error(few, many, counts)
    for k in range(counts[group[0]]):
        calls = [by_rank[r][k] for r in group]
        for call in calls[1:]:
            if signature(call) != signature(calls[0]):
                raise mismatch_error(k, call, calls[0])
        yield calls
