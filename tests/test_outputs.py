"""Run outputs: whole or not at all, --overwrite, provenance, Parquet, nothing non-finite,
Perfetto slices that are valid at zero duration and counters with units."""

import json
import math
import os
import subprocess
import sys
from collections import defaultdict

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

import sim
from sim.errors import AccsimError
from sim.reports.writer import check_finite, clean_stale, prepare_output

from conftest import ROOT

PIPELINE = str(ROOT / "scenarios" / "pipeline_ideal.yaml")
DECODE = str(ROOT / "scenarios" / "npu_pim_decode.yaml")


def accsim(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "sim", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def read_arrow(path):
    with open(path, "rb") as fh:
        return ipc.open_file(fh).read_all()


@pytest.fixture(scope="module")
def decode_result():
    return sim.run(DECODE)


def test_out_naming_a_file_or_a_full_directory_is_refused_before_simulating(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    proc = accsim("run", DECODE, "--out", afile)
    assert proc.returncode == 2 and "exists and is a file" in proc.stderr
    assert proc.stdout == "" and afile.read_text() == "x"
    full = tmp_path / "full"
    full.mkdir()
    (full / "summary.json").write_text("{}")
    proc = accsim("run", "no_such_scenario.yaml", "--out", full)      # refused before the scenario is read
    assert proc.returncode == 2 and "not empty; pass --overwrite" in proc.stderr


def test_overwrite_replaces_the_whole_run_and_only_a_runs_files(tmp_path, decode_result):
    out = tmp_path / "run"
    decode_result.write(out)
    (out / "trace.pftrace").write_bytes(b"from another run")
    with pytest.raises(AccsimError, match="not empty"):
        decode_result.write(out)
    decode_result.write(out, overwrite=True, format="parquet")
    assert sorted(p.name for p in out.iterdir()) == ["bubbles.parquet", "memory.parquet", "summary.json",
                                                    "timeline.parquet", "utilization.parquet"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(AccsimError, match="holds 'notes.txt', which a run does not write"):
        decode_result.write(out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["run"], "no temporaries left beside it"


def test_a_failing_write_leaves_nothing(tmp_path, decode_result):
    out = tmp_path / "run"

    def fail(folder):
        (folder / "trace.arrow").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        decode_result.write(out, extras=[fail])
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = 2**22 + 12345        # above the default pid_max: no such process
    stale = tmp_path / f".run.accsim-tmp-{dead}-abcdef12"
    stale.mkdir()
    (stale / "timeline.arrow").write_bytes(b"x")
    (tmp_path / f".part-1.parquet.tmp-{dead}").write_bytes(b"x")
    mine = tmp_path / f".run.accsim-tmp-{os.getpid()}-abcdef12"
    mine.mkdir()
    clean_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [mine.name]
    prepare_output(tmp_path / "run")
    run = tmp_path / "old-run"          # a run killed mid-write by an older accsim: per-file temporaries
    run.mkdir()
    (run / "summary.json").write_text("{}")
    (run / f".timeline.arrow.tmp-{dead}").write_bytes(b"x")
    prepare_output(run, overwrite=True)
    assert [p.name for p in run.iterdir()] == ["summary.json"]


def test_provenance_in_summary_and_arrow_metadata(tmp_path):
    out = tmp_path / "run"
    proc = accsim("run", PIPELINE, "--out", out, "--quiet", "--set", "parallel.microbatches=4")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    prov = summary["provenance"]
    assert prov["accsim_version"] == sim.__version__ and prov["overrides"] == ["parallel.microbatches=4"]
    assert prov["scenario"]["parallel"]["microbatches"] == 4 and prov["scenario_file"] == PIPELINE
    assert prov["seed"] is None
    for name in ("timeline", "bubbles", "utilization", "memory"):
        metadata = read_arrow(out / f"{name}.arrow").schema.metadata
        assert metadata[b"accsim.version"] == sim.__version__.encode()
        assert json.loads(metadata[b"accsim.provenance"]) == prov
    assert summary["bubble_aggregation"]["bubble_s_by_cause"].startswith("sum over the 4 simulated devices")


def test_parquet_outputs_for_duckdb_and_nullable_integers_for_pandas(tmp_path, decode_result):
    decode_result.write(tmp_path / "a")
    decode_result.write(tmp_path / "p", format="parquet")
    arrow = read_arrow(tmp_path / "a" / "timeline.arrow")
    parquet = pq.read_table(tmp_path / "p" / "timeline.parquet")
    assert parquet.equals(arrow)
    pandas = pytest.importorskip("pandas")
    frame = arrow.to_pandas()
    assert str(frame["layer"].dtype) == "Int64" and str(frame["op_id"].dtype) == "int64"
    assert str(pandas.read_parquet(tmp_path / "p" / "bubbles.parquet")["next_op_id"].dtype) == "Int64"
    duckdb = pytest.importorskip("duckdb")
    rows = duckdb.sql(f"select count(*), max(end_s) from '{tmp_path / 'p' / 'timeline.parquet'}'").fetchall()
    assert rows == [(arrow.num_rows, max(arrow["end_s"].to_pylist()))]


def test_non_finite_values_are_never_written(tmp_path, decode_result):
    bad = pa.table({"x": pa.array([1.0, math.inf])})
    with pytest.raises(AccsimError, match=r"non-finite value in t.x \(row 1\)"):
        check_finite({"t": bad}, {})
    with pytest.raises(AccsimError, match="summary.json at a.b"):
        check_finite({}, {"a": {"b": math.nan}})
    summary = dict(decode_result.summary, makespan_s=math.inf)
    result = sim.Result(decode_result.timeline, decode_result.bubbles, decode_result.utilization,
                        decode_result.memory, summary)
    with pytest.raises(AccsimError, match="makespan_s"):
        result.write(tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_ideal_links_have_no_peak_rather_than_an_infinite_one(tmp_path):
    result = sim.run(PIPELINE, {"parallel.microbatches": 4})
    links = [r for r in result.utilization.to_pylist() if r["device"] == "network"]
    assert links and all(r["peak_bytes_per_s"] is None for r in links)


def parse_pftrace(path):
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
    trace = pb.Trace()
    trace.ParseFromString(path.read_bytes())
    return pb, trace


def test_perfetto_zero_duration_slices_and_counter_units(tmp_path):
    out = tmp_path / "run"
    proc = accsim("run", PIPELINE, "--out", out, "--perfetto", "--quiet")
    assert proc.returncode == 0, proc.stderr
    timeline = read_arrow(out / "timeline.arrow")
    zero = sum(1 for s, e in zip(timeline["start_s"].to_pylist(), timeline["end_s"].to_pylist()) if s == e)
    assert zero > 0, "the scenario has zero-duration slices (ideal links)"
    pb, trace = parse_pftrace(out / "trace.pftrace")
    depth = defaultdict(int)
    units = {}
    for packet in trace.packet:
        if packet.HasField("track_descriptor") and packet.track_descriptor.HasField("counter"):
            d = packet.track_descriptor
            units[d.name] = (d.counter.unit, d.counter.unit_name)
        event = packet.track_event
        if event.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
            depth[event.track_uuid] += 1
            assert depth[event.track_uuid] == 1, "slices on a track never nest or overlap"
        elif event.type == pb.TrackEvent.TYPE_SLICE_END:
            depth[event.track_uuid] -= 1
            assert depth[event.track_uuid] == 0, "an end before its begin"
    assert units["achieved FLOP/s"] == (0, "FLOP/s")
    assert units["hbm memory (bytes)"][0] == pb.CounterDescriptor.UNIT_SIZE_BYTES


@pytest.mark.parametrize("make, words", [
    (lambda d: None, "not a run directory"),
    (lambda d: [(d / f"{n}.arrow").write_bytes(b"garbage") for n in ("timeline", "bubbles")],
     "not a readable table"),
    (lambda d: [pq.write_table(pa.table({"a": [1]}), d / f"{n}.parquet") for n in ("timeline", "bubbles")],
     "column 'device' of type string missing"),
])
def test_perfetto_on_what_is_not_a_run(tmp_path, make, words):
    run = tmp_path / "run"
    run.mkdir()
    make(run)
    proc = accsim("perfetto", run, "-o", tmp_path / "x.pftrace")
    assert proc.returncode == 2 and words in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert not (tmp_path / "x.pftrace").exists()


def test_perfetto_reads_parquet_runs(tmp_path, decode_result):
    decode_result.write(tmp_path / "p", format="parquet")
    proc = accsim("perfetto", tmp_path / "p", "-o", tmp_path / "t.json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "t.json").read_text())["traceEvents"]
