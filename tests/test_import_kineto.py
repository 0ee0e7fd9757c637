"""accsim import kineto: PyTorch profiler traces as accsim traces. A real CPU run replays to
its measured step time; synthetic GPU traces (every event torch.profiler writes) replay to
their closed-form timelines; bad input is one line, exit 2, nothing written."""

import gzip
import json
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

import sim
from sim.engine.device import bind_op, isolated_seconds
from sim.hardware.specs import load_device_spec
from sim.importers.kineto import convert, gemm_shape
from sim.importers.kineto_synth import Step, expected_step_us, rank_events, timeline, write
from sim.workload.trace import load_trace, write_trace

from conftest import ROOT

SHIPPED = ROOT / "traces" / "kineto_tiny_transformer.json.gz"
TOLERANCE = 0.01  # replay vs measured step (docs/trace-format.md)


def accsim(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "sim", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def replay(ops, tmp_path, **scenario):
    write_trace(ops, tmp_path / "t.arrow")
    return sim.run({"device": "a100_sxm4_80gb", "trace": str(tmp_path / "t.arrow"), **scenario})


# ---------------------------------------------------------------- the real CPU run


def test_shipped_profile_imports_to_the_shipped_trace_and_replays_to_its_measured_step(tmp_path):
    out = tmp_path / "tiny.arrow"
    proc = accsim("import", "kineto", SHIPPED, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == (ROOT / "traces" / "kineto_tiny_transformer.arrow").read_bytes()
    measured = float(re.search(r"measured step ([\d.]+) ms", proc.stdout).group(1)) * 1e-3
    # the measured step: the two ProfilerStep annotations, end to end
    with gzip.open(SHIPPED, "rt") as fh:
        steps = [e for e in json.load(fh)["traceEvents"] if e.get("name", "").startswith("ProfilerStep#")]
    assert measured == pytest.approx((max(e["ts"] + e["dur"] for e in steps) - min(e["ts"] for e in steps)) * 1e-6,
                                     abs=1e-6)
    result = sim.run(ROOT / "scenarios" / "kineto_tiny_transformer.yaml")
    assert result.summary["makespan_s"] == pytest.approx(measured, rel=TOLERANCE)
    trace = load_trace(out)
    gemms = [op for op in trace.ops if op.op == "gemm"]
    assert len(gemms) == 78 and all(op.m and op.n and op.k for op in gemms)
    assert {op.op for op in trace.ops} >= {"gemm", "host", "elementwise"}


def test_reprice_prices_the_recorded_gemms_with_the_device_model(tmp_path):
    """A CPU run is one chain on its thread, so the repriced step is the measured
    one with each GEMM's measured time replaced by its time on the device."""
    measured = convert([SHIPPED]).ops
    repriced = convert([SHIPPED], reprice=True, dtype="bf16").ops
    spec = load_device_spec("a100_sxm4_80gb")
    change = 0.0
    for before, after in zip(measured, repriced):
        if before.op == "gemm":
            assert after.duration_s is None and after.dtype == "bf16"
            change += isolated_seconds(bind_op(after, spec, "t"), spec) - before.duration_s
        else:
            assert after == before
    base = replay(measured, tmp_path).summary["makespan_s"]
    assert replay(repriced, tmp_path).summary["makespan_s"] == pytest.approx(base + change, rel=1e-9)
    assert change < 0


# ---------------------------------------------------------------- GPU traces in closed form

LINKS = {"cluster_options": {"bandwidth_bytes_per_s": 100e9, "latency_s": 1e-6},
         "device_overrides": {"sm_array": {"comm_sms": 0}}}


def test_two_rank_gpu_trace_replays_to_its_closed_form(tmp_path):
    step = Step(ranks=2)
    result = convert(write(step, tmp_path))
    assert result.measured_step_s == pytest.approx(timeline(step)["end"] * 1e-6)
    ops = result.ops
    collectives = [op for op in ops if op.op == "allreduce"]
    assert len(collectives) == step.layers
    assert all(op.group == (0, 1) and op.bytes_read == step.grad_bytes for op in collectives)
    gemms = [op for op in ops if op.op == "gemm"]
    assert len(gemms) == 2 * step.layers and all((op.m, op.n, op.k) == (2048, 1024, 1024) for op in gemms)
    # ring all-reduce on two ranks: 2 (p - 1) steps of S / p bytes plus the latency
    t_ar = 2 * (1e-6 + step.grad_bytes / 2 / 100e9)
    run = replay(ops, tmp_path, cluster="fully_connected:2", **LINKS)
    assert run.summary["makespan_s"] == pytest.approx(expected_step_us(step, t_ar * 1e6) * 1e-6, rel=1e-9)
    assert run.summary["bubble_s_by_cause"].get("host_wait", 0) > 0


def test_single_rank_replay_on_its_own_measurements(tmp_path):
    """One rank's all-reduce on a group of one moves nothing: the step is the
    timeline with all-reduces of zero time."""
    step = Step(ranks=1, layers=3, launch_us=40.0)
    ops = convert(write(step, tmp_path)).ops
    run = replay(ops, tmp_path, cluster="fully_connected:1")
    assert run.summary["makespan_s"] == pytest.approx(expected_step_us(step, 0.0) * 1e-6, rel=1e-9)


def test_launch_bound_steps_wait_for_the_host(tmp_path):
    """Launches slower than kernels: each kernel starts at its launch."""
    step = Step(ranks=1, layers=3, launch_us=150.0, allreduce_us=0.0)
    run = replay(convert(write(step, tmp_path)).ops, tmp_path, cluster="fully_connected:1")
    assert run.summary["makespan_s"] == pytest.approx(timeline(step)["end"] * 1e-6, rel=1e-9)


def test_gzip_flows_and_step_selection(tmp_path):
    step = Step(ranks=1, steps=2)
    plain = convert(write(step, tmp_path))
    zipped = convert(write(step, tmp_path, gz=True))
    assert zipped.ops == plain.ops
    # without args.correlation the ac2g flow events link launches to kernels
    events = rank_events(step, 0)
    for event in events:
        if event.get("cat") == "kernel":
            del event["args"]["correlation"]
    path = tmp_path / "flows.json"
    path.write_text(json.dumps({"traceEvents": events}))
    assert convert([path]).ops == plain.ops
    one = convert(write(step, tmp_path), step=1)
    assert one.window == "ProfilerStep#1" and one.measured_step_s == pytest.approx(timeline(step)["end"] * 1e-6)
    assert len(one.ops) < len(plain.ops)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4096), st.integers(1, 4096), st.integers(1, 4096), st.integers(1, 64))
