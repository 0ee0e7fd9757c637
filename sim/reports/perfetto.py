"""Timelines for Perfetto (ui.perfetto.dev): native protobuf traces and Chrome JSON.

Layout: one process-like group per device (``node3/gpu5``) with a track per
unit (SMs or systolic arrays, vector, PIM, each memory tier, ``comm``) and a
``bubbles`` track whose slices are named by cause; one ``network`` group with
a track per directed link. A unit whose intervals overlap (concurrent kernels
sharing the SMs, flows sharing a link) gets numbered lanes, child tracks on
which no two slices overlap, so Perfetto draws every slice where it belongs.
Counter tracks: memory in use per tier, FLOP/s achieved per device, bytes/s
in use per link. Flows (arrows) join the ranks of each collective, the steps
of a collective on the links, and a pipeline send to the compute it feeds.

The run is laid out as columns (``layout``: numpy arrays of slices, flows and
counter samples, no object per slice; args encoded per column). Native traces
are ``TrackEvent`` packets with interned event names on one packet sequence,
encoded from those columns by sim.reports.pftrace (the bytes the ``perfetto``
package's protos serialize to) and streamed to the file; the JSON writer takes
the same layout with an object per slice (``Layout.to_model``). Timestamps are integer
nanoseconds, each converted from simulated seconds on its own (no running
sums, so no drift); events on a track are emitted in time order and every
slice that begins ends.
"""

from __future__ import annotations

import contextlib
import fnmatch
import heapq
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from sim.errors import AccsimError
from sim.reports.writer import decode_dictionaries
from sim.runtime.heap import collector_paused

if TYPE_CHECKING:
    from sim.reports.pftrace import Events

NS = 1_000_000_000
SEQUENCE_ID = 1


def _ns(seconds: float) -> int:
    return int(round(seconds * NS))


def _ns_array(seconds) -> np.ndarray:
    """``_ns`` of a column at once: the same product, rounded half to even as
    ``round`` does, so each value equals ``_ns`` of it."""
    from sim.reports.pftrace import numpy_of
    values = numpy_of(seconds) if isinstance(seconds, (pa.Array, pa.ChunkedArray)) else np.asarray(seconds)
    return np.rint(values.astype(np.float64) * NS).astype(np.int64)


# Columns (and Arrow types) accsim perfetto reads from each table of a run.
REQUIRED_COLUMNS = {
    "timeline": {"device": pa.string(), "unit": pa.string(), "op_id": pa.int64(), "name": pa.string(),
                 "category": pa.string(), "start_s": pa.float64(), "end_s": pa.float64(),
                 "flops": pa.float64(), "bytes": pa.float64(), "stream": pa.int64(),
                 "units_held": pa.int64(), "layer": pa.int64(), "stage": pa.int64(),
                 "microbatch": pa.int64(), "phase": pa.string(), "detail": pa.string()},
    "bubbles": {"device": pa.string(), "unit": pa.string(), "start_s": pa.float64(), "end_s": pa.float64(),
                "duration_s": pa.float64(), "cause": pa.string(), "next_op_id": pa.int64(),
                "stage": pa.int64(), "microbatch": pa.int64()},
    "memory": {"device": pa.string(), "tier": pa.string(), "time_s": pa.float64(), "used_bytes": pa.int64()},
}


def table_path(run_dir: Path, name: str) -> Path | None:
    """``NAME.arrow`` or ``NAME.parquet`` in a run directory, if there."""
    for suffix in (".arrow", ".parquet"):
        path = Path(run_dir) / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def read_table(path: Path, name: str | None = None) -> pa.Table:
    """A run's table (Arrow IPC or Parquet), checked: a corrupted file or one
    without the columns accsim writes is one AccsimError line."""
    path = Path(path)
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq
            # ParquetFile, not pq.read_table: that loads pyarrow.dataset, which imports pandas (0.2-0.3 s)
            table = pq.ParquetFile(path).read()
        else:
            with open(path, "rb") as fh:
                table = ipc.open_file(fh).read_all()
        table.validate(full=True)
        table = decode_dictionaries(table)       # accsim writes string columns dictionary-encoded
    except OSError as exc:
        raise AccsimError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (pa.ArrowException, ValueError, TypeError, IndexError) as exc:
        text = " ".join(str(exc).split())[:160]
        raise AccsimError(f"{path}: not a readable table written by accsim run ({type(exc).__name__}: {text})") from None
    for column, kind in REQUIRED_COLUMNS.get(name or path.stem, {}).items():
        if column not in table.column_names or table.schema.field(column).type != kind:
            raise AccsimError(f"{path}: not a table written by accsim run (column {column!r} of type {kind} "
                              f"missing)")
    for column in ("start_s", "end_s", "time_s"):
        if column in table.column_names and len(table) and not pc.all(pc.is_finite(table[column])).as_py():
            raise AccsimError(f"{path}: column {column!r} holds a value that is not a finite time")
    if "start_s" in table.column_names and len(table) and pc.any(pc.less(table["end_s"], table["start_s"])).as_py():
        raise AccsimError(f"{path}: a row ends before it starts; not a table written by accsim run")
    return table


