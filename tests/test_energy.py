"""The energy model: closed form per op, breakdown per device, power curve."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.energy.account import _distinct_keys, energy_report, power_curve, row_energy_j
from sim.energy.model import EnergySpec, LinkEnergySpec, op_energy_j
from sim.engine.recorder import TIMELINE_SCHEMA

SPEC = EnergySpec(flop_pj={"systolic_array": {"bf16": 0.5, "fp32": 2.0}, "vector": {"fp32": 3.0}},
                  byte_pj={"scratchpad": 1.5, "hbm": 30.0}, static_w=50.0)


def _timeline(rows):
    columns = {f.name: [] for f in TIMELINE_SCHEMA}
    for device, unit, op_id, category, start, end, flops, nbytes in rows:
        for key, value in zip(("device", "unit", "op_id", "name", "category", "start_s", "end_s",
                               "flops", "bytes", "stream", "units_held"),
                              (device, unit, op_id, f"op{op_id}", category, start, end, flops,
                               nbytes, 0, 1)):
            columns[key].append(value)
        for key in ("layer", "stage", "microbatch", "phase", "detail"):
            columns[key].append(None)
    return pa.table(columns, schema=TIMELINE_SCHEMA)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**15), st.integers(0, 10**11), st.integers(0, 10**11),
       st.sampled_from(["bf16", "fp32"]))
def test_op_energy_is_flops_times_e_flop_plus_bytes_times_e_byte(flops, on_chip, off_chip, dtype):
    """A GEMM on the systolic arrays reading its operands from the scratchpad,
    and a copy of its weights from HBM: each op's energy (the sum of its
    timeline rows) equals the closed form exactly."""
    timeline = _timeline([("npu0", "mxu", 1, "compute", 0.0, 1.0, flops, on_chip),
                          ("npu0", "scratchpad", 1, "memory", 0.0, 1.0, 0.0, on_chip),
                          ("npu0", "hbm", 2, "memory", 0.0, 2.0, 0.0, off_chip),
                          ("npu0", "scratchpad", 2, "memory", 0.0, 2.0, 0.0, off_chip)])
    energy = row_energy_j(timeline, {"npu0": SPEC}, lambda device, ops: [dtype] * len(ops))
    e_flop = SPEC.e_flop_pj("systolic_array", dtype)
    assert energy[0] + energy[1] == pytest.approx(
        op_energy_j(flops, e_flop, {"scratchpad": on_chip}, SPEC.byte_pj), rel=1e-14, abs=0)
    assert energy[0] + energy[1] == pytest.approx((flops * e_flop + on_chip * 1.5) * 1e-12, rel=1e-12, abs=0)
    assert energy[2] + energy[3] == pytest.approx(off_chip * (30.0 + 1.5) * 1e-12, rel=1e-12, abs=0)


def test_missing_dtype_is_priced_as_the_next_wider_one():
    assert SPEC.e_flop_pj("systolic_array", "fp8") == 0.5
    assert SPEC.e_flop_pj("vector", "bf16") == 3.0
    assert SPEC.e_flop_pj("pim", "bf16") == 0.0


def test_breakdown_static_links_and_power():
    timeline = _timeline([("npu0", "mxu", 1, "compute", 0.0, 2.0, 4e12, 0.0),       # 2 J over 2 s
                          ("npu0", "hbm", 2, "memory", 1.0, 2.0, 0.0, 1e10),       # 0.3 J over 1 s
                          ("network", "a->b", 3, "comm", 0.0, 1.0, 0.0, 1e9)])     # 0.01 J over 1 s
    links = LinkEnergySpec(byte_pj=10.0)
    energy = row_energy_j(timeline, {"npu0": SPEC}, lambda d, ops: ["bf16"] * len(ops), lambda unit: links.byte_pj)
    assert energy.tolist() == pytest.approx([2.0, 0.3, 0.01])
    report = energy_report(timeline, energy, 4.0, {"npu0": 50.0}, lambda unit: "nvlink4")
    device = report.by_device["npu0"]
    assert device["compute_j"] == pytest.approx(2.0) and device["hbm_j"] == pytest.approx(0.3)
    assert device["static_j"] == pytest.approx(200.0)
    assert report.links_j == pytest.approx(0.01) and report.links_by_type == {"nvlink4": pytest.approx(0.01)}
    assert report.total_j == pytest.approx(202.31)
    assert report.breakdown() == pytest.approx({"compute": 2.0, "hbm": 0.3, "links": 0.01, "static": 200.0})
    assert report.average_power_w == pytest.approx(202.31 / 4.0)
    assert report.peak_power_w == pytest.approx(50.0 + 1.0 + 0.3)        # 1 s..2 s: GEMM + copy
    summary = report.summary({"token": 100})
    assert summary["j_per_token"] == pytest.approx(2.0231)


def test_a_simulated_device_standing_for_several_counts_that_many_times():
    """Folded runs: device rows and static power count ``represents`` times in
    the totals and the power curve; link rows (already every rank's traffic) once."""
    timeline = _timeline([("npu0", "mxu", 1, "compute", 0.0, 2.0, 4e12, 0.0),       # 2 J over 2 s
                          ("network", "a->b", 3, "comm", 0.0, 1.0, 0.0, 1e9)])     # 0.01 J over 1 s
    energy = row_energy_j(timeline, {"npu0": SPEC}, lambda d, ops: ["bf16"] * len(ops), lambda unit: 10.0)
    report = energy_report(timeline, energy, 4.0, {"npu0": 50.0}, represents=8)
    assert report.total_j == pytest.approx(8 * (2.0 + 200.0) + 0.01)
    assert report.breakdown() == pytest.approx({"compute": 16.0, "links": 0.01, "static": 1600.0})
    assert report.peak_power_w == pytest.approx(8 * (50.0 + 1.0) + 0.01)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**4), st.integers(0, 10**4), st.floats(0, 100)), min_size=1, max_size=20),
       st.floats(0, 500))
