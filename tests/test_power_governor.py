"""The board power limit (sim.energy.governor) and the instruction-issue bound of
memory-bound kernels (sim.hardware.kernels.pointwise_time): closed forms and what-ifs."""

from __future__ import annotations

import types

import pyarrow as pa
import pytest

import sim
from sim.energy.governor import hold_power_limit
from sim.hardware.kernels import Kernel, sm_kernel_time
from sim.hardware.specs import load_device_spec
from sim.validation.groups import kernels_h200
from sim.workload.trace import write_trace


def _summary(device: str, ops, tmp_path) -> dict:
    path = tmp_path / "trace.jsonl"
    write_trace(ops, path)
    return sim.run({"device": device, "trace": str(path)}).summary


def test_sustained_gemms_are_held_at_the_board_limit(tmp_path):
    summary = _summary("h200_sxm_141gb", kernels_h200._gemms("bf16"), tmp_path)
    limit = summary["power_limit"]
    assert limit["limit_w"] == 700.0 and 0.5 < limit["clock_scale"] < 1.0
    assert limit["power_w_at_full_clock"] > 700.0
    # every op is a GEMM on the SMs, busy the whole run: the average power is the limit
    assert summary["energy"]["average_power_w"] == pytest.approx(700.0, rel=0.01)


def test_memory_bound_work_keeps_its_clock(tmp_path):
    summary = _summary("h200_sxm_141gb", kernels_h200._copies(4), tmp_path)
    assert "power_limit" not in summary
    assert summary["energy"]["average_power_w"] < 700.0


def test_a_device_without_a_limit_is_never_throttled(tmp_path):
    assert load_device_spec("a100_sxm4_80gb").energy.power_limit_w is None
    summary = _summary("a100_sxm4_80gb", kernels_h200._gemms("bf16", 4), tmp_path)
    assert "power_limit" not in summary


def _fake_run(scale_of, a_s: float, b_s: float, dynamic_j: float, static_w: float, limit_w: float):
    """A simulate() whose busy time is exactly A + B / s (s: the clock scale of the scenario)."""
    energy = types.SimpleNamespace(static_w=static_w, power_limit_w=limit_w)
    spec = types.SimpleNamespace(energy=energy)
    calls = []

    def simulate(scenario):
        s = scale_of(scenario)
        calls.append(s)
        busy = a_s + b_s / s
        result = types.SimpleNamespace(
            summary={"energy": {"by_device": {"gpu": {"compute_j": dynamic_j, "static_j": static_w * busy}}}},
            utilization=pa.table({"device": ["gpu"], "category": ["compute"], "busy_s": [busy]}))
        return result, {"gpu": spec}
    return simulate, calls


@pytest.mark.parametrize("a_s, b_s", [(0.0, 1.0), (0.4, 0.6), (0.6, 0.4)])
def test_the_fixed_point_is_exact_when_busy_time_is_a_plus_b_over_s(monkeypatch, a_s, b_s):
    from sim.energy import governor
    monkeypatch.setattr(governor, "scaled_scenario", lambda scenario, s: s)
    simulate, calls = _fake_run(lambda sc: 1.0 if sc == "base" else sc, a_s, b_s, dynamic_j=800.0,
                                static_w=100.0, limit_w=700.0)
    result = hold_power_limit("base", simulate)
    scale = result.summary["power_limit"]["clock_scale"]
    busy = a_s + b_s / scale
    assert 100.0 + 800.0 / busy == pytest.approx(700.0, rel=1e-9)
    assert len(calls) <= 3


def test_a_limit_out_of_reach_stops_at_the_lowest_clock(monkeypatch):
    """Mostly memory-bound work cannot get under the limit by slowing the SMs: the clock stops at 30%."""
    from sim.energy import governor
    monkeypatch.setattr(governor, "scaled_scenario", lambda scenario, s: s)
    simulate, _ = _fake_run(lambda sc: 1.0 if sc == "base" else sc, 0.9, 0.1, 800.0, 100.0, 700.0)
    result = hold_power_limit("base", simulate)
    assert result.summary["power_limit"]["clock_scale"] == governor.MIN_CLOCK_SCALE


def test_a_higher_limit_never_slows_a_run(monkeypatch):
    from sim.energy import governor
    monkeypatch.setattr(governor, "scaled_scenario", lambda scenario, s: s)
    times = []
    for limit in (500.0, 600.0, 700.0, 800.0, 1000.0):
        simulate, _ = _fake_run(lambda sc: 1.0 if sc == "base" else sc, 0.3, 0.7, 800.0, 100.0, limit)
        result = hold_power_limit("base", simulate)
        scale = result.summary.get("power_limit", {}).get("clock_scale", 1.0)
        times.append(0.3 + 0.7 / scale)
    assert times == sorted(times, reverse=True)