@dataclass
class Slice:
    track: int
    start_ns: int
    end_ns: int
    name: str
    args: dict
    flows_out: list = field(default_factory=list)
    flows_in: list = field(default_factory=list)


# Timeline columns shown as a slice's args (the name each has there), in order;
# the columns after op_id..units_held only where not null.
SLICE_ARGS = (("op_id", "op_id"), ("category", "category"), ("flops", "flops"), ("bytes", "bytes"),
              ("stream", "stream"), ("units_held", "units_held"), ("layer", "layer"), ("stage", "stage"),
              ("microbatch", "microbatch"), ("phase", "phase"), ("detail", "collective"))
# Bubble columns shown as a bubble slice's args (the last three only where not null).
BUBBLE_ARGS = ("unit", "duration_s", "next_op_id", "stage", "microbatch")


def _row_args(rows: dict, i: int) -> dict:
    args = {name: rows[column][i] for column, name in SLICE_ARGS[:6]}
    for column, name in SLICE_ARGS[6:]:
        if rows[column][i] is not None:
            args[name] = rows[column][i]
    return args


def _bubble_args(rows: dict, i: int) -> dict:
    args = {key: rows[key][i] for key in BUBBLE_ARGS[:2]}
    for key in BUBBLE_ARGS[2:]:
        if rows[key][i] is not None:
            args[key] = rows[key][i]
    return args


@dataclass
class Track:
    uuid: int
    name: str
    parent: int | None = None
    pid: int | None = None
    counter: bool = False
    unit: str | None = None        # counters: "bytes", or a unit name such as "FLOP/s"


@dataclass
class Model:
    """What both writers emit: tracks, slices with flows, counter samples, an
    object each (the JSON writer's input; tests build these by hand)."""

    tracks: list[Track] = field(default_factory=list)
    slices: list[Slice] = field(default_factory=list)
    counters: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    dropped: int = 0
    total: int = 0

    @property
    def slice_count(self) -> int:
        return len(self.slices)


@dataclass
class Layout:
    """A run laid out as tracks and, as columns, slices (args already encoded
    as Perfetto debug annotations), flows and counter samples (``events``).
    Slices are the timeline's (row ``timeline_rows[i]`` of ``timeline``), then
    the bubbles' (in ``bubbles`` order), then ``extra`` ones (serving requests)."""

    tracks: list[Track]
    events: Events
    timeline: pa.Table
    timeline_rows: np.ndarray
    bubbles: pa.Table
    extra: list[Slice]
    dropped: int = 0
    total: int = 0

    @property
    def slice_count(self) -> int:
        return len(self.events.track)

    def to_model(self) -> Model:
        """The same layout with an object per slice (args as dicts)."""
        ev = self.events
        tracks, starts, ends = ev.track.tolist(), ev.start_ns.tolist(), ev.end_ns.tolist()
        rows, bubble_rows = self.timeline.to_pydict(), self.bubbles.to_pydict()
        slices = [Slice(tracks[k], starts[k], ends[k], rows["name"][r], _row_args(rows, r))
                  for k, r in enumerate(self.timeline_rows.tolist())]
        for j in range(self.bubbles.num_rows):
            k = len(slices)
            slices.append(Slice(tracks[k], starts[k], ends[k], bubble_rows["cause"][j], _bubble_args(bubble_rows, j)))
        slices.extend(self.extra)
        for k, flow, into in zip(ev.flow_slice.tolist(), ev.flow_id.tolist(), ev.flow_in.tolist()):
            (slices[k].flows_in if into else slices[k].flows_out).append(flow)
        counters: dict[int, list[tuple[int, float]]] = {}
        for uuid, t, value in zip(ev.counter_track.tolist(), ev.counter_ns.tolist(), ev.counter_value.tolist()):
            counters.setdefault(uuid, []).append((t, value))
        return Model(self.tracks, slices, counters, self.dropped, self.total)