def test_power_curve_integrates_to_the_energy(rows, static_w):
    import numpy as np
    starts = np.array([min(a, b) / 1e3 for a, b, _ in rows])
    ends = np.array([max(a, b) / 1e3 for a, b, _ in rows])
    energy = np.array([e for _, _, e in rows])
    makespan = float(ends.max()) + 1.0
    times, power = power_curve(starts, ends, energy, static_w, makespan)
    assert np.isfinite(power).all() and (power >= 0).all()
    integral = float(np.sum(power[:-1] * np.diff(times)))
    expected = float(energy[ends > starts].sum()) + static_w * makespan
    assert integral == pytest.approx(expected, rel=1e-9, abs=1e-9)


def _with_energy(scenario, energy):
    """The scenario with its device spec carrying ``energy`` figures (DeviceSpec.energy,
    what a spec file's ``energy`` section becomes)."""
    import dataclasses

    return dataclasses.replace(scenario, device=dataclasses.replace(scenario.device, energy=energy))


def test_a_run_reports_energy_per_op_device_and_total(tmp_path):
    """A run whose device has energy figures: every op's energy_j is the closed
    form, utilization and the summary add up, Perfetto gets a power counter and
    the printed summary a breakdown."""
    import io
    from pathlib import Path

    import sim
    from sim.cli.run import print_summary
    from sim.reports.perfetto import build_model

    root = Path(__file__).resolve().parents[1]
    spec = EnergySpec(flop_pj={"systolic_array": {"bf16": 0.4}, "vector": {"bf16": 1.2}},
                      byte_pj={"scratchpad": 1.0, "hbm": 25.0}, static_w=40.0)
    scenario = _with_energy(sim.load_scenario(root / "scenarios" / "npu_scratchpad.yaml"), spec)
    result = sim.run(scenario)
    rows = result.timeline.to_pylist()
    ops = {op.id: op for op in scenario.trace.ops}
    per_op: dict[int, float] = {}
    for r in rows:
        per_op[r["op_id"]] = per_op.get(r["op_id"], 0.0) + r["energy_j"]
    for op_id, energy in per_op.items():
        op = ops[op_id]
        if op.op == "copy":
            expected = op.bytes_read * (25.0 + 1.0) * 1e-12
        else:
            unit = "vector" if op.op not in ("gemm", "gemv", "attention") else "systolic_array"
            expected = (op.flops * spec.e_flop_pj(unit, "bf16") + (op.bytes_read + op.bytes_written) * 1.0) * 1e-12
        assert energy == pytest.approx(expected, rel=1e-12)
    summary = result.summary["energy"]
    makespan = result.summary["makespan_s"]
    device = summary["by_device"]["npu0"]
    assert device["static_j"] == pytest.approx(40.0 * makespan)
    assert summary["total_j"] == pytest.approx(sum(per_op.values()) + 40.0 * makespan)
    assert summary["average_power_w"] == pytest.approx(summary["total_j"] / makespan)
    assert summary["peak_power_w"] >= summary["average_power_w"]
    util = {r["unit"]: r["energy_j"] for r in result.utilization.to_pylist()}
    assert util["hbm"] == pytest.approx(device["hbm_j"]) and util["mxu"] + util["vector"] == pytest.approx(device["compute_j"])
    out = io.StringIO()
    print_summary(result.summary, result.utilization, None, out)
    assert "energy" in out.getvalue() and "static" in out.getvalue()
    result.write(tmp_path)
    model = build_model(tmp_path)
    assert any(t.name == "dynamic power (W)" for t in model.tracks)


def test_runs_without_energy_figures_are_unchanged():
    """A device spec without an ``energy`` section (here removed by an
    override) and no link figures: no column, no section."""
    from pathlib import Path

    import sim
    root = Path(__file__).resolve().parents[1]
    result = sim.run(root / "scenarios" / "npu_pim_decode.yaml", overrides={"device_overrides": {"energy": None}})
    assert "energy_j" not in result.timeline.column_names and "energy" not in result.summary


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=300), st.integers(1, 64))
def test_distinct_keys_is_np_unique(keys, chunk_rows):
    """RowKeys' distinct (device, unit, category) keys by a table over the key space (or a sort
    where the space is larger than the rows) are np.unique's, inverse as int32."""
    key = np.array(keys, dtype=np.int64)
    expected = np.unique(key, return_index=True, return_inverse=True)
    for space in (41, 1 << 17):
        combos, first, inverse = _distinct_keys(key, space, chunk_rows)
        assert inverse.dtype == np.int32
        for ours, theirs in zip((combos, first, inverse), expected):
            assert np.array_equal(ours, theirs.reshape(-1))
