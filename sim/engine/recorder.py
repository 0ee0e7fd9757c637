"""Timeline recording: rows buffered as tuples, flushed to Arrow record batches.

Appending one tuple per (op, unit) interval keeps recording off the event
loop's critical path; every ``batch_rows`` rows become one columnar
``pyarrow.RecordBatch``. A run's own timeline (devices' and collectives' rows
of trace ops) is built by ``TimelineBuilder`` from numpy arrays instead, in the
same record batches.

The batches' buffers come from the system allocator rather than pyarrow's
default (mimalloc), which kept about 150 MiB more resident while a 1.5M-row
timeline was built from Python lists (GPT 1T / 3,072 folded: peak RSS 1,636 ->
1,534 MiB): columns are numpy arrays (``sim.reports.arrays``, which also keeps
pandas out of a run: ``pa.array`` imports it) and the results of ``pc.take`` and
``pa.concat_arrays`` come from ``pa.system_memory_pool()``; the arrays and their
bytes are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sim.reports.arrays import coded_strings, column, dictionary_chunks, numbers

TIMELINE_SCHEMA = pa.schema([
    pa.field("device", pa.string(), nullable=False),
    pa.field("unit", pa.string(), nullable=False),
    pa.field("op_id", pa.int64(), nullable=False),
    pa.field("name", pa.string(), nullable=False),
    pa.field("category", pa.string(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("flops", pa.float64(), nullable=False),
    pa.field("bytes", pa.float64(), nullable=False),
    pa.field("stream", pa.int64(), nullable=False),
    pa.field("units_held", pa.int64(), nullable=False),
    pa.field("layer", pa.int64()),
    pa.field("stage", pa.int64()),
    pa.field("microbatch", pa.int64()),
    pa.field("phase", pa.string()),
    pa.field("detail", pa.string()),
])
NO_CONTEXT = (None, None, None, None, None)
# A run's own timeline (``TimelineBuilder``, ``Result.timeline`` of a training run) holds these string
# columns as dictionary<int32, string>, as the run directory's files store every string column
# (sim.reports.writer.encode_dictionaries): each repeats a few hundred values over up to millions of
# rows, so int32 indices take 4 bytes a row where strings took 7 to 14 (GPT 1T / 3,072 folded: 1.58M
# rows, 75 -> 32 MB). ``name`` stays a plain string: a generated trace's op names are all distinct.
DICTIONARY_COLUMNS = ("device", "unit", "category", "phase", "detail")
RUN_TIMELINE_SCHEMA = pa.schema([
    pa.field(f.name, pa.dictionary(pa.int32(), pa.string()), f.nullable) if f.name in DICTIONARY_COLUMNS else f
    for f in TIMELINE_SCHEMA])


def _batch(columns) -> pa.RecordBatch:
    """A timeline record batch from one sequence per TIMELINE_SCHEMA column, in schema order."""
    return pa.RecordBatch.from_arrays([column(values, f.type) for values, f in zip(columns, TIMELINE_SCHEMA)],
                                      schema=TIMELINE_SCHEMA)


class TimelineRecorder:
    """Collects timeline rows (see TIMELINE_SCHEMA) in columnar batches."""

    def __init__(self, batch_rows: int = 65536):
        self.batch_rows = batch_rows
        self._rows: list[tuple] = []
        self._batches: list[pa.RecordBatch] = []

    def record(self, device: str, unit: str, op_id: int, name: str, category: str,
               start_s: float, end_s: float, flops: float, nbytes: float, stream: int,
               units_held: int = 1, context: tuple = NO_CONTEXT) -> None:
        """One row; ``context`` is (layer, stage, microbatch, phase, detail)."""
        self._rows.append((device, unit, op_id, name, category, start_s, end_s,
                           float(flops), float(nbytes), stream, units_held) + tuple(context))
        if len(self._rows) >= self.batch_rows:
            self._flush()

    def record_rows(self, rows: list[tuple]) -> None:
        """``record(*row)`` for each row (all twelve fields given), in one call:
        the same rows in the same batches."""
        converted = [(device, unit, op_id, name, category, start_s, end_s, float(flops), float(nbytes),
                      stream, units_held) + tuple(context)
                     for device, unit, op_id, name, category, start_s, end_s, flops, nbytes, stream,
                     units_held, context in rows]
        done = 0
        while done < len(converted):
            room = self.batch_rows - len(self._rows)
            self._rows.extend(converted[done:done + room])
            done += room
            if len(self._rows) >= self.batch_rows:
                self._flush()

    def record_columns(self, columns: dict[str, list]) -> None:
        """Many rows at once, given as one list per column of TIMELINE_SCHEMA, as one batch."""
        self._flush()
        if columns and len(next(iter(columns.values()))):
            self._batches.append(_batch([columns[f.name] for f in TIMELINE_SCHEMA]))

    def _flush(self) -> None:
        if not self._rows:
            return
        self._batches.append(_batch(list(zip(*self._rows))))
        self._rows = []

    def table(self) -> pa.Table:
        self._flush()
        return pa.Table.from_batches(self._batches, schema=TIMELINE_SCHEMA)


# the columns of an op's rows that are the op's own attributes: column -> Op attribute
OP_COLUMNS = {"op_id": "id", "name": "name", "stream": "stream", "layer": "layer", "stage": "stage",
              "microbatch": "microbatch", "phase": "phase"}
ROW_STRINGS = ("device", "unit", "category", "detail")
ROW_NUMBERS = ("start_s", "end_s", "flops", "bytes", "units_held")


@dataclass(frozen=True)
class OpRows:
    """Timeline rows of trace ops as arrays with one entry per row.

    ``position``: the op's position in the trace (its ``op_id``, ``name``,
    ``stream``, ``layer``, ``stage``, ``microbatch`` and ``phase`` are the
    op's). ``device``, ``unit``, ``category`` and ``detail``: (codes, names),
    int32 codes into the list of names (``detail`` -1: null; None: all null).
    ``start_s``, ``end_s``, ``flops`` and ``bytes`` float64, ``units_held`` int64."""

    position: np.ndarray
    device: tuple[np.ndarray, Sequence[str]]
    unit: tuple[np.ndarray, Sequence[str]]
    category: tuple[np.ndarray, Sequence[str]]
    start_s: np.ndarray
    end_s: np.ndarray
    flops: np.ndarray
    bytes: np.ndarray
    units_held: np.ndarray
    detail: tuple[np.ndarray, Sequence[str]] | None = None

    def __len__(self) -> int:
        return len(self.position)


class TimelineBuilder:
    """A run's timeline (TIMELINE_SCHEMA) from arrays of rows, in the record
    batches ``TimelineRecorder`` makes: ``add_batch`` as its ``record_columns``
    (one batch), ``add_stream`` and ``add_row_tuples`` as its ``record_rows``
    (rows continue the pending batch, cut every ``batch_rows`` rows).

    ``table()`` builds the table one column at a time: an op attribute's
    column is read from every op of the trace in trace order (the order the
    ops lie in memory; reading them in the order they ran was three times
    slower) into one Arrow array, taken by row positions into each batch and
    dropped before the next column. Building a Python tuple per row, and the
    lists of a batch's columns from them, took about three quarters of the
    time after the event loop (GPT-3 175B: 0.8 of 1.4 s)."""

    def __init__(self, ops: Sequence, batch_rows: int = 65536):
        self.ops = ops
        self.batch_rows = batch_rows
        self._parts: list[OpRows | list] = []     # OpRows, or a row tuple per column (add_row_tuples)
        self._batches: list[list[tuple[int, int, int]]] = []   # per batch: (part, first row, end row)
        self._pending = 0          # rows in the last batch, still open to more rows (0: none open)

    def add_batch(self, rows: OpRows) -> None:
        """``rows`` as one record batch of their own (none when empty)."""
        self._pending = 0
        if len(rows):
            self._parts.append(rows)
            self._batches.append([(len(self._parts) - 1, 0, len(rows))])

    def add_stream(self, rows: OpRows) -> None:
        """``rows`` continuing the open batch, a new one every ``batch_rows`` rows."""
        self._parts.append(rows)
        self._stream(len(rows))

    def add_row_tuples(self, rows: Sequence[tuple]) -> None:
        """Rows as ``TimelineRecorder.record_rows`` takes them (twelve fields, the
        last the context (layer, stage, microbatch, phase, detail)), streamed like ``add_stream``."""
        if not rows:
            return
        columns = list(zip(*rows))
        columns[11:] = zip(*columns[11])
        self._parts.append(columns)
        self._stream(len(rows))

    def _stream(self, count: int) -> None:
        part, done = len(self._parts) - 1, 0
        while done < count:
            if not self._pending:
                self._batches.append([])
            end = min(count, done + self.batch_rows - self._pending)
            self._batches[-1].append((part, done, end))
            self._pending = (self._pending + end - done) % self.batch_rows
            done = end

    def table(self) -> pa.Table:
        """The timeline (RUN_TIMELINE_SCHEMA: DICTIONARY_COLUMNS dictionary-encoded, one dictionary per column)."""
        if not self._batches:
            return RUN_TIMELINE_SCHEMA.empty_table()
        columns = []
        for f, typed in zip(TIMELINE_SCHEMA, RUN_TIMELINE_SCHEMA):
            chunks = self._column(f)
            columns.append(pa.chunked_array(dictionary_chunks(chunks) if f.name in DICTIONARY_COLUMNS else chunks,
                                            type=typed.type))
        return pa.Table.from_arrays(columns, schema=RUN_TIMELINE_SCHEMA)

    def _column(self, f: pa.Field) -> list[pa.Array]:
        """The chunks (one per batch) of column ``f``."""
        trace_wide = None
        if f.name in OP_COLUMNS and any(isinstance(p, OpRows) for p in self._parts):
            trace_wide = column(list(map(attrgetter(OP_COLUMNS[f.name]), self.ops)), f.type)
        index = TIMELINE_SCHEMA.names.index(f.name)
        chunks = []
        for batch in self._batches:
            pieces = []
            for part, first, end in batch:
                rows = self._parts[part]
                if not isinstance(rows, OpRows):
                    pieces.append(column(rows[index][first:end], f.type))
                elif trace_wide is not None:
                    pieces.append(_take(trace_wide, rows.position[first:end]))
                else:
                    pieces.append(_row_column(rows, f, first, end))
            chunks.append(pieces[0] if len(pieces) == 1 else
                          pa.concat_arrays(pieces, memory_pool=pa.system_memory_pool()))
        return chunks


def _take(values: pa.Array, positions: np.ndarray) -> pa.Array:
    return pc.take(values, numbers(positions, pa.int64()), memory_pool=pa.system_memory_pool())


def _row_column(rows: OpRows, f: pa.Field, first: int, end: int) -> pa.Array:
    """Rows ``first:end`` of ``rows``' own column ``f`` (not an op attribute)."""
    if f.name in ROW_NUMBERS:
        return numbers(getattr(rows, f.name)[first:end], f.type)
    coded = getattr(rows, f.name)
    if coded is None:
        return pa.nulls(end - first, f.type, memory_pool=pa.system_memory_pool())
    codes, names = coded
    return coded_strings(names, codes[first:end])     # detail: a negative code is a null