def _assign_lanes(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Greedy interval colouring: each row gets the lowest lane free at its start."""
    order = np.lexsort((ends, starts))
    lanes = np.zeros(len(starts), dtype=np.int64)
    if len(order) < 2 or np.all(starts[order][1:] >= np.maximum.accumulate(ends[order])[:-1]):
        return lanes                 # no two intervals overlap: all on lane 0
    free: list[tuple[int, int]] = []  # (end_ns, lane)
    spare: list[int] = []
    count = 0
    for i in order:
        while free and free[0][0] <= starts[i]:
            heapq.heappush(spare, heapq.heappop(free)[1])
        lane = heapq.heappop(spare) if spare else count
        if lane == count:
            count += 1
        lanes[i] = lane
        heapq.heappush(free, (int(ends[i]), lane))
    return lanes


def read_run(run_dir: Path) -> dict[str, pa.Table | None]:
    """A run directory's timeline, bubbles and memory (None if absent) tables,
    checked (one AccsimError line for anything accsim run would not write)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AccsimError(f"{run_dir}: not a run directory (not a directory); give the --out of accsim run")
    paths = {name: table_path(run_dir, name) for name in ("timeline", "bubbles", "memory")}
    for name in ("timeline", "bubbles"):
        if paths[name] is None:
            raise AccsimError(f"{run_dir}: not a run directory (missing {name}.arrow); run accsim run first")
    tables = {name: read_table(path, name) if path is not None else None for name, path in paths.items()}
    latest = max([pc.max(tables[name]["end_s"]).as_py() or 0.0 for name in ("timeline", "bubbles")
                  if tables[name].num_rows] + [0.0])
    if latest * NS >= 2**63:
        raise AccsimError(f"{run_dir}: the run spans {latest:.3g} s, beyond the ~292 years a Perfetto "
                          f"trace can time in nanoseconds")
    return tables


class _Columns:
    """A table's columns as numpy arrays, each converted once."""

    def __init__(self, table: pa.Table):
        self.table = table
        self._done: dict = {}

    def dictionary(self, name: str) -> tuple[np.ndarray, pa.Array]:
        """(codes, distinct values as an Arrow array) of a column: ``values[codes[i]]``
        is row i; -1 where null."""
        from sim.reports.pftrace import numpy_of
        if ("dictionary", name) not in self._done:
            column = self.table[name]
            coded = pc.dictionary_encode(column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column)
            self._done["dictionary", name] = (numpy_of(coded.indices, -1).astype(np.int64), coded.dictionary)
        return self._done["dictionary", name]

    def codes(self, name: str) -> tuple[np.ndarray, list]:
        """(codes, distinct values as a list) of a column."""
        if ("codes", name) not in self._done:
            codes, values = self.dictionary(name)
            self._done["codes", name] = (codes, values.to_pylist())
        return self._done["codes", name]

    def numbers(self, name: str, fill=0) -> np.ndarray:
        """A number column, nulls as ``fill``."""
        from sim.reports.pftrace import numpy_of
        if ("numbers", name, fill) not in self._done:
            self._done["numbers", name, fill] = numpy_of(self.table[name], fill)
        return self._done["numbers", name, fill]

    def ns(self, name: str) -> np.ndarray:
        """A column of seconds in integer nanoseconds (``_ns_array``)."""
        if ("ns", name) not in self._done:
            self._done["ns", name] = _ns_array(self.numbers(name))
        return self._done["ns", name]


def _code_of(values: list, value) -> int:
    return values.index(value) if value in values else -2          # -2: matches no row (nulls are -1)


def _first_seen(values: np.ndarray) -> np.ndarray:
    """Each value's rank among the distinct values in order of first appearance."""
    _, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]


def _window(table: pa.Table, devices: str | None, start_s: float | None, end_s: float | None) -> pa.Table:
    masks = []
    if devices is not None:           # match each distinct name once
        kept = [d for d in pc.unique(table["device"]).to_pylist() if fnmatch.fnmatchcase(d, devices)]
        masks.append(pc.is_in(table["device"], value_set=pa.array(kept, pa.string())))
    if start_s is not None:
        masks.append(pc.greater_equal(table["end_s"], start_s))
    if end_s is not None:
        masks.append(pc.less_equal(table["start_s"], end_s))
    if not masks:
        return table
    mask = masks[0]
    for more in masks[1:]:
        mask = pc.and_(mask, more)
    return table.filter(mask)


class _Tracks(list):
    """The trace's tracks, uuids 1, 2, ... in the order they are made."""

    def new(self, name: str, **kwargs) -> Track:
        track = Track(len(self) + 1, name, **kwargs)
        self.append(track)
        return track


