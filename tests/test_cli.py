"""End-to-end: the accsim command line on the shipped scenarios, as a user runs it."""

import json
import subprocess
import sys

import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pytest

from conftest import ROOT


def accsim(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "sim", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def read_arrow(path):
    with open(path, "rb") as fh:
        return ipc.open_file(fh).read_all()


def test_quickstart_is_a_3d_parallel_training_run(tmp_path):
    out = tmp_path / "quickstart"
    proc = accsim("run", "scenarios/quickstart.yaml", "--out", out)
    assert proc.returncode == 0, proc.stderr
    for words in ("iteration", "MFU", "bubbles", "exposed communication", "memory per GPU"):
        assert words in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["gpus"] == 16 and summary["parallel"]["tp"] == 4
    assert 0 < summary["mfu"] < summary["hfu"] < 1
    assert summary["exposed_comm_s"]["tp"] > 0 and summary["exposed_comm_s"]["dp"] > 0
    timeline = read_arrow(out / "timeline.arrow")
    assert {"compute", "memory", "comm"} <= set(timeline["category"].to_pylist())
    assert any("->" in unit for unit in timeline["unit"].to_pylist())
    # SM arrays and two memory tiers: each microbatch's batch comes from host memory
    assert {"sm", "hbm", "host"} <= set(timeline["unit"].to_pylist())
    loads = timeline.filter(pc.equal(timeline["unit"], "host")).to_pylist()
    tokens = 2 * 2048  # microbatch 2 x sequence 2048 (scenarios/quickstart.yaml)
    assert sorted({row["name"].split(".")[-1] for row in loads}) == ["load_inputs", "load_targets"]
    assert {row["bytes"] for row in loads} == {16.0 * tokens, 12.0 * tokens}
    for row in loads:  # alone on PCIe at 32 GB/s
        assert row["end_s"] - row["start_s"] == pytest.approx(row["bytes"] / 32e9, rel=1e-6)
    bubbles = read_arrow(out / "bubbles.arrow")
    assert "pipeline_fill" in bubbles["cause"].to_pylist()


def test_npu_pim_decode_end_to_end(tmp_path):
    out = tmp_path / "decode"
    proc = accsim("run", "scenarios/npu_pim_decode.yaml", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "makespan" in proc.stdout and "MFU" in proc.stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == ["bubbles.arrow", "memory.arrow", "summary.json", "timeline.arrow", "utilization.arrow"]
    timeline = read_arrow(out / "timeline.arrow")
    for column in ("device", "unit", "op_id", "name", "category", "start_s", "end_s", "flops", "bytes"):
        assert column in timeline.column_names
    units = set(timeline["unit"].to_pylist())
    assert {"mxu", "pim", "scratchpad", "hbm"} <= units
    summary = json.loads((out / "summary.json").read_text())
    for key in ("makespan_s", "total_flops", "mfu", "events", "wall_s", "peak_memory_bytes"):
        assert key in summary
    assert 0 < summary["mfu"] < 1
    assert summary["peak_memory_bytes"]["npu0"]["scratchpad"] > 0
    assert summary["makespan_s"] == pytest.approx(max(timeline["end_s"].to_pylist()))
    util = read_arrow(out / "utilization.arrow")
    assert set(util.column_names) >= {"busy_s", "span_s", "utilization", "achieved_flops_per_s",
                                      "peak_flops_per_s", "achieved_bytes_per_s", "peak_bytes_per_s"}
    bubbles = read_arrow(out / "bubbles.arrow")
    assert set(bubbles["cause"].to_pylist()) <= {"dependency_wait", "memory_wait", "resource_wait", "no_work"}


@pytest.mark.parametrize("scenario", ["scenarios/quickstart.yaml", "scenarios/npu_pim_decode.yaml"])
def test_same_inputs_give_byte_identical_arrow_files(tmp_path, scenario):
    for name in ("a", "b"):
        assert accsim("run", scenario, "--out", tmp_path / name, "--quiet").returncode == 0
    for table in ("timeline", "bubbles", "utilization", "memory"):
        assert (tmp_path / "a" / f"{table}.arrow").read_bytes() == (tmp_path / "b" / f"{table}.arrow").read_bytes()


def test_set_overrides_change_the_device(tmp_path):
    base = accsim("run", "scenarios/npu_pim_decode.yaml", "--out", tmp_path / "c", "--quiet")
    blocked = accsim("run", "scenarios/npu_pim_decode.yaml", "--out", tmp_path / "b", "--quiet",
                     "--set", "device_overrides.pim.mode=blocked")
    assert base.returncode == blocked.returncode == 0
    slow = json.loads((tmp_path / "b" / "summary.json").read_text())["makespan_s"]
    fast = json.loads((tmp_path / "c" / "summary.json").read_text())["makespan_s"]
    assert slow > fast


@pytest.mark.parametrize("trace_text,message", [
    ('{"id": 1, "name": "a", "op": "gemm", "flops": 1, "bytes_read": 1, "bytes_written": 1, "deps": [2]}\n'
     '{"id": 2, "name": "b", "op": "gemm", "flops": 1, "bytes_read": 1, "bytes_written": 1, "deps": [1], "stream": 1}\n',
     "dependency cycle"),
    ('{"id": 1, "name": "a", "op": "warp", "flops": 1, "bytes_read": 1, "bytes_written": 1}\n', "unknown op type 'warp'"),
])
def test_bad_trace_exits_2_with_one_line_and_writes_nothing(tmp_path, trace_text, message):
    trace = tmp_path / "bad.jsonl"
    trace.write_text(trace_text)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"device: a100_sxm4_80gb\ntrace: {trace}\n")
    out = tmp_path / "out"
    proc = accsim("run", scenario, "--out", out)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr and str(trace) in proc.stderr
    assert not out.exists()


def test_out_of_memory_exits_2_and_writes_nothing(tmp_path):
    out = tmp_path / "oom"
    proc = accsim("run", "scenarios/npu_pim_decode.yaml", "--out", out, "--set", "memory.resident_bytes.hbm=40GiB")
    assert proc.returncode == 2
    assert "tier hbm" in proc.stderr and "requested" in proc.stderr
    assert not out.exists()


def test_scenario_errors(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text("device: no_such_chip\ntrace: traces/llm_decode_step.jsonl\n")
    proc = accsim("run", scenario, "--out", tmp_path / "o")
    assert proc.returncode == 2 and "device spec 'no_such_chip' not found" in proc.stderr
    scenario.write_text("device: a100_sxm4_80gb\ntrace: traces/llm_decode_step.jsonl\ncolour: red\n")
    proc = accsim("run", scenario, "--out", tmp_path / "o")
    assert proc.returncode == 2 and "unknown key 'colour'" in proc.stderr
    proc = accsim("run", "scenarios/npu_pim_decode.yaml", "--out", tmp_path / "o",
                  "--set", "device_overrides.memory.hbm.bandwidth_bytes_per_s=-5")
    assert proc.returncode == 2 and "bandwidth_bytes_per_s" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_trace_validate_and_info():
    proc = accsim("trace", "validate", "traces/gpt_layer_fwd_bwd.jsonl")
    assert proc.returncode == 0 and "ok (29 ops" in proc.stdout
    proc = accsim("trace", "info", "traces/llm_decode_step.arrow", "--device", "npu_pim", "--json")
    assert proc.returncode == 0
    info = json.loads(proc.stdout)
    assert info["ops"] == 56 and info["op_counts"]["gemv"] == 8
    assert 0 < info["critical_path_s"] <= info["sum_of_op_times_s"]


def test_help_lists_commands():
    proc = accsim("--help")
    assert proc.returncode == 0
    for command in ("run", "trace", "devices"):
        assert command in proc.stdout
