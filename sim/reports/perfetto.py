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

Native traces are ``TrackEvent`` packets with interned event names on one
packet sequence, encoded by sim.reports.pftrace (the bytes the ``perfetto``
package's protos serialize to) and streamed to the file. Timestamps are integer
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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from sim.errors import AccsimError
from sim.reports.writer import decode_dictionaries
from sim.runtime.heap import collector_paused

NS = 1_000_000_000
SEQUENCE_ID = 1


def _ns(seconds: float) -> int:
    return int(round(seconds * NS))


def _ns_array(seconds) -> np.ndarray:
    """``_ns`` of a column at once: the same product, rounded half to even as
    ``round`` does, so each value equals ``_ns`` of it."""
    values = seconds.to_numpy() if hasattr(seconds, "to_numpy") else np.asarray(seconds)   # Arrow: no per-item copy
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
            table = pq.read_table(path)
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
    annotations: bytes | None = None    # the args as encoded Perfetto debug annotations, if built so


# Timeline columns shown as a slice's args (the name each has there), in order;
# the columns after op_id..units_held only where not null.
SLICE_ARGS = (("op_id", "op_id"), ("category", "category"), ("flops", "flops"), ("bytes", "bytes"),
              ("stream", "stream"), ("units_held", "units_held"), ("layer", "layer"), ("stage", "stage"),
              ("microbatch", "microbatch"), ("phase", "phase"), ("detail", "collective"))


def _row_args(rows: dict, i: int) -> dict:
    args = {name: rows[column][i] for column, name in SLICE_ARGS[:6]}
    for column, name in SLICE_ARGS[6:]:
        if rows[column][i] is not None:
            args[name] = rows[column][i]
    return args


def _encoded_args(timeline: pa.Table) -> np.ndarray:
    """Each row's args as Perfetto debug annotations (bytes, as the native
    writer would encode ``_row_args``), built column by column."""
    from sim.reports.pftrace import annotation_column
    encoded = np.full(timeline.num_rows, b"", dtype=object)
    for column, name in SLICE_ARGS:
        encoded = encoded + annotation_column(name, timeline[column].combine_chunks())
    return encoded


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
    """What both writers emit: tracks, slices with flows, counter samples."""

    tracks: list[Track] = field(default_factory=list)
    slices: list[Slice] = field(default_factory=list)
    counters: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    dropped: int = 0
    total: int = 0


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


def build_model(run_dir: Path, devices: str | None = None, start_s: float | None = None,
                end_s: float | None = None, max_slices: int | None = None, with_args: bool = True,
                tables: dict[str, pa.Table | None] | None = None) -> Model:
    """Lay a run directory's tables (``tables``, else ``read_run(run_dir)``) out as
    tracks, slices, flows and counters. ``with_args=False`` (the native writer)
    gives timeline slices their args already encoded (``Slice.annotations``)
    instead of as dicts."""
    run_dir = Path(run_dir)
    tables = tables if tables is not None else read_run(run_dir)
    timeline, bubbles, memory = tables["timeline"], tables["bubbles"], tables["memory"]

    def keep_device(name: str) -> bool:
        return devices is None or fnmatch.fnmatchcase(name, devices)

    def window(table: pa.Table) -> pa.Table:
        masks = []
        if devices is not None:           # match each distinct name once
            kept = [d for d in pc.unique(table["device"]).to_pylist() if keep_device(d)]
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

    timeline = window(timeline).sort_by([("start_s", "ascending"), ("end_s", "ascending")])
    bubbles = window(bubbles)
    model = Model(total=timeline.num_rows)
    if max_slices is not None and timeline.num_rows > max_slices:
        model.dropped = timeline.num_rows - max_slices
        timeline = timeline.slice(0, max_slices)
        last = timeline["start_s"][max_slices - 1].as_py() if max_slices else 0.0
        bubbles = bubbles.filter(pc.less_equal(bubbles["start_s"], last))

    next_uuid = iter(range(1, 1 << 62))
    device_names = sorted(set(timeline["device"].to_pylist()) | set(bubbles["device"].to_pylist()),
                          key=lambda d: (d == "network", d))
    groups: dict[str, Track] = {}
    for pid, device in enumerate(device_names, start=1):
        track = Track(next(next_uuid), device, pid=pid)
        groups[device] = track
        model.tracks.append(track)

    rows = timeline.to_pydict()
    starts_ns = _ns_array(timeline["start_s"])
    ends_ns = _ns_array(timeline["end_s"])
    unit_rows: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(rows["device"], rows["unit"])):
        unit_rows.setdefault(key, []).append(i)
    slice_of_row: list[Slice | None] = [None] * timeline.num_rows
    starts, ends, names = starts_ns.tolist(), ends_ns.tolist(), rows["name"]
    encoded = None if with_args else _encoded_args(timeline)
    for (device, unit), indices in sorted(unit_rows.items()):
        idx = np.array(indices)
        lanes = _assign_lanes(starts_ns[idx], ends_ns[idx])
        unit_track = Track(next(next_uuid), unit, parent=groups[device].uuid)
        model.tracks.append(unit_track)
        lane_tracks = {0: unit_track}
        for lane in range(1, int(lanes.max()) + 1 if len(lanes) else 1):
            lane_tracks[lane] = Track(next(next_uuid), f"{unit} lane {lane + 1}", parent=groups[device].uuid)
            model.tracks.append(lane_tracks[lane])
        for i, lane in zip(indices, lanes.tolist()):
            if encoded is None:
                item = Slice(lane_tracks[lane].uuid, starts[i], ends[i], names[i], _row_args(rows, i))
            else:
                item = Slice(lane_tracks[lane].uuid, starts[i], ends[i], names[i], {}, annotations=encoded[i])
            slice_of_row[i] = item
            model.slices.append(item)

    bubble_rows = bubbles.to_pydict()
    bubble_tracks: dict[str, Track] = {}
    for i in range(bubbles.num_rows):
        device = bubble_rows["device"][i]
        if device not in bubble_tracks:
            bubble_tracks[device] = Track(next(next_uuid), "bubbles", parent=groups[device].uuid)
            model.tracks.append(bubble_tracks[device])
        args = {"unit": bubble_rows["unit"][i], "duration_s": bubble_rows["duration_s"][i]}
        for key in ("next_op_id", "stage", "microbatch"):
            if bubble_rows[key][i] is not None:
                args[key] = bubble_rows[key][i]
        model.slices.append(Slice(bubble_tracks[device].uuid, _ns(bubble_rows["start_s"][i]),
                                  _ns(bubble_rows["end_s"][i]), bubble_rows["cause"][i], args))
    # bubbles of different units of a device may overlap: give them lanes too
    _relane(model, bubble_tracks, groups, next_uuid)

    _add_flows(rows, slice_of_row)
    _add_counters(model, rows, starts_ns, ends_ns, groups, memory, keep_device, next_uuid)
    from sim.serving.tracks import add_request_tracks   # serving runs: a track per request
    add_request_tracks(model, run_dir, next_uuid, start_s, end_s)
    return model


