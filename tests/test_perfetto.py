"""Perfetto export: parse the written trace back and check it against the run's own tables."""

import json
import subprocess
import sys
from collections import defaultdict

import pyarrow.ipc as ipc
import pytest

from conftest import ROOT

pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2",
                         reason="the perfetto package is a runtime dependency; install accsim")


def accsim(*args):
    return subprocess.run([sys.executable, "-m", "sim", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def read_arrow(path):
    with open(path, "rb") as fh:
        return ipc.open_file(fh).read_all()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("perfetto") / "run"
    proc = accsim("run", "scenarios/quickstart.yaml", "--out", out, "--perfetto", "--quiet",
                  "--set", "parallel.microbatches=4", "--set", "parallel.global_batch=null")
    assert proc.returncode == 0, proc.stderr
    return out


def parse(path):
    trace = pb.Trace()
    trace.ParseFromString(path.read_bytes())
    tracks, events = {}, []
    for packet in trace.packet:
        if packet.HasField("track_descriptor"):
            d = packet.track_descriptor
            tracks[d.uuid] = d
        elif packet.HasField("track_event"):
            events.append(packet)
    return tracks, events


def check_trace(path, timeline):
    tracks, events = parse(path)
    begins = defaultdict(int)
    open_stack = defaultdict(list)
    last_ts = defaultdict(int)
    outgoing, incoming = set(), set()
    unit_slices = 0
    for packet in events:
        event, ts = packet.track_event, packet.timestamp
        assert ts >= last_ts[event.track_uuid], "timestamps must not go back on a track"
        last_ts[event.track_uuid] = ts
        if event.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
            assert not open_stack[event.track_uuid], "slices on one track must not overlap"
            open_stack[event.track_uuid].append(ts)
            begins[event.track_uuid] += 1
            if not tracks[event.track_uuid].name.startswith("bubbles"):
                unit_slices += 1
            outgoing.update(event.flow_ids)
            incoming.update(event.terminating_flow_ids)
        elif event.type == pb.TrackEvent.TYPE_SLICE_END:
            assert open_stack[event.track_uuid], "an end without a begin"
            assert open_stack[event.track_uuid].pop() <= ts
    assert all(not stack for stack in open_stack.values()), "every slice is closed"
    assert unit_slices == timeline.num_rows
    assert outgoing and outgoing == incoming, "every flow id appears at both ends"
    return tracks, events


def test_pftrace_round_trip(run_dir):
    timeline = read_arrow(run_dir / "timeline.arrow")
    tracks, events = check_trace(run_dir / "trace.pftrace", timeline)
    names = {d.name for d in tracks.values()} | {d.process.process_name for d in tracks.values()}
    for expected in ("node0/gpu0", "network", "sm", "hbm", "comm", "bubbles", "achieved FLOP/s",
                     "hbm memory (bytes)"):
        assert expected in names
    assert any(name.endswith("bytes/s") and "->" in name for name in names)
    link_counters = [d for d in tracks.values() if d.name.endswith("bytes/s")]
    assert link_counters and all(d.counter.unit_name == "bytes/s" for d in link_counters)


def test_memory_counter_matches_the_ledger(run_dir):
    memory = read_arrow(run_dir / "memory.arrow").to_pylist()
    tracks, events = parse(run_dir / "trace.pftrace")
    processes = {uuid: d.process.process_name for uuid, d in tracks.items() if d.HasField("process")}
    counter_track = next(uuid for uuid, d in tracks.items()
                         if d.name == "hbm memory (bytes)" and processes[d.parent_uuid] == "node0/gpu0")
    samples = [(p.timestamp, p.track_event.double_counter_value) for p in events
               if p.track_event.track_uuid == counter_track]
    ledger = [r for r in memory if r["device"] == "node0/gpu0" and r["tier"] == "hbm"]
    for row in ledger[:: max(1, len(ledger) // 20)]:
        ts = round(row["time_s"] * 1e9)
        value_at = [v for t, v in samples if t <= ts][-1]
        last_at_same_time = [r["used_bytes"] for r in ledger if round(r["time_s"] * 1e9) == ts][-1]
        assert value_at == last_at_same_time


def test_filters_and_slice_cap(run_dir, tmp_path):
    out = tmp_path / "gpu0.pftrace"
    proc = accsim("perfetto", run_dir, "-o", out, "--devices", "node0/gpu0", "--max-slices", "50")
    assert proc.returncode == 0, proc.stderr
    assert "kept the first 50 of" in proc.stderr
    tracks, events = parse(out)
    processes = {d.process.process_name for d in tracks.values() if d.HasField("process")}
    assert processes == {"node0/gpu0"}
    unit_begins = [p for p in events if p.track_event.type == pb.TrackEvent.TYPE_SLICE_BEGIN
                   and not tracks[p.track_event.track_uuid].name.startswith("bubbles")]
    assert len(unit_begins) == 50
    window = tmp_path / "window.pftrace"
    assert accsim("perfetto", run_dir, "-o", window, "--start", "0.01", "--end", "0.02").returncode == 0
    _, events = parse(window)
    begins = [p.timestamp for p in events if p.track_event.type == pb.TrackEvent.TYPE_SLICE_BEGIN]
    assert begins and max(begins) <= 0.02e9


def test_json_follows_the_trace_event_format(run_dir, tmp_path):
    out = tmp_path / "trace.json"
    assert accsim("perfetto", run_dir, "-o", out).returncode == 0
    data = json.loads(out.read_text())
    events = data["traceEvents"]
    timeline = read_arrow(run_dir / "timeline.arrow")
    complete = [e for e in events if e["ph"] == "X"]
    assert len(complete) >= timeline.num_rows
    first = timeline.sort_by("start_s").to_pylist()[0]
    assert min(e["ts"] for e in complete) == pytest.approx(first["start_s"] * 1e6)
    for e in complete:
        assert {"name", "ts", "dur", "pid", "tid"} <= set(e) and e["dur"] >= 0
    starts = {e["id"] for e in events if e["ph"] == "s"}
    finishes = {e["id"] for e in events if e["ph"] == "f"}
    assert starts and starts == finishes
    assert any(e["ph"] == "C" for e in events) and any(e["ph"] == "M" for e in events)


def test_not_a_run_directory(tmp_path):
    proc = accsim("perfetto", tmp_path, "-o", tmp_path / "x.pftrace")
    assert proc.returncode == 2 and "not a run directory" in proc.stderr
