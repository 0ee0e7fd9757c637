"""Derived tables of a run: bubbles, utilization and memory, with their schemas.

All three are computed after the simulation from the timeline and the per-op
start/end times, so recording stays cheap during the run. Schemas are
documented in docs/architecture.md. Arrays are built and read with
``sim.reports.arrays`` (no pandas import; see there).
"""

from __future__ import annotations

import math
from array import array
from operator import attrgetter
from typing import Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sim.reports import arrays
from sim.reports.arrays import to_numpy

BUBBLES_SCHEMA = pa.schema([
    pa.field("device", pa.string(), nullable=False),
    pa.field("unit", pa.string(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("duration_s", pa.float64(), nullable=False),
    pa.field("cause", pa.string(), nullable=False),
    pa.field("next_op_id", pa.int64()),
    pa.field("stage", pa.int64()),
    pa.field("microbatch", pa.int64()),
])

UTILIZATION_SCHEMA = pa.schema([
    pa.field("device", pa.string(), nullable=False),
    pa.field("unit", pa.string(), nullable=False),
    pa.field("category", pa.string(), nullable=False),
    pa.field("ops", pa.int64(), nullable=False),
    pa.field("busy_s", pa.float64(), nullable=False),
    pa.field("span_s", pa.float64(), nullable=False),
    pa.field("utilization", pa.float64(), nullable=False),
    pa.field("achieved_flops_per_s", pa.float64(), nullable=False),
    pa.field("peak_flops_per_s", pa.float64()),
    pa.field("achieved_bytes_per_s", pa.float64(), nullable=False),
    pa.field("peak_bytes_per_s", pa.float64()),
])

MEMORY_SCHEMA = pa.schema([
    pa.field("device", pa.string(), nullable=False),
    pa.field("tier", pa.string(), nullable=False),
    pa.field("time_s", pa.float64(), nullable=False),
    pa.field("used_bytes", pa.int64(), nullable=False),
    pa.field("capacity_bytes", pa.int64(), nullable=False),
])

WAIT_CAUSE = {"compute": "dependency_wait", "memory": "memory_wait", "comm": "comm_wait",
              "host": "host_wait"}  # host: the device waited for its host thread to issue the work


def string_codes(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list]:
    """(per-row code (int32), distinct names in order of first appearance) of a
    string column from its dictionary encoding, a chunk at a time
    (``arrays.first_appearance_codes``); a null gets code ``len(names)``."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    codes = np.empty(len(column), dtype=np.int32)
    names = arrays.first_appearance_codes(chunks, codes)
    codes[codes < 0] = len(names)
    return codes, names


def shared_strings(column: pa.ChunkedArray | pa.Array) -> list:
    """A string column's values (None for nulls) as a list in which equal
    strings are one object, made from its dictionary encoding. A timeline has
    millions of rows and a few thousand distinct device and unit names, so
    ``to_pylist()``, with a new string per row, cost about 60 bytes a row and
    most of the time."""
    codes, names = string_codes(column)
    return np.array(names + [None], dtype=object)[codes].tolist()


def merge_intervals(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Union of intervals; returns (starts, ends, index of the first input
    interval of each merged one), with inputs sorted by start."""
    order = np.lexsort((ends, starts))
    s, e = starts[order], ends[order]
    running_end = np.maximum.accumulate(e)
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] > running_end[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(s)) - 1
    return s[first], running_end[last], order[first]


def bubbles_table(timeline: pa.Table, makespan_s: float, ready_s: Sequence[float],
                  blocker: Sequence[int], trace, start_s: Sequence[float],
                  compute_units: Iterable[tuple[str, str]],
                  pipeline: bool = False) -> pa.Table:
    """Idle intervals of every compute unit within [0, makespan], with a cause.

    Per op, by its position in ``trace.ops``: ``ready_s`` (when its last
    predecessor finished), ``blocker`` (that predecessor's position, -1 for
    none) and ``start_s``.

    For a gap that ends when op X starts on the unit:
    - X was ready before the gap began: ``resource_wait`` (it waited for units);
    - X waited for a predecessor (its deps or stream predecessor; the one that
      finished last is its blocker): ``memory_wait`` if the blocker is a
      copy; if the blocker is a collective, the part of the gap during which
      the collective ran is ``comm_wait`` and the part before it
      ``dependency_wait``; otherwise ``dependency_wait``.
    In pipeline runs the gap before a unit's first op is ``pipeline_fill``
    and the gap after its last op ``pipeline_drain``; elsewhere the latter is
    ``no_work``. ``stage`` and ``microbatch`` are those of X.
    The gaps of a unit are found with numpy, and each gap's cause decided
    for all gaps at once from per-gap arrays (a Python loop over the merged
    intervals of every unit was a fifth of the time after the event loop);
    each expression is the one the loop evaluated, so the bytes are the same.
    """
    # the compute rows' columns read with numpy through a mask from the category's int32 codes (a
    # filtered table of them, then numpy copies of it, held about 40 MB at once on GPT 1T)
    category, categories = string_codes(timeline["category"])
    compute = category == (categories.index("compute") if "compute" in categories else -1)
    del category
    tolerance = 1e-12 * max(1.0, makespan_s)
    starts_all = to_numpy(timeline["start_s"])[compute]
    ends_all = to_numpy(timeline["end_s"])[compute]
    positions_all = trace.positions_of(to_numpy(timeline["op_id"])[compute])
    rows_of = _rows_by_unit(timeline, compute)
    del compute
    ready_s = np.frombuffer(ready_s, dtype=np.float64) if isinstance(ready_s, array) else np.asarray(ready_s)
    blocker = np.frombuffer(blocker, dtype=np.int64) if isinstance(blocker, array) else np.asarray(blocker)
    start_s = np.frombuffer(start_s, dtype=np.float64) if isinstance(start_s, array) else np.asarray(start_s)
    # every unit's gaps in order, its drain after them: (unit number, start, end, position of the op
    # after the gap (-1: none), kind: 0 a gap, 1 the first gap of a pipeline unit, 2 the drain)
    gaps: list[tuple] = []
    units = list(compute_units)
    for number, (device, unit) in enumerate(units):
        picked = rows_of(device, unit)
        if len(picked):
            m_start, m_end, first = merge_intervals(starts_all[picked], ends_all[picked])
        else:
            m_start, m_end, first = np.empty(0), np.empty(0), np.empty(0, dtype=np.int64)
        # before merged interval k the cursor is the end of interval k-1 (they are disjoint and sorted)
        cursor = np.concatenate([[0.0], m_end[:-1]])
        gap = m_start - cursor > tolerance
        kind = np.zeros(int(gap.sum()), dtype=np.int8)
        if pipeline and len(gap) and gap[0]:
            kind[0] = 1
        gaps.append((np.full(len(kind), number), cursor[gap], m_start[gap], positions_all[picked][first[gap]],
                     kind))
        end = float(m_end[-1]) if len(m_end) else 0.0
        if makespan_s - end > tolerance:
            gaps.append((np.array([number]), np.array([end]), np.array([makespan_s]), np.array([-1]),
                         np.array([2], dtype=np.int8)))
    number, cursor, begin, position, kind = (np.concatenate([g[k] for g in gaps]) if gaps else np.empty(0)
                                             for k in range(5))
    number, position = number.astype(np.int64), position.astype(np.int64)
    ready_s, blocker, start_s = (np.frombuffer(x, dtype=np.float64 if x.typecode == "d" else np.int64)
                                 if isinstance(x, array) else np.asarray(x) for x in (ready_s, blocker, start_s))
    cause = np.full(len(begin), CAUSES.index("resource_wait"))
    cause[kind == 1] = CAUSES.index("pipeline_fill")
    cause[kind == 2] = CAUSES.index("pipeline_drain" if pipeline else "no_work")
    waited = (kind == 0)
    waited[waited] = ready_s[position[waited]] > cursor[waited] + tolerance
    last = blocker[position[waited]]
    category = np.array([WAIT_CAUSE_CODE[c] for c in op_values(trace.ops, last, "category")], dtype=np.int64)
    cause[waited] = category
    # a collective blocker: dependency_wait before it started, comm_wait while it ran
    comm = np.zeros(len(begin), dtype=bool)
    comm[np.flatnonzero(waited)[category == CAUSES.index("comm_wait")]] = True
    split = begin.copy()
    at = start_s[blocker[position[comm]]]
    at = np.where(cursor[comm] > at, cursor[comm], at)              # max(start, cursor), as Python's max
    split[comm] = np.where(begin[comm] < at, begin[comm], at)      # min(that, begin)
    cause[comm] = CAUSES.index("dependency_wait")
    # each gap's first row (unless a collective's part before it started is too short), then the
    # comm_wait part of a gap a collective ended (unless too short)
    keep_first = ~comm | (split - cursor > tolerance)
    keep_second = comm & (begin - split > tolerance)
    count = keep_first.astype(np.int64) + keep_second
    at_first = (np.cumsum(count) - count)[keep_first]
    at_second = (np.cumsum(count) - count + keep_first)[keep_second]
    rows = int(count.sum())
    columns = {"start_s": np.empty(rows), "end_s": np.empty(rows), "cause": np.empty(rows, dtype=np.int64),
               "number": np.empty(rows, dtype=np.int64), "position": np.empty(rows, dtype=np.int64)}
    for at, keep, values in ((at_first, keep_first, (cursor, split, cause)),
                             (at_second, keep_second, (split, begin, CAUSES.index("comm_wait")))):
        for name, value in zip(("start_s", "end_s", "cause"), values):
            columns[name][at] = value[keep] if isinstance(value, np.ndarray) else value
        columns["number"][at] = number[keep]
        columns["position"][at] = position[keep]
    return _bubbles_table(columns, units, trace)


CAUSES = ("pipeline_fill", "resource_wait", "dependency_wait", "comm_wait", "memory_wait", "host_wait",
          "pipeline_drain", "no_work")
WAIT_CAUSE_CODE = {category: CAUSES.index(cause) for category, cause in WAIT_CAUSE.items()}


def _bubbles_table(columns: dict[str, np.ndarray], units: list[tuple[str, str]], trace) -> pa.Table:
    """The bubbles table from per-row arrays: start_s, end_s, cause (index in
    CAUSES), number (of the unit in ``units``) and position (of the op after
    the gap in ``trace``, -1: none)."""
    number, position = columns["number"], columns["position"]
    start, end = columns["start_s"], columns["end_s"]
    strings = arrays.coded_strings
    return arrays.table({
        "device": strings([u[0] for u in units], number), "unit": strings([u[1] for u in units], number),
        "start_s": start, "end_s": end, "duration_s": end - start,
        "cause": strings(CAUSES, columns["cause"]),
        **op_arrays(trace.ops, position, {"next_op_id": "id", "stage": "stage", "microbatch": "microbatch"})},
        schema=BUBBLES_SCHEMA)


def op_values(ops, positions: np.ndarray, attribute: str | Callable) -> list:
    """``getattr(ops[p], attribute)`` (or ``attribute(ops[p])``) for each of
    ``positions``, read once per distinct op, in trace order (read several
    attributes in one pass with an ``operator.attrgetter``)."""
    distinct, inverse = np.unique(positions, return_inverse=True)
    get = attrgetter(attribute) if isinstance(attribute, str) else attribute
    values = [get(ops[p]) for p in distinct.tolist()]
    return [values[i] for i in inverse.reshape(-1).tolist()]


def op_arrays(ops, positions: np.ndarray, attributes: dict[str, str]) -> dict[str, pa.Array]:
    """Int64 Arrow arrays ``name: getattr(ops[p], attribute)`` for each of
    ``positions`` (null where a position is -1), each distinct op read once
    for all the attributes, in trace order."""
    distinct, inverse = np.unique(positions, return_inverse=True)
    get = attrgetter(*attributes.values())
    values = [get(ops[p]) if p >= 0 else (None,) * len(attributes) for p in distinct.tolist()]
    columns = zip(*values) if values else [()] * len(attributes)
    inverse = arrays.numbers(inverse.reshape(-1), pa.int64())
    return {name: pc.take(arrays.column(column, pa.int64()), inverse) for name, column in zip(attributes, columns)}


def _rows_by_unit(table: pa.Table, rows: np.ndarray):
    """A function (device, unit) -> the positions, among ``table``'s rows picked
    by the bool mask ``rows``, of that unit's rows, ascending; grouped by one
    stable sort of the dictionary codes rather than a Python tuple and list
    entry per row."""
    device_code, device_names = string_codes(table["device"])
    device_code = device_code[rows]
    unit_code, unit_names = string_codes(table["unit"])
    unit_code = unit_code[rows]
    key = device_code.astype(np.int64) * (len(unit_names) + 1) + unit_code
    del device_code, unit_code
    order = np.argsort(key, kind="stable")
    key = key[order]
    device_index = {name: i for i, name in enumerate(device_names)}
    unit_index = {name: i for i, name in enumerate(unit_names)}

    def rows(device: str, unit: str) -> np.ndarray:
        d, u = device_index.get(device), unit_index.get(unit)
        if d is None or u is None:
            return np.empty(0, dtype=np.int64)
        wanted = d * (len(unit_names) + 1) + u
        return order[np.searchsorted(key, wanted, "left"):np.searchsorted(key, wanted, "right")]
    return rows


def unit_codes(timeline: pa.Table, keys: Sequence[tuple[str, str]]) -> np.ndarray:
    """For each timeline row, the index (int32) of its (device, unit) in
    ``keys``, or -1, computed on the columns' int32 codes (``string_codes``) so
    no per-row Python object, and no int64 array of the rows, is made."""
    index = {key: i for i, key in enumerate(keys)}
    device, device_names = string_codes(timeline["device"])
    unit, unit_names = string_codes(timeline["unit"])
    table = np.full((len(device_names) + 1, len(unit_names) + 1), -1, dtype=np.int32)   # + 1: a null's code
    for d, dname in enumerate(device_names):
        for u, uname in enumerate(unit_names):
            table[d, u] = index.get((dname, uname), -1)
    return table[device, unit]


def grouped_busy(groups: np.ndarray, starts: np.ndarray, ends: np.ndarray, count: int,
                 chunk_rows: int = 1 << 18) -> np.ndarray:
    """Union length of the intervals of each group 0..count-1, vectorized:
    groups are laid end to end on one time axis (offset by group x span) so
    one running maximum merges the intervals of every group at once.

    Whole groups are merged about ``chunk_rows`` rows at a time: the groups'
    stretches of the axis are disjoint, so each chunk sorts and merges its
    rows exactly as one pass over all of them would, with a few arrays of a
    chunk alive at once rather than of every row (on GPT 1T's 1.6M rows
    about 90 MB)."""
    busy = np.zeros(count)
    if len(starts) == 0:
        return busy
    origin = min(float(starts.min()), 0.0)
    span = float(ends.max()) - origin + 1.0
    by_group = np.argsort(groups, kind="stable")
    # where each group's rows start among the sorted ones (a count per group, not a sorted copy of the groups)
    bounds = np.concatenate([[0], np.cumsum(np.bincount(groups, minlength=count))]).tolist()
    first_row = 0
    for number in range(1, count + 1):
        if bounds[number] - bounds[first_row] >= chunk_rows or number == count:
            rows = by_group[bounds[first_row]:bounds[number]]
            _merge_into(busy, groups[rows], starts[rows], ends[rows], origin, span)
            first_row = number
    return busy


def _merge_into(busy: np.ndarray, groups: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                origin: float, span: float) -> None:
    """Add to ``busy`` the union length of the intervals of each group (``grouped_busy``)."""
    if len(starts) == 0:
        return
    offset = groups * span
    s = starts - origin
    s += offset               # (starts - origin) + groups x span, in place
    e = ends - origin
    e += offset
    del offset
    order = np.argsort(s, kind="stable")
    s, e, g = s[order], e[order], groups[order]
    reach = np.maximum.accumulate(e)
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] > reach[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(s)) - 1
    np.add.at(busy, g[first], reach[last] - s[first])