NORM = 53.8   # LayerNorm forward, thread instructions per element (sim.workload.layer_kernels)


def _layernorm(elements: float = 8192 * 12288) -> Kernel:
    return Kernel("ln", "pointwise", 5.0 * elements, 2.0 * elements, 2.0 * elements, "bf16",
                  instructions=NORM * elements)


def test_instruction_bound_closed_form():
    spec = load_device_spec("h200_sxm_141gb")
    sm = spec.sm_array
    t = sm_kernel_time(_layernorm(), spec)
    expected = sm.launch_overhead_s + NORM * 8192 * 12288 / (sm.count * 128 * sm.clock_hz)
    assert t.seconds == pytest.approx(expected, rel=1e-12)
    assert t.bound == "compute"


@pytest.mark.parametrize("override", [{"sm_array": {"count": 160}}, {"sm_array": {"clock_hz": 2.2e9}},
                                      {"sm_array": {"issue_lanes_per_clock_per_sm": 256}}])
def test_more_sms_clock_or_issue_width_never_slow_an_instruction_bound_kernel(override):
    base = sm_kernel_time(_layernorm(), load_device_spec("h200_sxm_141gb")).seconds
    faster = sm_kernel_time(_layernorm(), load_device_spec("h200_sxm_141gb", overrides=override)).seconds
    assert faster < base


def test_without_an_instruction_count_the_kernel_stays_bandwidth_bound():
    spec = load_device_spec("h200_sxm_141gb")
    plain = Kernel("add", "pointwise", 1.0, 3e8, 1.5e8, "bf16")
    t = sm_kernel_time(plain, spec)
    assert t.bound == "memory"
    tier = spec.tier(spec.default_tier)
    assert t.seconds == pytest.approx(spec.sm_array.launch_overhead_s + 4.5e8 / tier.achievable_bandwidth_bytes_per_s)


# ---------------------------------------------------------------- gradient accumulation (layer_kernels)

def _wgrad_kernels(**model):
    from sim.workload.layer_kernels import layer_kernels
    from sim.workload.transformer import ModelConfig
    cfg = ModelConfig("m", 2, 1024, 8, 512, 0, **model)
    kernels = layer_kernels(cfg, 1, 2, False)
    return kernels["bwd.mlp.wgrad"] + kernels["bwd.attn.wgrad"]


@pytest.mark.parametrize("dtype, main_bytes", [("fp16", 2.0), ("bf16", 4.0)])
def test_unfused_gradient_accumulation_reads_and_writes_every_weight_once(dtype, main_bytes):
    kernels = _wgrad_kernels(dtype=dtype, gradient_accumulation_fusion=False)
    adds = [k for k in kernels if k.name.endswith("grad_accumulate")]
    weights = sum(k.m * k.n for k in kernels if k.kind == "gemm")       # each wgrad GEMM's output is a weight
    assert len(adds) == 4
    assert sum(k.bytes_read for k in adds) == weights * (2.0 + main_bytes)
    assert sum(k.bytes_written for k in adds) == weights * main_bytes


def test_fused_gradient_accumulation_adds_no_kernel():
    assert not [k for k in _wgrad_kernels() if k.name.endswith("grad_accumulate")]


def test_accsim_run_says_when_the_power_limit_lowered_the_clock(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "trace.jsonl"
    write_trace(kernels_h200._gemms("bf16", 8), path)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"device: h200_sxm_141gb\ntrace: {path}\n")
    done = subprocess.run([sys.executable, "-m", "sim", "run", str(scenario), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env={**__import__("os").environ, "ACCSIM_QUIET": "1"})
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("power "))
    assert "over its 700 W limit" in line and "SM clock scaled to" in line


def test_a_kernels_work_takes_its_instruction_count_from_the_device_file():
    from sim.workload.layer_kernels import layer_kernels
    from sim.workload.transformer import ModelConfig
    ln = next(k for k in layer_kernels(ModelConfig("m", 2, 1024, 8, 512, 0), 1, 1, False)["fwd.attn"]
              if k.name == "ln1")
    assert ln.work == "norm" and ln.elements == 512 * 1024
    spec = load_device_spec("h200_sxm_141gb")
    assert ln.instructions_on(spec.sm_array) == spec.sm_array.instructions_per_element["norm"] * 512 * 1024
    import dataclasses
    without = dataclasses.replace(spec, sm_array=dataclasses.replace(spec.sm_array, instructions_per_element={}))
    assert ln.instructions_on(without.sm_array) == 0.0
    assert sm_kernel_time(ln, without).seconds <= sm_kernel_time(ln, spec).seconds