def _relane(model: Model, tracks: dict[str, Track], groups: dict[str, Track], next_uuid) -> None:
    by_track: dict[int, list[Slice]] = {track.uuid: [] for track in tracks.values()}
    for item in model.slices:
        if item.track in by_track:
            by_track[item.track].append(item)
    for device, track in tracks.items():
        items = by_track[track.uuid]
        if not items:
            continue
        lanes = _assign_lanes(np.array([s.start_ns for s in items]), np.array([s.end_ns for s in items]))
        extra: dict[int, int] = {}
        for item, lane in zip(items, lanes.tolist()):
            if lane:
                if lane not in extra:
                    lane_track = Track(next(next_uuid), f"bubbles lane {lane + 1}", parent=groups[device].uuid)
                    model.tracks.append(lane_track)
                    extra[lane] = lane_track.uuid
                item.track = extra[lane]


def _add_flows(rows: dict, slice_of_row: list) -> None:
    """Arrows: ranks of one collective, successive steps of a collective on the
    links, and pipeline compute -> send -> receive -> compute."""
    next_flow = iter(range(1, 1 << 62))

    def link(a: Slice, b: Slice) -> None:
        flow = next(next_flow)
        a.flows_out.append(flow)
        b.flows_in.append(flow)

    members: dict[int, list[int]] = {}
    steps: dict[int, list[int]] = {}
    compute_by_device: dict[str, list[int]] = {}
    for i, sl in enumerate(slice_of_row):
        if sl is None:
            continue
        if rows["category"][i] == "comm":
            (steps if rows["device"][i] == "network" else members).setdefault(rows["op_id"][i], []).append(i)
        elif rows["category"][i] == "compute":
            compute_by_device.setdefault(rows["device"][i], []).append(i)
    for indices in members.values():
        for a, b in zip(indices, indices[1:]):
            link(slice_of_row[a], slice_of_row[b])
    for indices in steps.values():
        firsts: dict[float, int] = {}
        for i in indices:
            firsts.setdefault(rows["start_s"][i], i)
        ordered = [firsts[t] for t in sorted(firsts)]
        for a, b in zip(ordered, ordered[1:]):
            link(slice_of_row[a], slice_of_row[b])
    starts = {d: np.array([rows["start_s"][i] for i in idx]) for d, idx in compute_by_device.items()}
    ends = {d: np.array([rows["end_s"][i] for i in idx]) for d, idx in compute_by_device.items()}
    for indices in members.values():
        if len(indices) != 2 or rows["phase"][indices[0]] != "pp":
            continue
        sender, receiver = indices
        s_dev, r_dev = rows["device"][sender], rows["device"][receiver]
        if s_dev in compute_by_device:
            k = int(np.searchsorted(ends[s_dev], rows["start_s"][sender] + 1e-15, side="right")) - 1
            if k >= 0:
                link(slice_of_row[compute_by_device[s_dev][k]], slice_of_row[sender])
        if r_dev in compute_by_device:
            k = int(np.searchsorted(starts[r_dev], rows["end_s"][receiver] - 1e-15, side="left"))
            mb = rows["microbatch"][receiver]
            candidates = compute_by_device[r_dev]
            while k < len(candidates) and rows["microbatch"][candidates[k]] != mb:
                k += 1
            if k < len(candidates):
                link(slice_of_row[receiver], slice_of_row[candidates[k]])


