"""Zero-bubble pipeline schedules (Qi et al., ICLR 2024): orders, bubble closed
forms on the ideal pipeline, memory."""

import pytest
from hypothesis import given, settings, strategies as st

import sim
from sim.parallel.expand import layer_segments
from sim.parallel.schedules import max_in_flight, stage_order

from conftest import ROOT


def _run(pp, m, schedule, *extra):
    overrides = [f"parallel.pp={pp}", f"parallel.microbatches={m}", f"parallel.schedule={schedule}", *extra]
    scenario = sim.load_scenario(ROOT / "scenarios" / "pipeline_ideal.yaml", overrides)
    return scenario, sim.run(scenario).summary


def _times(scenario, pp):
    """(T_F, T_B, T_W) of one microbatch on one stage: its layers' forward,
    input-gradient and weight-gradient segments."""
    t = scenario.training
    seg = layer_segments(t.model, t.plan, scenario.device)
    layers = t.model.layers // pp
    return (layers * (seg["fwd.attn"].duration_s + seg["fwd.mlp"].duration_s),
            layers * (seg["bwd.mlp.dgrad"].duration_s + seg["bwd.attn.dgrad"].duration_s),
            layers * (seg["bwd.mlp.wgrad"].duration_s + seg["bwd.attn.wgrad"].duration_s))


@pytest.mark.parametrize("pp,m", [(2, 4), (4, 8), (4, 4), (8, 16), (4, 13)])
def test_zb_h1_bubble_closed_form(pp, m):
    """Idle time per stage (p - 1)(T_F + T_B - min(T_W, T_F, T_B)) for m >= p
    (the paper's (p - 1)(T_F + T_B - T_W), Table 2), against 1F1B's (p - 1)(T_F + T_B + T_W)."""
    scenario, summary = _run(pp, m, "zb-h1")
    f, b, w = _times(scenario, pp)
    idle = (pp - 1) * (f + b - min(w, f, b))
    assert summary["iteration_time_s"] == pytest.approx(m * (f + b + w) + idle, rel=1e-9)
    for fraction in summary["bubble_fraction_per_stage"]:
        assert fraction == pytest.approx(idle / (m * (f + b + w) + idle), abs=1e-9)
    _, baseline = _run(pp, m, "1f1b")
    assert baseline["iteration_time_s"] == pytest.approx(m * (f + b + w) + (pp - 1) * (f + b + w), rel=1e-9)
    assert summary["iteration_time_s"] < baseline["iteration_time_s"]


@pytest.mark.parametrize("pp,m", [(2, 4), (4, 8), (4, 7), (8, 16), (2, 9)])
def test_zb_h2_bubble_closed_form(pp, m):
    """Idle time per stage (p - 1)(T_F + max(0, T_B - 2 T_W)) for m >= 2p - 1:
    the parallelogram's (p - 1) T_F skew, which the paper's steady state hides."""
    scenario, summary = _run(pp, m, "zb-h2")
    f, b, w = _times(scenario, pp)
    idle = (pp - 1) * (f + max(0.0, b - 2 * w))
    for fraction in summary["bubble_fraction_per_stage"]:
        assert fraction == pytest.approx(idle / (m * (f + b + w) + idle), abs=1e-9)
    _, h1 = _run(pp, m, "zb-h1")
    assert summary["iteration_time_s"] < h1["iteration_time_s"]


def _unit_check(order, m):
    for kind in "FBW":
        assert sorted(mb for k, mb, _ in order if k == kind) == list(range(m))
    for mb in range(m):
        assert order.index(("F", mb, 0)) < order.index(("B", mb, 0)) < order.index(("W", mb, 0))


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 10), st.integers(1, 40))
def test_zero_bubble_orders(pp, m):
    """Every unit once, F before B before W; ZB-H1 places W(k) right after
    B(k + s) and holds at most p microbatches (1F1B's first stage); ZB-H2
    warms up with 2(p - s) - 1 forwards and holds 2p - 1 on the first stage."""
    for stage in range(pp):
        h1 = stage_order("zb-h1", stage, pp, m)
        _unit_check(h1, m)
        assert max_in_flight(h1) == min(pp, m)
        for k in range(m - stage if m >= pp else 0):
            assert h1.index(("W", k, 0)) == h1.index(("B", k + stage, 0)) + 1
        h2 = stage_order("zb-h2", stage, pp, m)
        _unit_check(h2, m)
        warmup = min(2 * (pp - stage) - 1, m)
        assert [kind for kind, _, _ in h2[:warmup + 1]] == ["F"] * warmup + ["B"]
    assert max_in_flight(stage_order("zb-h2", 0, pp, m)) == min(2 * pp - 1, m)


@pytest.mark.parametrize("recompute", ["none", "selective"])
def test_zero_bubble_memory_model_matches_the_ledger(recompute):
    """B frees all but the weight-GEMM inputs, W the rest: the peak over each
    stage's order equals what the run allocates. ZB-H1's first stage peaks
    where 1F1B's does; ZB-H2's first stage holds (2p - 1)/p of it."""
    raw = {"cluster": "ideal", "device": "a100_sxm4_80gb",
           "model": {"layers": 8, "hidden": 1024, "heads": 16, "seq_len": 512, "vocab": 8192},
           "parallel": {"pp": 4, "microbatches": 8, "recompute": recompute}}
    peaks = {}
    for schedule in ("1f1b", "zb-h1", "zb-h2"):
        result = sim.run({**raw, "parallel": {**raw["parallel"], "schedule": schedule}})
        stages = result.summary["memory_per_gpu"]["stages"]
        for stage in stages:
            ledger = result.summary["peak_memory_bytes"][f"dev{stage['stage']}"]["hbm"]
            assert ledger == pytest.approx(stage["total_bytes"], rel=1e-9)
        peaks[schedule] = stages[0]["activations_bytes"]
    assert peaks["zb-h1"] == pytest.approx(peaks["1f1b"], rel=1e-12)
    assert peaks["zb-h2"] == pytest.approx(peaks["1f1b"] * 7 / 4, rel=1e-12)


def test_zero_bubble_from_the_command_line(tmp_path):
    import json
    import subprocess
    import sys
    out = tmp_path / "zb"
    proc = subprocess.run([sys.executable, "-m", "sim", "run", "scenarios/quickstart.yaml", "--out", out,
                           "--set", "parallel.schedule=zb-h1", "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parallel"]["schedule"] == "zb-h1" and 0 < summary["bubble_fraction"] < 1
