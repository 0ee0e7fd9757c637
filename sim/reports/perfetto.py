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

Native traces use the ``perfetto`` package's protos (``TrackEvent`` with
interned event names on one packet sequence). Timestamps are integer
nanoseconds, each converted from simulated seconds on its own (no running
sums, so no drift); events on a track are emitted in time order and every
slice that begins ends.
"""

from __future__ import annotations

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

NS = 1_000_000_000
SEQUENCE_ID = 1


def _ns(seconds: float) -> int:
    return int(round(seconds * NS))


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


def build_model(run_dir: Path, devices: str | None = None, start_s: float | None = None,
                end_s: float | None = None, max_slices: int | None = None) -> Model:
    """Read a run directory and lay its tables out as tracks, slices, flows and counters."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AccsimError(f"{run_dir}: not a run directory (not a directory); give the --out of accsim run")
    paths = {name: table_path(run_dir, name) for name in ("timeline", "bubbles", "memory")}
    for name in ("timeline", "bubbles"):
        if paths[name] is None:
            raise AccsimError(f"{run_dir}: not a run directory (missing {name}.arrow); run accsim run first")
    timeline = read_table(paths["timeline"], "timeline")
    bubbles = read_table(paths["bubbles"], "bubbles")
    memory = read_table(paths["memory"], "memory") if paths["memory"] is not None else None

    def keep_device(name: str) -> bool:
        return devices is None or fnmatch.fnmatchcase(name, devices)

    def window(table: pa.Table) -> pa.Table:
        mask = pa.array([keep_device(d) for d in table["device"].to_pylist()], type=pa.bool_())
        if start_s is not None:
            mask = pc.and_(mask, pc.greater_equal(table["end_s"], start_s))
        if end_s is not None:
            mask = pc.and_(mask, pc.less_equal(table["start_s"], end_s))
        return table.filter(mask)

    latest = max([pc.max(t[c]).as_py() or 0.0 for t, c in ((timeline, "end_s"), (bubbles, "end_s"))
                  if t.num_rows] + [0.0])
    if latest * NS >= 2**63:
        raise AccsimError(f"{run_dir}: the run spans {latest:.3g} s, beyond the ~292 years a Perfetto "
                          f"trace can time in nanoseconds")
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
    starts_ns = np.array([_ns(x) for x in rows["start_s"]], dtype=np.int64)
    ends_ns = np.array([_ns(x) for x in rows["end_s"]], dtype=np.int64)
    unit_rows: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(rows["device"], rows["unit"])):
        unit_rows.setdefault(key, []).append(i)
    slice_of_row: list[Slice | None] = [None] * timeline.num_rows
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
            args = {"op_id": rows["op_id"][i], "category": rows["category"][i], "flops": rows["flops"][i],
                    "bytes": rows["bytes"][i], "stream": rows["stream"][i], "units_held": rows["units_held"][i]}
            for key in ("layer", "stage", "microbatch", "phase", "detail"):
                if rows[key][i] is not None:
                    args["collective" if key == "detail" else key] = rows[key][i]
            item = Slice(lane_tracks[lane].uuid, int(starts_ns[i]), int(ends_ns[i]), rows["name"][i], args)
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
    for device, track in tracks.items():
        items = [s for s in model.slices if s.track == track.uuid]
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


def write_pftrace(model: Model, path: Path) -> None:
    """Native Perfetto protobuf, written with the perfetto package's protos."""
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
    from perfetto.trace_builder.proto_builder import TraceProtoBuilder

    builder = TraceProtoBuilder()
    first = True

    def packet():
        nonlocal first
        p = builder.add_packet()
        p.trusted_packet_sequence_id = SEQUENCE_ID
        if first:
            p.sequence_flags = pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED
            first = False
        else:
            p.sequence_flags = pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE
        return p

    for track in model.tracks:
        p = packet()
        p.track_descriptor.uuid = track.uuid
        if track.pid is not None:
            p.track_descriptor.process.pid = track.pid
            p.track_descriptor.process.process_name = track.name
        else:
            p.track_descriptor.name = track.name
            if track.parent is not None:
                p.track_descriptor.parent_uuid = track.parent
            if track.counter:
                counter = p.track_descriptor.counter
                counter.SetInParent()
                if track.unit == "bytes":
                    counter.unit = pb.CounterDescriptor.UNIT_SIZE_BYTES
                elif track.unit:
                    counter.unit_name = track.unit
    # At one timestamp: slices that end, then zero-duration slices (begin and
    # end together), then slices that begin, then counter samples; so a slice
    # never ends before it begins and back-to-back slices do not overlap.
    events: list[tuple[int, int, int, int, object]] = []
    for order, item in enumerate(model.slices):
        if item.end_ns == item.start_ns:
            events.append((item.start_ns, 1, order, 0, item))
            events.append((item.start_ns, 1, order, 1, item))
        else:
            events.append((item.start_ns, 2, order, 0, item))
            events.append((item.end_ns, 0, order, 1, item))
    for uuid, samples in model.counters.items():
        for t, value in samples:
            events.append((t, 3, uuid, 0, value))
    events.sort(key=lambda e: (e[0], e[1], e[2], e[3]))
    interned: dict[str, int] = {}
    for t, kind, key, end, item in events:
        p = packet()
        p.timestamp = t
        event = p.track_event
        if kind == 3:
            event.type = pb.TrackEvent.TYPE_COUNTER
            event.track_uuid = key
            event.double_counter_value = float(item)
            continue
        event.track_uuid = item.track
        if not end:
            event.type = pb.TrackEvent.TYPE_SLICE_BEGIN
            iid = interned.get(item.name)
            if iid is None:
                iid = interned[item.name] = len(interned) + 1
                entry = p.interned_data.event_names.add()
                entry.iid = iid
                entry.name = item.name
            event.name_iid = iid
            for name, value in item.args.items():
                annotation = event.debug_annotations.add()
                annotation.name = name
                if isinstance(value, bool) or isinstance(value, str):
                    annotation.string_value = str(value)
                elif isinstance(value, int):
                    annotation.int_value = value
                else:
                    annotation.double_value = float(value)
            event.flow_ids.extend(item.flows_out)
            event.terminating_flow_ids.extend(item.flows_in)
        else:
            event.type = pb.TrackEvent.TYPE_SLICE_END
    _atomic_write(path, builder.serialize())


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


def _atomic_write(path: Path, data: bytes) -> None:
    from sim.reports.writer import atomic_write_bytes, clean_stale
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent)
    atomic_write_bytes(path, data)


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
           max_slices: int | None = None, warn=sys.stderr) -> Model:
    """Write a run's timeline as ``pftrace`` (default) or ``json`` (by ``fmt`` or suffix)."""
    output = Path(output)
    fmt = fmt or ("json" if output.suffix == ".json" else "pftrace")
    if fmt not in ("pftrace", "json"):
        raise AccsimError(f"--format: expected pftrace or json, got {fmt!r}")
    _check_window(start_s, end_s, max_slices)
    if output.is_dir():
        raise AccsimError(f"-o {output}: is a directory; give a file name such as {output / 'trace.pftrace'}")
    model = build_model(Path(run_dir), devices, start_s, end_s, max_slices)
    if model.dropped and warn is not None:
        warn.write(f"accsim: kept the first {model.total - model.dropped} of {model.total} slices "
                   f"(--max-slices); narrow with --devices or --start/--end to see the rest\n")
    (write_json if fmt == "json" else write_pftrace)(model, output)
    return model