def _step_counter(times_and_deltas: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """Running sum of (time, delta) changes, one sample per distinct time."""
    out: list[tuple[int, float]] = []
    level = 0.0
    for t, delta in sorted(times_and_deltas):
        level += delta
        if out and out[-1][0] == t:
            out[-1] = (t, level)
        else:
            out.append((t, level))
    return [(t, 0.0 if abs(v) < 1e-6 else v) for t, v in out]


def _add_counters(model: Model, rows: dict, starts_ns, ends_ns, groups, memory, keep_device, next_uuid) -> None:
    flops: dict[str, list] = {}
    link_rates: dict[str, list] = {}
    power: dict[str, list] = {}
    energy = rows.get("energy_j")
    for i in range(len(starts_ns)):
        duration = (rows["end_s"][i] - rows["start_s"][i])
        if duration <= 0:
            continue
        device = rows["device"][i]
        if energy is not None and energy[i]:
            rate = energy[i] / duration       # sim.energy: a row's energy spread over its interval
            power.setdefault(device, []).extend([(int(starts_ns[i]), rate), (int(ends_ns[i]), -rate)])
        if rows["category"][i] == "compute" and rows["flops"][i]:
            rate = rows["flops"][i] / duration
            flops.setdefault(device, []).extend([(int(starts_ns[i]), rate), (int(ends_ns[i]), -rate)])
        elif device == "network":
            rate = rows["bytes"][i] / duration
            link_rates.setdefault(rows["unit"][i], []).extend([(int(starts_ns[i]), rate), (int(ends_ns[i]), -rate)])
    for device, changes in sorted(flops.items()):
        track = Track(next(next_uuid), "achieved FLOP/s", parent=groups[device].uuid, counter=True,
                      unit="FLOP/s")
        model.tracks.append(track)
        model.counters[track.uuid] = _step_counter(changes)
    for device, changes in sorted(power.items()):
        track = Track(next(next_uuid), "dynamic power (W)", parent=groups[device].uuid, counter=True)
        model.tracks.append(track)
        model.counters[track.uuid] = _step_counter(changes)
    for unit, changes in sorted(link_rates.items()):
        track = Track(next(next_uuid), f"{unit} bytes/s", parent=groups["network"].uuid, counter=True,
                      unit="bytes/s")
        model.tracks.append(track)
        model.counters[track.uuid] = _step_counter(changes)
    if memory is not None and memory.num_rows:
        data = memory.to_pydict()
        series: dict[tuple[str, str], list] = {}
        for device, tier, t, used in zip(data["device"], data["tier"], data["time_s"], data["used_bytes"]):
            if keep_device(device) and device in groups:
                samples = series.setdefault((device, tier), [])
                if samples and samples[-1][0] == _ns(t):
                    samples[-1] = (_ns(t), float(used))
                else:
                    samples.append((_ns(t), float(used)))
        for (device, tier), samples in sorted(series.items()):
            track = Track(next(next_uuid), f"{tier} memory (bytes)", parent=groups[device].uuid, counter=True,
                          unit="bytes")
            model.tracks.append(track)
            model.counters[track.uuid] = samples


def _event_order(model: Model) -> tuple[np.ndarray, np.ndarray]:
    """The order of the trace's events: (time, rank, key, end) ascending, with
    rank 0 slice ends, 1 zero-duration slices (begin, then end), 2 slice begins,
    3 counter samples, and key the slice's position or the counter's track; so
    at one timestamp a slice never ends before it begins and back-to-back
    slices do not overlap. Returns (sorted event codes, their times); a code
    ``2 * i`` is slice i's begin, ``2 * i + 1`` its end, ``-1 - j`` counter
    sample j (in the order of ``model.counters``)."""
    n = len(model.slices)
    starts = np.fromiter((s.start_ns for s in model.slices), dtype=np.int64, count=n)
    ends = np.fromiter((s.end_ns for s in model.slices), dtype=np.int64, count=n)
    order = np.arange(n, dtype=np.int64)
    zero = starts == ends
    counter_tracks = np.array([uuid for uuid, samples in model.counters.items() for _ in samples], dtype=np.int64)
    counter_times = np.array([t for samples in model.counters.values() for t, _ in samples], dtype=np.int64)
    m = len(counter_times)
    times = np.concatenate([starts, np.where(zero, starts, ends), counter_times])
    rank = np.concatenate([np.where(zero, 1, 2), np.where(zero, 1, 0), np.full(m, 3)])
    keys = np.concatenate([order, order, counter_tracks])
    is_end = np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64), np.zeros(m, np.int64)])
    codes = np.concatenate([2 * order, 2 * order + 1, -1 - np.arange(m, dtype=np.int64)])
    sort = np.lexsort((is_end, keys, rank, times))
    return codes[sort], times[sort]


