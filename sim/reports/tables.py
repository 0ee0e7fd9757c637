"""Derived tables of a run: bubbles, utilization and memory, with their schemas.

All three are computed after the simulation from the timeline and the per-op
start/end times, so recording stays cheap during the run. Schemas are
documented in docs/architecture.md.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
    """(per-row code, distinct names) of a string column from its dictionary
    encoding; a null gets code ``len(names)``."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_dictionary(column.type):
        column = pc.dictionary_encode(column)
    names = column.dictionary.to_pylist()
    return column.indices.fill_null(len(names)).to_numpy(zero_copy_only=False).astype(np.int64), names


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
    """
    rows: list[tuple] = []
    add = rows.append
    # only the columns read below are filtered (not a copy of every column of a million rows)
    compute = timeline.select(["device", "unit", "op_id", "start_s", "end_s"]).filter(
        pc.equal(timeline["category"], "compute"))
    tolerance = 1e-12 * max(1.0, makespan_s)
    starts_all = compute["start_s"].to_numpy()
    ends_all = compute["end_s"].to_numpy()
    positions_all = trace.positions_of(compute["op_id"].to_numpy())
    trace_ops = trace.ops
    rows_of = _rows_by_unit(compute)
    for device, unit in compute_units:
        picked = rows_of(device, unit)
        starts, ends, positions = starts_all[picked], ends_all[picked], positions_all[picked].tolist()
        if len(starts):
            m_start, m_end, first = merge_intervals(starts, ends)
        else:
            m_start = m_end = first = np.empty(0)
        cursor = 0.0
        # Python floats and ints (exactly the arrays' values): numpy scalars are slow to compute with
        for number, (begin, finish, idx) in enumerate(zip(m_start.tolist(), m_end.tolist(), first.tolist())):
            if begin - cursor > tolerance:
                position = positions[idx]
                nxt = trace_ops[position]
                context = (nxt.id, nxt.stage, nxt.microbatch)
                if pipeline and number == 0:
                    add((device, unit, cursor, begin, begin - cursor, "pipeline_fill", *context))
                elif ready_s[position] <= cursor + tolerance:
                    add((device, unit, cursor, begin, begin - cursor, "resource_wait", *context))
                else:   # ready after the gap began, so it has predecessors
                    last = blocker[position]
                    category = trace_ops[last].category
                    if category == "comm":
                        split = min(max(start_s[last], cursor), begin)
                        if split - cursor > tolerance:
                            add((device, unit, cursor, split, split - cursor, "dependency_wait", *context))
                        if begin - split > tolerance:
                            add((device, unit, split, begin, begin - split, "comm_wait", *context))
                    else:
                        add((device, unit, cursor, begin, begin - cursor, WAIT_CAUSE[category], *context))
            cursor = max(cursor, finish)
        if makespan_s - cursor > tolerance:
            add((device, unit, cursor, makespan_s, makespan_s - cursor, "pipeline_drain" if pipeline else "no_work",
                 None, None, None))
    columns = list(zip(*rows)) if rows else [()] * len(BUBBLES_SCHEMA)
    return pa.table(dict(zip(BUBBLES_SCHEMA.names, map(list, columns))), schema=BUBBLES_SCHEMA)


def _rows_by_unit(table: pa.Table):
    """A function (device, unit) -> the positions of ``table``'s rows of that
    unit, ascending; grouped by one stable sort of the dictionary codes rather
    than a Python tuple and list entry per row."""
    device_code, device_names = string_codes(table["device"])
    unit_code, unit_names = string_codes(table["unit"])
    key = device_code * (len(unit_names) + 1) + unit_code
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
    """For each timeline row, the index of its (device, unit) in ``keys``, or -1,
    computed on dictionary codes so no per-row Python object is made."""
    index = {key: i for i, key in enumerate(keys)}
    device = pc.dictionary_encode(timeline["device"]).combine_chunks()
    unit = pc.dictionary_encode(timeline["unit"]).combine_chunks()
    device_names = device.dictionary.to_pylist()
    unit_names = unit.dictionary.to_pylist()
    table = np.full((len(device_names), max(len(unit_names), 1)), -1, dtype=np.int64)
    for d, dname in enumerate(device_names):
        for u, uname in enumerate(unit_names):
            table[d, u] = index.get((dname, uname), -1)
    if timeline.num_rows == 0:
        return np.empty(0, dtype=np.int64)
    return table[device.indices.to_numpy(zero_copy_only=False), unit.indices.to_numpy(zero_copy_only=False)]


def grouped_busy(groups: np.ndarray, starts: np.ndarray, ends: np.ndarray, count: int) -> np.ndarray:
    """Union length of the intervals of each group 0..count-1, vectorized:
    groups are laid end to end on one time axis (offset by group x span) so
    one running maximum merges the intervals of every group at once."""
    busy = np.zeros(count)
    if len(starts) == 0:
        return busy
    origin = min(float(starts.min()), 0.0)
    span = float(ends.max()) - origin + 1.0
    s = starts - origin + groups * span
    e = ends - origin + groups * span
    order = np.argsort(s, kind="stable")
    s, e, g = s[order], e[order], groups[order]
    reach = np.maximum.accumulate(e)
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] > reach[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:], len(s)) - 1
    np.add.at(busy, g[first], reach[last] - s[first])
    return busy


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
    groups = groups[keep]
    starts = timeline["start_s"].to_numpy()[keep]
    ends = timeline["end_s"].to_numpy()[keep]
    busy = grouped_busy(groups, starts, ends, count)
    flops = np.bincount(groups, weights=timeline["flops"].to_numpy()[keep], minlength=count)
    nbytes = np.bincount(groups, weights=timeline["bytes"].to_numpy()[keep], minlength=count)
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
    return pa.table(columns, schema=UTILIZATION_SCHEMA)


def _finite_or_none(value: float | None) -> float | None:
    """A peak rate, or None where there is none or it is unbounded (the links
    of an ``ideal`` cluster): outputs never hold infinity."""
    return value if value is not None and math.isfinite(value) else None


def memory_table(ledgers: Sequence) -> pa.Table:
    """Occupancy of every tier after each allocation or release."""
    rows: dict[str, list] = {f.name: [] for f in MEMORY_SCHEMA}
    for ledger in ledgers:
        for time_s, tier, used in ledger.history:
            rows["device"].append(ledger.device)
            rows["tier"].append(tier)
            rows["time_s"].append(time_s)
            rows["used_bytes"].append(used)
            rows["capacity_bytes"].append(ledger.capacity[tier])
    return pa.table(rows, schema=MEMORY_SCHEMA)