def layout(run_dir: Path, devices: str | None = None, start_s: float | None = None, end_s: float | None = None,
           max_slices: int | None = None, tables: dict[str, pa.Table | None] | None = None) -> Layout:
    """Lay a run directory's tables (``tables``, else ``read_run(run_dir)``) out
    as tracks, and slices, flows and counters as columns."""
    from sim.reports.pftrace import Events, Pieces, annotation_pieces
    run_dir = Path(run_dir)
    tables = tables if tables is not None else read_run(run_dir)
    timeline = _window(tables["timeline"], devices, start_s, end_s).sort_by([("start_s", "ascending"),
                                                                              ("end_s", "ascending")])
    bubbles = _window(tables["bubbles"], devices, start_s, end_s)
    total, dropped = timeline.num_rows, 0
    if max_slices is not None and timeline.num_rows > max_slices:
        dropped = timeline.num_rows - max_slices
        timeline = timeline.slice(0, max_slices)
        last = timeline["start_s"][max_slices - 1].as_py() if max_slices else 0.0
        bubbles = bubbles.filter(pc.less_equal(bubbles["start_s"], last))
    tracks = _Tracks()
    present = set(pc.unique(timeline["device"]).to_pylist()) | set(pc.unique(bubbles["device"]).to_pylist())
    device_names = sorted(present, key=lambda d: (d == "network", d))
    groups = {device: tracks.new(device, pid=pid) for pid, device in enumerate(device_names, start=1)}
    columns = _Columns(timeline)
    rows, track = _unit_slices(columns, groups, tracks)
    bubble_columns = _Columns(bubbles)
    bubble_track = _bubble_slices(bubble_columns, groups, tracks)
    flow_out, flow_in = _flows(columns)
    counters = _counters(columns, groups, tables["memory"], devices, tracks)
    from sim.serving.tracks import add_request_tracks   # serving runs: a track per request
    requests = Model(tracks=tracks)
    add_request_tracks(requests, run_dir, iter(range(len(tracks) + 1, 1 << 62)), start_s, end_s)
    extra = requests.slices

    name_codes, names = _names(columns.dictionary("name"), rows, bubble_columns.dictionary("cause"), extra)
    n_t, n_b, n_x = timeline.num_rows, bubbles.num_rows, len(extra)
    annotations = []
    for k, (column, name) in enumerate(SLICE_ARGS):
        parts = [annotation_pieces(name, timeline[column].combine_chunks()).take(rows)]
        parts.append(annotation_pieces(BUBBLE_ARGS[k], bubbles[BUBBLE_ARGS[k]].combine_chunks())
                     if k < len(BUBBLE_ARGS) else Pieces.constant(b"", n_b))
        parts.append(_object_annotations(extra) if k == 0 else Pieces.constant(b"", n_x))
        annotations.append(Pieces.stack(parts))
    position = np.empty(n_t, dtype=np.int64)
    position[rows] = np.arange(n_t)                 # slice of each timeline row
    bubble_ns = (bubble_columns.ns("start_s"), bubble_columns.ns("end_s"))
    events = Events(
        track=np.concatenate([track, bubble_track, np.array([s.track for s in extra], dtype=np.int64)]),
        start_ns=np.concatenate([columns.ns("start_s")[rows], bubble_ns[0],
                                 np.array([s.start_ns for s in extra], dtype=np.int64)]),
        end_ns=np.concatenate([columns.ns("end_s")[rows], bubble_ns[1],
                               np.array([s.end_ns for s in extra], dtype=np.int64)]),
        name=name_codes, names=names, annotations=annotations,
        flow_slice=np.concatenate([position[flow_out], position[flow_in]]),
        flow_id=np.tile(np.arange(1, len(flow_out) + 1, dtype=np.uint64), 2),
        flow_in=np.repeat(np.array([False, True]), len(flow_out)), **counters)
    return Layout(list(tracks), events, timeline, rows, bubbles, extra, dropped, total)


def _names(timeline: tuple[np.ndarray, pa.Array], rows: np.ndarray, bubbles: tuple[np.ndarray, pa.Array],
           extra: list[Slice]):
    """Every slice's name as a code into one set of distinct names (UTF-8
    Pieces): the timeline's (rows in slice order), the bubbles' causes, then
    the extra slices' names."""
    from sim.reports.pftrace import numpy_of, string_pieces
    values = [timeline[1].cast(pa.string()), bubbles[1].cast(pa.string())]
    extra_names = list(dict.fromkeys(s.name for s in extra))
    if extra_names:
        values.append(pa.array(extra_names, pa.string()))
    coded = pc.dictionary_encode(pa.concat_arrays(values))
    unified = numpy_of(coded.indices).astype(np.int64)
    first, second = len(values[0]), len(values[0]) + len(values[1])
    extra_code = {name: unified[second + k] for k, name in enumerate(extra_names)}
    codes = np.concatenate([unified[:first][timeline[0][rows]], unified[first:second][bubbles[0]],
                            np.array([extra_code[s.name] for s in extra], dtype=np.int64)])
    return codes, string_pieces(coded.dictionary)


def _object_annotations(items: list[Slice]):
    """The args of slices built as objects, encoded as debug annotations."""
    from sim.reports.pftrace import Pieces, annotation
    return Pieces.of([b"".join(annotation(*name_value) for name_value in item.args.items()) for item in items])