def write_pftrace(model: Model, path: Path) -> None:
    """Native Perfetto protobuf: TracePackets on one sequence, encoded by
    sim.reports.pftrace and streamed to the file in batches."""
    from sim.reports.pftrace import PacketWriter, track_descriptor

    codes, times = _event_order(model)
    counter_values = [(uuid, value) for uuid, samples in model.counters.items() for _, value in samples]
    slices = model.slices
    with _output(path) as sink:
        writer = PacketWriter(sink, SEQUENCE_ID)
        for track in model.tracks:
            writer.descriptor(track_descriptor(track.uuid, track.name, track.parent, track.pid,
                                               track.counter, track.unit))
        begin, end, counter = writer.begin, writer.end, writer.counter
        for code, t in zip(codes.tolist(), writer.timestamps(times)):
            if code < 0:
                counter(t, *counter_values[-1 - code])
            elif code & 1:
                end(t, slices[code >> 1].track)
            else:
                item = slices[code >> 1]
                begin(t, item.track, item.name, item.args, item.flows_out, item.flows_in, item.annotations)
        writer.flush()


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
           max_slices: int | None = None, warn=sys.stderr, progress=None) -> Model:
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
    with collector_paused():   # the model is a few million acyclic objects (sim.runtime.heap)
        with stage(f"laying out {tables['timeline'].num_rows} timeline rows"):
            model = build_model(Path(run_dir), devices, start_s, end_s, max_slices, with_args=fmt == "json",
                                tables=tables)
        if model.dropped and warn is not None:
            warn.write(f"accsim: kept the first {model.total - model.dropped} of {model.total} slices "
                       f"(--max-slices); narrow with --devices or --start/--end to see the rest\n")
        with stage(f"writing {len(model.slices)} slices to {output}"):
            (write_json if fmt == "json" else write_pftrace)(model, output)
    return model
