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
             "grid": {"parallel.microbatches": [4, 8, 15000], "parallel.pp": [4, 3]}}
    # the slow point takes minutes; the limit leaves the fast ones ample room on a loaded machine
    table = sim.sweep(sweep, out=tmp_path, workers=2, timeout_s=20.0, progress=False)
    rows = {(r["parallel.microbatches"], r["parallel.pp"]): r for r in table.to_pylist()}
    assert rows[(4, 4)]["status"] == rows[(8, 4)]["status"] == "ok"
    assert rows[(15000, 4)]["status"] == "error" and "timed out" in rows[(15000, 4)]["error"]
    assert rows[(4, 3)]["status"] == "invalid" and "do not divide" in rows[(4, 3)]["error"]


@pytest.mark.parametrize("where, words", [
    ("9**9**9 > 0", "an exponent of 387420489; at most 64"),
    ("().__class__.__bases__[0].__subclasses__()", "the only functions are"),
    ("__import__('os').system('true')", "the only functions are"),
    ("p.x.__class__ == 1", "'p.x.__class__' is not an axis"),
    ("[x for x in (1, 2)]", "is not allowed"),
    ("'a' * 10**9", "'*' needs numbers"),
    ("p.x / 0 > 1", "division by zero"),
    ("p.x < 'b'", "cannot compare"),
    ("(" * 300 + "1" + ")" * 300, "nested too deeply|not an expression|more than"),
    ("p.x +", "not an expression"),
])
def test_where_is_a_safe_expression_language(where, words):
    with pytest.raises(ScenarioError, match=words):
        expand_points({"grid": {"p.x": [1, 2]}, "where": where})


def test_where_supports_the_documented_operators():
    points, filtered = expand_points({"grid": {"p.x": [1, 2, 3, 4], "p.s": ["a", "b"]},
                                      "where": "(p.x ** 2 >= 4 and p.s in ['a']) or not p.x % 2 == 1 and min(p.x, 3) == 3"})
    assert sorted((p["p.x"], p["p.s"]) for p in points) == [(2, "a"), (3, "a"), (4, "a"), (4, "b")]
    assert filtered == 4


@pytest.mark.parametrize("raw, words", [
    ({"grid": {"status": [1, 2]}}, "'status' is the name of a results column"),
    ({"grid": {"point_id": [1]}}, "'point_id' is the name of a results column"),
    ({"grid": {f"p.a{i}": list(range(10)) for i in range(6)}}, "the axes make 1,000,000 points; at most 100,000"),
    ({"random": {"n": 10**9, "params": {"p.x": {"low": 0, "high": 1}}}}, "random.n: expected at most 100000"),
    ({"random": {"n": 2, "params": {"p.x": {"low": 2, "high": 1}}}}, "low 2 is above high 1"),
    ({"grid": {"p.x": []}}, "expected a non-empty list"),
    ({"grid": {"p.x": [1]}, "zip": {"p.x": [2]}}, "appears in more than one"),
    ({"grid": {"p.x": [1]}, "where": "q.y > 1"}, "'q.y' is not an axis"),
])
def test_sweep_axes_are_checked_before_anything_runs(raw, words):
    with pytest.raises(ScenarioError, match=words):
        expand_points(raw)


def test_a_typo_in_an_axis_fails_when_the_sweep_loads():
    with pytest.raises(ScenarioError, match=r"parallel: unknown key 'microbatchs'"):
        load_sweep({"scenario": PIPELINE, "grid": {"parallel.microbatchs": [4, 8]}})


@pytest.mark.parametrize("options, words", [
    ({"workers": -2}, "--workers: expected an integer from 1 to 4096"),
    ({"workers": 0}, "--workers"), ({"timeout_s": float("nan")}, "--timeout"),
    ({"scheduler": "localhost"}, "--scheduler: expected an address"),
])
def test_sweep_options_are_checked(tmp_path, options, words):
    with pytest.raises(ScenarioError, match=words):
        sim.sweep({"scenario": PIPELINE, "grid": {"parallel.pp": [2]}}, out=tmp_path / "o", progress=False,
                  **options)
    assert not (tmp_path / "o").exists()


def test_a_results_directory_belongs_to_one_sweep(two_workers, tmp_path):
    _, out = two_workers
    assert '"sweep_id"' in (out / "sweep.json").read_text()
    other = {"scenario": PIPELINE, "grid": {"parallel.pp": [2]}}
    with pytest.raises(ScenarioError, match="holds the results of another sweep"):
        sim.sweep(other, out=out, workers=1, progress=False)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ScenarioError, match="not empty and not a sweep's results directory"):
        sim.sweep(other, out=tmp_path, workers=1, progress=False)
    schema = pq.read_schema(next((out / "results").glob("*.parquet")))
    assert schema.metadata[b"accsim.sweep_id"] == load_sweep(GRID).sweep_id.encode()


def test_a_sweep_whose_points_all_fail_exits_2_and_plain_scripts_work(tmp_path):
    sweep_file = tmp_path / "bad.yaml"
    sweep_file.write_text(f"scenario: {PIPELINE}\ngrid:\n  parallel.pp: [3, 5]\n")
    proc = subprocess.run([sys.executable, "-m", "sim", "sweep", str(sweep_file), "--out", str(tmp_path / "o"),
                           "--workers", "1", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "no point of the sweep ran" in proc.stderr
    script = tmp_path / "plain.py"        # no if __name__ == "__main__": guard
    script.write_text("import sim\n"
                      f"table = sim.sweep({{'scenario': {PIPELINE!r}, 'grid': {{'parallel.pp': [2, 4]}}}},\n"
                      f"                  out={str(tmp_path / 'plain')!r}, workers=2, progress=False)\n"
                      "print('rows', table.num_rows)\n")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "rows 2", proc.stderr[-2000:]