def _unit_slices(columns: _Columns, groups: dict[str, Track], tracks: _Tracks) -> tuple[np.ndarray, np.ndarray]:
    """A track per (device, unit), in name order, and numbered lanes where its
    intervals overlap. Returns the timeline rows in slice order (by track,
    then time) and the track of each slice."""
    n = columns.table.num_rows
    device, device_values = columns.codes("device")
    unit, unit_values = columns.codes("unit")
    pairs, inverse = np.unique(device * max(len(unit_values), 1) + unit, return_inverse=True)
    keys = [(device_values[p // len(unit_values)], unit_values[p % len(unit_values)]) for p in pairs.tolist()]
    rank = np.empty(len(keys), dtype=np.int64)
    rank[sorted(range(len(keys)), key=keys.__getitem__)] = np.arange(len(keys))
    group = rank[inverse.reshape(-1)]
    rows = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[rows], np.arange(len(keys) + 1))
    starts, ends = columns.ns("start_s"), columns.ns("end_s")
    track = np.empty(n, dtype=np.int64)
    for g, (device_name, unit_name) in enumerate(sorted(keys)):
        mine = rows[bounds[g]:bounds[g + 1]]
        lanes = _assign_lanes(starts[mine], ends[mine])
        parent = groups[device_name].uuid
        base = tracks.new(unit_name, parent=parent).uuid
        for lane in range(1, int(lanes.max()) + 1):
            tracks.new(f"{unit_name} lane {lane + 1}", parent=parent)
        track[mine] = base + lanes
    return rows, track[rows]


def _bubble_slices(columns: _Columns, groups: dict[str, Track], tracks: _Tracks) -> np.ndarray:
    """A ``bubbles`` track per device (in order of first bubble), then lanes for
    a device's overlapping bubbles (of different units). Returns each bubble's track."""
    device, device_values = columns.codes("device")
    codes, first = np.unique(device, return_index=True)
    order = codes[np.argsort(first, kind="stable")].tolist()
    track_of = np.zeros(len(device_values), dtype=np.int64)
    for code in order:
        track_of[code] = tracks.new("bubbles", parent=groups[device_values[code]].uuid).uuid
    track = track_of[device]
    starts, ends = columns.ns("start_s"), columns.ns("end_s")
    for code in order:
        mine = np.flatnonzero(device == code)
        lanes = _assign_lanes(starts[mine], ends[mine])
        used, first_at = np.unique(lanes[lanes > 0], return_index=True)
        for lane in used[np.argsort(first_at, kind="stable")].tolist():
            lane_track = tracks.new(f"bubbles lane {lane + 1}", parent=groups[device_values[code]].uuid)
            track[mine[lanes == lane]] = lane_track.uuid
    return track


def _flows(columns: _Columns) -> tuple[np.ndarray, np.ndarray]:
    """Arrows, as (from row, to row) in flow id order: ranks of one collective
    (in row order), successive steps of a collective on the links (the first
    row of each distinct start time), and pipeline compute -> send -> receive
    -> compute."""
    device, device_values = columns.codes("device")
    category, category_values = columns.codes("category")
    op_id = columns.numbers("op_id")
    start_s = columns.numbers("start_s")
    comm = category == _code_of(category_values, "comm")
    network = device == _code_of(device_values, "network")

    members = np.flatnonzero(comm & ~network)
    member_key = _first_seen(op_id[members])
    order = np.argsort(member_key, kind="stable")
    members, member_key = members[order], member_key[order]
    same = member_key[1:] == member_key[:-1]
    pairs = [(members[:-1][same], members[1:][same])]

    steps = np.flatnonzero(comm & network)
    step_key, step_start = _first_seen(op_id[steps]), start_s[steps]
    order = np.lexsort((steps, step_start, step_key))
    steps, step_key, step_start = steps[order], step_key[order], step_start[order]
    first = np.ones(len(steps), dtype=bool)
    first[1:] = (step_key[1:] != step_key[:-1]) | (step_start[1:] != step_start[:-1])
    steps, step_key = steps[first], step_key[first]
    same = step_key[1:] == step_key[:-1]
    pairs.append((steps[:-1][same], steps[1:][same]))

    sizes = np.bincount(member_key) if len(member_key) else np.zeros(0, dtype=np.int64)
    two = (np.cumsum(sizes) - sizes)[sizes == 2]
    pairs.append(_pipeline_flows(columns, members[two], members[two + 1], _code_of(category_values, "compute")))
    return (np.concatenate([a for a, _ in pairs]).astype(np.int64),
            np.concatenate([b for _, b in pairs]).astype(np.int64))


def _pipeline_flows(columns: _Columns, senders: np.ndarray, receivers: np.ndarray,
                    compute_code: int) -> tuple[np.ndarray, np.ndarray]:
    """For each pipeline send (a two-rank collective of phase ``pp``): the compute
    that ended last before it on the sender -> the send, and the receive -> the
    first compute of the same microbatch starting after it on the receiver."""
    timeline = columns.table
    device, category = columns.codes("device")[0], columns.codes("category")[0]
    phase = timeline["phase"].to_pylist()
    keep = [k for k, row in enumerate(senders.tolist()) if phase[row] == "pp"]
    senders, receivers = senders[keep], receivers[keep]
    compute = np.flatnonzero(category == compute_code)
    compute = compute[np.argsort(device[compute], kind="stable")]
    bounds = np.searchsorted(device[compute], np.arange(device.max() + 2 if len(device) else 1))
    by_device = {d: compute[bounds[d]:bounds[d + 1]] for d in range(len(bounds) - 1) if bounds[d + 1] > bounds[d]}
    start_s, end_s = columns.numbers("start_s"), columns.numbers("end_s")
    starts = {d: start_s[rows] for d, rows in by_device.items()}
    ends = {d: end_s[rows] for d, rows in by_device.items()}
    microbatch = timeline["microbatch"].to_pylist()
    starts_list, ends_list = start_s.tolist(), end_s.tolist()
    out: list[int] = []
    into: list[int] = []
    for sender, receiver in zip(senders.tolist(), receivers.tolist()):
        s_dev, r_dev = int(device[sender]), int(device[receiver])
        if s_dev in by_device:
            k = int(np.searchsorted(ends[s_dev], starts_list[sender] + 1e-15, side="right")) - 1
            if k >= 0:
                out.append(int(by_device[s_dev][k]))
                into.append(sender)
        if r_dev in by_device:
            k = int(np.searchsorted(starts[r_dev], ends_list[receiver] - 1e-15, side="left"))
            candidates = by_device[r_dev]
            while k < len(candidates) and microbatch[candidates[k]] != microbatch[receiver]:
                k += 1
            if k < len(candidates):
                out.append(receiver)
                into.append(int(candidates[k]))
    return np.array(out, dtype=np.int64), np.array(into, dtype=np.int64)


def _step_counters(group: np.ndarray, labels: list[str], times: tuple[np.ndarray, np.ndarray],
                   rates: np.ndarray) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """A step counter per group (``labels[code]``; rows with code -1 count
    nowhere), in label order: each row adds ``rates`` from its start to its end
    (``times``); the running sum of the changes in (time, change) order, one
    sample per distinct time, |value| < 1e-6 written as 0."""
    mine = group >= 0
    at = np.concatenate([times[0][mine], times[1][mine]])
    change = np.concatenate([rates[mine], -rates[mine]])
    rank = np.empty(len(labels), dtype=np.int64)
    rank[sorted(range(len(labels)), key=labels.__getitem__)] = np.arange(len(labels))
    key = np.tile(rank[group[mine]], 2)
    order = np.lexsort((change, at, key))
    at, change, key = at[order], change[order], key[order]
    bounds = np.searchsorted(key, np.arange(len(labels) + 1))
    out = []
    for r, label in enumerate(sorted(labels)):
        t, level = at[bounds[r]:bounds[r + 1]], np.cumsum(change[bounds[r]:bounds[r + 1]])
        if not len(t):
            continue
        last = np.append(t[1:] != t[:-1], True)         # the level after the last change at each time
        level = level[last]
        out.append((label, t[last], np.where(np.abs(level) < 1e-6, 0.0, level)))
    return out


def _counters(columns: _Columns, groups: dict[str, Track], memory: pa.Table | None, devices: str | None,
              tracks: _Tracks) -> dict[str, np.ndarray]:
    """Counter tracks and samples: achieved FLOP/s and dynamic power per device,
    bytes/s per link (each row's amount spread evenly over its interval), memory
    in use per device and tier (from the ledger, the last value at each time)."""
    device, device_values = columns.codes("device")
    unit, unit_values = columns.codes("unit")
    category, category_values = columns.codes("category")
    duration = columns.numbers("end_s") - columns.numbers("start_s")
    times = (columns.ns("start_s"), columns.ns("end_s"))
    positive = duration > 0
    flops = columns.numbers("flops", 0.0)
    computing = (category == _code_of(category_values, "compute")) & (flops != 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        series = []
        rate = flops / duration
        for label, t, v in _step_counters(np.where(positive & computing, device, -1), device_values, times, rate):
            series.append(("achieved FLOP/s", groups[label], "FLOP/s", t, v))
        if "energy_j" in columns.table.column_names:
            energy = columns.numbers("energy_j", 0.0)
            for label, t, v in _step_counters(np.where(positive & (energy != 0), device, -1), device_values,
                                              times, energy / duration):
                series.append(("dynamic power (W)", groups[label], None, t, v))
        link = positive & ~computing & (device == _code_of(device_values, "network"))
        rate = columns.numbers("bytes", 0.0) / duration
        for label, t, v in _step_counters(np.where(link, unit, -1), unit_values, times, rate):
            series.append((f"{label} bytes/s", groups["network"], "bytes/s", t, v))
    series += _memory_series(memory, groups, devices)
    counter_track, counter_ns, counter_value = [], [], []
    for name, group, unit_name, t, v in series:
        track = tracks.new(name, parent=group.uuid, counter=True, unit=unit_name)
        counter_track.append(np.full(len(t), track.uuid, dtype=np.int64))
        counter_ns.append(t)
        counter_value.append(v)
    return {"counter_track": np.concatenate(counter_track or [np.zeros(0, np.int64)]),
            "counter_ns": np.concatenate(counter_ns or [np.zeros(0, np.int64)]).astype(np.int64),
            "counter_value": np.concatenate(counter_value or [np.zeros(0)]).astype(np.float64)}


def _memory_series(memory: pa.Table | None, groups: dict[str, Track], devices: str | None) -> list:
    if memory is None or not memory.num_rows:
        return []
    columns = _Columns(memory)
    device, device_values = columns.codes("device")
    tier, tier_values = columns.codes("tier")
    shown = np.array([name in groups and (devices is None or fnmatch.fnmatchcase(name, devices))
                      for name in device_values] + [False])
    pair = np.where(shown[device], device * len(tier_values) + tier, -1)
    labels = sorted({(device_values[p // len(tier_values)], tier_values[p % len(tier_values)])
                     for p in np.unique(pair[pair >= 0]).tolist()})
    t_ns = columns.ns("time_s")
    used = columns.numbers("used_bytes").astype(np.float64)
    out = []
    for device_name, tier_name in labels:
        code = device_values.index(device_name) * len(tier_values) + tier_values.index(tier_name)
        mine = np.flatnonzero(pair == code)
        t = t_ns[mine]
        last = np.append(t[1:] != t[:-1], True)          # the last value written at each time
        out.append((f"{tier_name} memory (bytes)", groups[device_name], "bytes", t[last], used[mine][last]))
    return out


def build_model(run_dir: Path, devices: str | None = None, start_s: float | None = None,
                end_s: float | None = None, max_slices: int | None = None,
                tables: dict[str, pa.Table | None] | None = None) -> Model:
    """``layout`` with an object per slice (args as dicts), as the JSON writer takes it."""
    return layout(run_dir, devices, start_s, end_s, max_slices, tables).to_model()


def _events_of(model: Model):
    """A Model's slices and counters as columns (args encoded here)."""
    from sim.reports.pftrace import Events, Pieces
    names: dict[str, int] = {}
    flows = [(k, flow, into) for k, item in enumerate(model.slices)
             for into, ids in ((False, item.flows_out), (True, item.flows_in)) for flow in ids]
    samples = [(uuid, t, value) for uuid, items in model.counters.items() for t, value in items]
    return Events(
        track=np.array([s.track for s in model.slices], dtype=np.int64),
        start_ns=np.array([s.start_ns for s in model.slices], dtype=np.int64),
        end_ns=np.array([s.end_ns for s in model.slices], dtype=np.int64),
        name=np.array([names.setdefault(s.name, len(names)) for s in model.slices], dtype=np.int64),
        names=Pieces.of([name.encode("utf-8", "surrogatepass") for name in names]),
        annotations=[_object_annotations(model.slices)],
        flow_slice=np.array([f[0] for f in flows], dtype=np.int64),
        flow_id=np.array([f[1] for f in flows], dtype=np.uint64),
        flow_in=np.array([f[2] for f in flows], dtype=bool),
        counter_track=np.array([s[0] for s in samples], dtype=np.int64),
        counter_ns=np.array([s[1] for s in samples], dtype=np.int64),
        counter_value=np.array([float(s[2]) for s in samples], dtype=np.float64))


def _event_order(events) -> tuple[np.ndarray, np.ndarray]:
    """The order of the trace's events: (time, rank, key, end) ascending, with
    rank 0 slice ends, 1 zero-duration slices (begin, then end), 2 slice begins,
    3 counter samples, and key the slice's position or the counter's track; so
    at one timestamp a slice never ends before it begins and back-to-back
    slices do not overlap. Returns (kind, item) of each event in order: kind 0
    slice ``item``'s begin, 1 its end, 2 counter sample ``item``."""
    starts, ends = events.start_ns, events.end_ns
    n, m = len(starts), len(events.counter_ns)
    order = np.arange(n, dtype=np.int64)
    zero = starts == ends
    times = np.concatenate([starts, np.where(zero, starts, ends), events.counter_ns])
    rank = np.concatenate([np.where(zero, 1, 2), np.where(zero, 1, 0), np.full(m, 3)]).astype(np.int8)
    keys = np.concatenate([order, order, events.counter_track])
    kind = np.concatenate([np.zeros(n, np.int8), np.ones(n, np.int8), np.full(m, 2, np.int8)])
    sort = np.lexsort((kind, keys, rank, times))           # kind: a slice's begin (0) before its end (1)
    del times, rank, keys
    item = np.concatenate([order, order, np.arange(m, dtype=np.int64)])
    return kind[sort], item[sort]


def write_pftrace(model: Model | Layout, path: Path) -> None:
    """Native Perfetto protobuf: TracePackets on one sequence, encoded by
    sim.reports.pftrace a column at a time and streamed to the file."""
    from sim.reports.pftrace import track_descriptor, write_trace
    events = model.events if isinstance(model, Layout) else _events_of(model)
    kind, item = _event_order(events)
    descriptors = [track_descriptor(t.uuid, t.name, t.parent, t.pid, t.counter, t.unit) for t in model.tracks]
    with _output(path) as sink:
        write_trace(sink, SEQUENCE_ID, descriptors, events, kind, item)


def write_json(model: Model, path: Path) -> None:
    """Chrome Trace Event Format: complete events ("X", microseconds), counters
    ("C"), flows ("s"/"f") and process / thread names ("M")."""
    pid_of: dict[int, int] = {}
    tid_of: dict[int, int] = {}
    events: list[dict] = []
    for track in model.tracks:
        if track.pid is not None:
            pid_of[track.uuid] = track.pid
            events.append({"ph": "M", "name": "process_name", "pid": track.pid, "tid": 0,
                           "args": {"name": track.name}})
    for track in model.tracks:
        if track.pid is None and not track.counter:
            pid = pid_of[track.parent]
            tid_of[track.uuid] = len(tid_of) + 1
            pid_of[track.uuid] = pid
            events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid_of[track.uuid],
                           "args": {"name": track.name}})
    for item in model.slices:
        pid, tid = pid_of[item.track], tid_of[item.track]
        events.append({"ph": "X", "name": item.name, "ts": item.start_ns / 1000,
                       "dur": (item.end_ns - item.start_ns) / 1000, "pid": pid, "tid": tid, "args": item.args})
        for flow in item.flows_out:
            events.append({"ph": "s", "id": flow, "name": "flow", "cat": "flow", "ts": item.start_ns / 1000,
                           "pid": pid, "tid": tid})
        for flow in item.flows_in:
            events.append({"ph": "f", "bp": "e", "id": flow, "name": "flow", "cat": "flow",
                           "ts": item.start_ns / 1000, "pid": pid, "tid": tid})
    for track in model.tracks:
        if track.counter:
            pid = pid_of[track.parent]
            for t, value in model.counters.get(track.uuid, []):
                events.append({"ph": "C", "name": track.name, "ts": t / 1000, "pid": pid,
                               "args": {"value": value}})
    _atomic_write(path, json.dumps({"traceEvents": events, "displayTimeUnit": "ns"}).encode())


def _output(path: Path):
    """The trace file, written under a temporary name and renamed when complete."""
    from sim.reports.writer import atomic_open, clean_stale
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent)
    return atomic_open(path)


def _atomic_write(path: Path, data: bytes) -> None:
    with _output(path) as sink:
        sink.write(data)


def _check_window(start_s, end_s, max_slices) -> None:
    import math
    for flag, value in (("--start", start_s), ("--end", end_s)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise AccsimError(f"{flag}: expected a non-negative number of seconds, got {value!r}")
    if start_s is not None and end_s is not None and end_s < start_s:
        raise AccsimError(f"--end {end_s:g} is before --start {start_s:g}")
    if max_slices is not None and max_slices < 0:
        raise AccsimError(f"--max-slices: expected a number >= 0, got {max_slices}")


def export(run_dir: str | os.PathLike, output: str | os.PathLike, fmt: str | None = None,
           devices: str | None = None, start_s: float | None = None, end_s: float | None = None,
           max_slices: int | None = None, warn=sys.stderr, progress=None) -> Layout:
    """Write a run's timeline as ``pftrace`` (default) or ``json`` (by ``fmt`` or
    suffix). The run's tables are read and checked first, then laid out and
    written in ``progress`` stages (a sim.progress.Progress)."""
    output = Path(output)
    fmt = fmt or ("json" if output.suffix == ".json" else "pftrace")
    if fmt not in ("pftrace", "json"):
        raise AccsimError(f"--format: expected pftrace or json, got {fmt!r}")
    _check_window(start_s, end_s, max_slices)
    if output.is_dir():
        raise AccsimError(f"-o {output}: is a directory; give a file name such as {output / 'trace.pftrace'}")
    tables = read_run(Path(run_dir))
    stage = progress.stage if progress is not None else (lambda label: contextlib.nullcontext())
    with collector_paused():   # JSON: an object per slice and event, all acyclic (sim.runtime.heap)
        with stage(f"laying out {tables['timeline'].num_rows} timeline rows"):
            laid = layout(Path(run_dir), devices, start_s, end_s, max_slices, tables=tables)
        del tables                 # the tables as read: the layout keeps the (sorted) rows it shows
        if laid.dropped and warn is not None:
            warn.write(f"accsim: kept the first {laid.total - laid.dropped} of {laid.total} slices "
                       f"(--max-slices); narrow with --devices or --start/--end to see the rest\n")
        with stage(f"writing {laid.slice_count} slices to {output}"):
            if fmt == "json":
                write_json(laid.to_model(), output)
            else:
                write_pftrace(laid, output)
    return laid