def utilization_table(timeline: pa.Table, makespan_s: float,
                      units: Sequence[tuple[str, str, str, float | None, float | None]]) -> pa.Table:
    """Per (device, unit): busy time, span, achieved and peak FLOP/s and bytes/s.

    ``units`` lists (device, unit, category, peak_flops_per_s, peak_bytes_per_s)
    for every unit, used or not; a peak is null where there is none or it is
    unbounded (ideal links). ``busy_s`` is the union of the unit's
    intervals; achieved rates are totals over the span [0, makespan].
    """
    count = len(units)
    groups = unit_codes(timeline, [(u[0], u[1]) for u in units])
    keep = groups >= 0
    # the rows of listed units; usually every row, and then no masked copy of each column (4 x 12 MB on GPT 1T)
    kept = (lambda column: column) if keep.all() else (lambda column: column[keep])    # noqa: E731
    groups = kept(groups)
    starts = kept(to_numpy(timeline["start_s"]))
    ends = kept(to_numpy(timeline["end_s"]))
    busy = grouped_busy(groups, starts, ends, count)
    del starts, ends
    flops = np.bincount(groups, weights=kept(to_numpy(timeline["flops"])), minlength=count)
    nbytes = np.bincount(groups, weights=kept(to_numpy(timeline["bytes"])), minlength=count)
    rows_per = np.bincount(groups, minlength=count)
    span = makespan_s
    per_s = (lambda x: x / span) if span > 0 else (lambda x: x * 0.0)
    columns = {
        "device": [u[0] for u in units], "unit": [u[1] for u in units],
        "category": [u[2] for u in units], "ops": rows_per.tolist(),
        "busy_s": busy.tolist(), "span_s": [span] * count,
        "utilization": (busy / span if span > 0 else busy * 0.0).tolist(),
        "achieved_flops_per_s": per_s(flops).tolist(),
        "peak_flops_per_s": [_finite_or_none(u[3]) for u in units],
        "achieved_bytes_per_s": per_s(nbytes).tolist(),
        "peak_bytes_per_s": [_finite_or_none(u[4]) for u in units],
    }
    return arrays.table(columns, UTILIZATION_SCHEMA)


def _finite_or_none(value: float | None) -> float | None:
    """A peak rate, or None where there is none or it is unbounded (the links
    of an ``ideal`` cluster): outputs never hold infinity."""
    return value if value is not None and math.isfinite(value) else None


def memory_table(ledgers: Sequence) -> pa.Table:
    """Occupancy of every tier after each allocation or release."""
    rows: dict[str, list] = {f.name: [] for f in MEMORY_SCHEMA}
    for ledger in ledgers:
        if not ledger.history:
            continue
        time_s, tiers, used = zip(*ledger.history)
        rows["device"] += [ledger.device] * len(tiers)
        rows["tier"] += tiers
        rows["time_s"] += time_s
        rows["used_bytes"] += used
        rows["capacity_bytes"] += map(ledger.capacity.__getitem__, tiers)
    return arrays.table(rows, MEMORY_SCHEMA)
