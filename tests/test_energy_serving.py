"""Energy of serving runs (sim.energy.serving) from the shipped spec files:
each iteration row is flops x J/FLOP + bytes x J/byte, KV transfers bytes x
their link type's J/byte, static power for every device, J per output token."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest

import sim
from sim.hardware.specs import load_device_spec
from test_energy_shipped import check_link_rows

ROOT = Path(__file__).resolve().parents[1]
PJ = 1e-12


def test_a_serving_run_prices_every_iteration_by_the_closed_form():
    scenario = sim.load_scenario(ROOT / "scenarios" / "serve_llama2_70b_h100.yaml",
                                 {"serving.requests.count": 40})
    result = sim.run(scenario)
    figures = load_device_spec("h100_sxm5_80gb").energy
    dtype = scenario.precision.compute_dtype
    rows = result.timeline.to_pylist()
    assert rows and all(r["device"] == "replica0" for r in rows)
    for r in rows:
        expected = (r["flops"] * figures.e_flop_pj("sm_array", dtype) + r["bytes"] * figures.byte_pj["hbm"]) * PJ
        assert r["energy_j"] == pytest.approx(expected, rel=1e-12, abs=0)
    energy = result.summary["energy"]
    makespan = result.summary["makespan_s"]
    replica = energy["by_device"]["replica0"]
    assert replica["static_j"] == pytest.approx(8 * figures.static_w * makespan, rel=1e-12)
    assert energy["devices"] == 8
    assert energy["total_j"] == pytest.approx(sum(r["energy_j"] for r in rows) + replica["static_j"], rel=1e-12)
    assert energy["j_per_output_token"] == pytest.approx(energy["total_j"] / result.summary["output_tokens"])
    assert energy["j_per_request"] == pytest.approx(energy["total_j"] / result.summary["finished"])
    assert energy["average_power_w"] <= energy["peak_power_w"] <= 8 * 700
    util = result.utilization.to_pylist()
    assert sum(u["energy_j"] for u in util if u["energy_j"] is not None) == pytest.approx(
        sum(r["energy_j"] for r in rows), rel=1e-12)
    from sim.serving.report import print_serving_summary
    out = StringIO()
    print_serving_summary(result.summary, None, stream=out)
    assert "/output token" in out.getvalue() and "all 8 devices" in out.getvalue()


def test_kv_transfers_cost_bytes_times_their_link_types_figure():
    """Splitwise-style disaggregation: every KV-cache transfer row on a link is
    bytes x J/byte of the link's type, and the split by type adds them up."""
    scenario = sim.load_scenario(ROOT / "scenarios" / "serve_splitwise_disagg.yaml",
                                 {"serving.requests.count": 30})
    result = sim.run(scenario)
    by_type = check_link_rows(scenario, result)
    energy = result.summary["energy"]
    assert by_type and energy["links_j_by_type"] == pytest.approx(by_type, rel=1e-9)
    assert energy["breakdown_j"]["links"] == pytest.approx(sum(by_type.values()), rel=1e-9)
    assert sum(energy["breakdown_j"].values()) == pytest.approx(energy["total_j"], rel=1e-12)