def test_gemm_shapes_from_recorded_input_dims(m, n, k, b):
    assert gemm_shape("aten::mm", [[m, k], [k, n]]) == (m, n, k, 1)
    assert gemm_shape("aten::addmm", [[n], [m, k], [k, n], [], []]) == (m, n, k, 1)
    assert gemm_shape("aten::bmm", [[b, m, k], [b, k, n]]) == (m, n, k, b)
    assert gemm_shape("aten::baddbmm", [[b, m, n], [b, m, k], [b, k, n], [], []]) == (m, n, k, b)
    assert gemm_shape("aten::linear", [[b, m, k], [n, k], [n]]) == (b * m, n, k, 1)
    assert gemm_shape("aten::matmul", [[b, m, k], [k, n]]) == (b * m, n, k, 1)
    assert gemm_shape("aten::mm", [[m, k], []]) is None


# ---------------------------------------------------------------- bad input


def error_of(tmp_path, *files, extra=()):
    out = tmp_path / "out.arrow"
    proc = accsim("import", "kineto", *files, "--out", out, *extra)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert not out.exists() and not list(tmp_path.glob("out.arrow*"))
    return lines[0]


@pytest.mark.parametrize("text,pattern", [
    ("this is not json", r"not a PyTorch profiler trace: expected a JSON object"),
    ('{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": 1, "dur": -3, "args": {"stream": 7}}]}',
     r"traceEvents\[0\] \(k\): field 'dur': expected a non-negative number, got -3"),
    ('{"schemaVersion": 1}', r"not a PyTorch profiler trace: no 'traceEvents'"),
    ('{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": 1, "dur": 3, "args": {"stream": 7}}',
     r"invalid JSON"),
    ('[{"ph": "X"}]', r"expected a JSON object with a 'traceEvents' list"),
    ('{"traceEvents": [{"ph": "M", "name": "process_name"}]}', r"no GPU kernels and no CPU operators"),
])
def test_not_a_trace(tmp_path, text, pattern):
    path = tmp_path / "bad.json"
    path.write_text(text)
    message = error_of(tmp_path, path)
    assert str(path) in message and re.search(pattern, message), message


def test_collective_needs_every_rank_and_must_agree(tmp_path):
    paths = write(Step(ranks=2, layers=2), tmp_path)
    message = error_of(tmp_path, paths[0])
    assert re.search(r"rank0\.json: traceEvents\[\d+\] \(ncclDevKernel_AllReduce.*\): a collective on ranks "
                     r"\[0, 1\], but only 1 trace file\(s\) were given", message), message
    events = rank_events(Step(ranks=2, layers=2), 1)
    for event in events:
        if event.get("name") == "record_param_comms":
            event["args"]["In msg nelems"] = 7
    paths[1].write_text(json.dumps({"traceEvents": events}))
    message = error_of(tmp_path, *paths)
    assert re.search(r"rank1\.json: traceEvents\[\d+\] .*: collective 0 on process group 0 is allreduce of 14 "
                     r"bytes here but allreduce of 4194304 bytes on rank 0", message), message


def test_unknown_step_and_missing_file(tmp_path):
    paths = write(Step(ranks=1), tmp_path)
    assert "no ProfilerStep#9 (profiled steps: 0)" in error_of(tmp_path, *paths, extra=("--step", "9"))
    assert "trace file not found" in error_of(tmp_path, tmp_path / "none.json")
