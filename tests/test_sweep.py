"""Sweeps on a real Dask LocalCluster (worker processes on loopback)."""

import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

import sim
from sim.errors import ScenarioError
from sim.sweeps.points import expand_points, load_sweep, point_id
from sim.sweeps.runner import METRICS, metrics_of, read_results

from conftest import ROOT

PIPELINE = str(ROOT / "scenarios" / "pipeline_ideal.yaml")
GRID = {"scenario": PIPELINE,
        "grid": {"parallel.pp": [2, 4], "parallel.microbatches": [4, 6, 8],
                 "parallel.schedule": ["gpipe", "1f1b"], "model.hidden": [1024, 2048]}}


def test_points_grid_zip_random_where():
    points, filtered = expand_points({"grid": {"a": [1, 2], "b": ["x", "y"]}, "zip": {"c": [1, 2], "d": [3, 4]}})
    assert len(points) == 8 and filtered == 0
    assert points[0] == {"a": 1, "b": "x", "c": 1, "d": 3}
    points, filtered = expand_points({"grid": {"p.x": [1, 2, 3, 4]}, "where": "p.x % 2 == 0"})
    assert [p["p.x"] for p in points] == [2, 4] and filtered == 2
    first, _ = expand_points({"random": {"n": 5, "seed": 3, "params": {"v": {"low": 1, "high": 9, "type": "int"},
                                                                          "s": {"choices": ["a", "b"]}}}})
    again, _ = expand_points({"random": {"n": 5, "seed": 3, "params": {"v": {"low": 1, "high": 9, "type": "int"},
                                                                          "s": {"choices": ["a", "b"]}}}})
    assert first == again and all(1 <= p["v"] <= 9 for p in first)
    with pytest.raises(ScenarioError, match="same length"):
        expand_points({"zip": {"a": [1, 2], "b": [1]}})
    with pytest.raises(ScenarioError, match="at least one of grid"):
        expand_points({})


def test_point_id_is_a_hash_of_the_resolved_scenario():
    base = {"parallel": {"pp": 4}, "model": {"layers": 32}}
    assert point_id(base, {"parallel.pp": 2}) == point_id(base, {"parallel.pp": 2})
    assert point_id(base, {"parallel.pp": 2}) != point_id(base, {"parallel.pp": 8})
    assert point_id(base, {"parallel.pp": 4}) == point_id(base, {})


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep2")
    return sim.sweep(GRID, out=out, workers=2, progress=False), out


def test_sweep_completes_and_matches_each_point_alone(two_workers):
    table, out = two_workers
    spec = load_sweep(GRID)
    assert table.num_rows == len(spec.points) == 24
    assert len(set(table["point_id"].to_pylist())) == 24
    rows = {r["point_id"]: r for r in table.to_pylist()}
    for point in spec.points[::5]:
        row = rows[point_id(spec.base, point)]
        alone = sim.run(PIPELINE, [f"{k}={v}" for k, v in point.items()])
        assert row["status"] == "ok"
        assert {k: row[k] for k, _ in METRICS} == metrics_of(alone.summary)
    assert pq.read_table(next((out / "results").glob("*.parquet"))).num_rows == 24


def test_one_and_two_workers_give_the_same_results(two_workers, tmp_path):
    table, _ = two_workers
    one = sim.sweep(GRID, out=tmp_path, workers=1, progress=False)
    columns = ["point_id", "status"] + [name for name, _ in METRICS if name not in ("events",)]
    assert one.select(columns).sort_by("point_id").equals(table.select(columns).sort_by("point_id"))


def test_rerun_skips_finished_points(two_workers):
    table, out = two_workers
    again = sim.sweep(GRID, out=out, workers=1, progress=False)
    assert again.num_rows == 24 and again.sort_by("point_id").equals(table.sort_by("point_id"))


def test_killed_sweep_resumes_without_duplicates(tmp_path):
    sweep_file = tmp_path / "slow.yaml"
    sweep_file.write_text(f"scenario: {PIPELINE}\ngrid:\n  parallel.pp: [4, 8]\n"
                          "  parallel.microbatches: [32, 40, 48, 56, 64, 72, 80, 88, 96, 104]\n"
                          "  training.continue_on_oom: [true]\n")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "sim", "sweep", str(sweep_file), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((out / "results").glob("part-*.parquet")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = read_results(out)
    assert partial is not None and 0 < partial.num_rows < 20
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    final = read_results(out)
    assert final.num_rows == 20 and len(set(final["point_id"].to_pylist())) == 20
    assert set(final["status"].to_pylist()) == {"ok"}


def test_failing_points_are_recorded_and_the_rest_complete(tmp_path):
    sweep = {"scenario": PIPELINE,
             "grid": {"parallel.microbatches": [4, 8, 60000], "parallel.pp": [4, 3]}}
    table = sim.sweep(sweep, out=tmp_path, workers=2, timeout_s=4.0, progress=False)
    rows = {(r["parallel.microbatches"], r["parallel.pp"]): r for r in table.to_pylist()}
    assert rows[(4, 4)]["status"] == rows[(8, 4)]["status"] == "ok"
    assert rows[(60000, 4)]["status"] == "error" and "timed out" in rows[(60000, 4)]["error"]
    assert rows[(4, 3)]["status"] == "invalid" and "do not divide" in rows[(4, 3)]["error"]
