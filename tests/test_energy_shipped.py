"""Energy from the shipped spec files: every device and link type carries cited
figures, a shipped scenario reports energy with no figures from the user, each
op's and link's joules are the closed form of the shipped figures, what-ifs on
bandwidth and FLOPs never change the J per op, and bad figures are one-line
errors (exit 2, nothing written)."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

import sim
from sim.errors import SpecError
from sim.hardware.specs import device_catalog, load_device_spec
from sim.network.specs import link_catalog, link_type

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
PJ = 1e-12


@lru_cache(maxsize=None)
def _quickstart():
    scenario = sim.load_scenario(QUICKSTART)
    return scenario, sim.run(scenario)


@pytest.mark.parametrize("name", sorted(device_catalog()))
def test_every_shipped_device_has_cited_energy_figures_for_all_its_tiers_and_units(name):
    spec = load_device_spec(name)
    energy = spec.energy
    assert energy is not None and energy.source
    assert set(energy.byte_pj) == set(spec.tier_names)
    compute = [u for u in spec.unit_kinds if u != "pim"] + (["pim"] if spec.pim is not None else [])
    for unit in compute:
        assert energy.e_flop_pj(unit, spec.default_dtype) > 0, unit
    text = device_catalog()[name].read_text()
    assert "\nenergy:" in text and ("(A" in text or "(B" in text or "(C" in text)    # graded citations


@pytest.mark.parametrize("name", sorted(link_catalog()))
def test_every_shipped_link_type_has_a_cited_energy_per_byte(name):
    kind = link_type(name, "test")
    assert kind.energy is not None and kind.energy.byte_pj > 0 and kind.energy.source


def test_gpu_figures_follow_the_datasheet_peaks_and_do_not_cost_more_with_fewer_bits():
    """A GPU's pJ/FLOP falls as the dtype's peak rises (fp8 < bf16 < tf32 < fp32 on CUDA cores)."""
    for name in ("a100_sxm4_80gb", "h100_sxm5_80gb", "h200_sxm_141gb", "b200", "mi300x"):
        e = load_device_spec(name).energy
        assert e.e_flop_pj("sm_array", "fp8") <= e.e_flop_pj("sm_array", "bf16") \
            < e.e_flop_pj("sm_array", "tf32") < e.e_flop_pj("sm_array", "fp32"), name


def test_a_shipped_scenario_reports_energy_without_user_figures():
    scenario, result = _quickstart()
    assert "energy_j" in result.timeline.column_names and "energy_j" in result.utilization.column_names
    energy = result.summary["energy"]
    for key in ("total_j", "average_power_w", "peak_power_w", "j_per_token", "j_per_sample", "breakdown_j"):
        assert energy[key] > 0 if key != "breakdown_j" else energy[key], key
    assert set(energy["breakdown_j"]) >= {"compute", "hbm", "links", "static"}
    assert energy["links_unpriced_bytes"] == 0 and energy["devices_unpriced"] == []
    assert all(v is not None for v in result.timeline["energy_j"].to_pylist())


def test_each_op_costs_flops_times_e_flop_plus_bytes_times_e_byte_from_the_shipped_spec():
    """Per op on a simulated A100: the sum of its rows' energy_j is exactly
    flops x J/FLOP(dtype) + bytes x J/byte of each tier it moves bytes on
    (GEMMs: their bytes_read + bytes_written on HBM; copies: read on one tier,
    written on the other)."""
    scenario, result = _quickstart()
    spec = load_device_spec("a100_sxm4_80gb").energy
    ops = {op.id: op for op in scenario.trace.ops}
    per_op: dict[tuple[str, int], float] = {}
    for row in result.timeline.to_pylist():
        if row["device"] != "network":
            key = (row["device"], row["op_id"])
            per_op[key] = per_op.get(key, 0.0) + row["energy_j"]
    checked = {"gemm": 0, "copy": 0}
    for (device, op_id), joules in per_op.items():
        op = ops[op_id]
        dtype = op.dtype or "bf16"
        if op.op == "gemm":
            expected = (op.flops * spec.flop_pj["sm_array"][dtype]
                        + (op.bytes_read + op.bytes_written) * spec.byte_pj["hbm"]) * PJ
        elif op.op == "copy":
            expected = op.bytes_read * (spec.byte_pj["hbm"] + spec.byte_pj["host"]) * PJ
        else:
            continue
        checked[op.op] += 1
        assert joules == pytest.approx(expected, rel=1e-12, abs=0), (device, op.name)
    assert checked["gemm"] > 500 and checked["copy"] > 0


def check_link_rows(scenario, result) -> dict[str, float]:
    """Assert every network row's energy_j is bytes x J/byte of its link's
    shipped type; return the joules by link type."""
    graph = scenario.cluster.graph
    by_type: dict[str, float] = {}
    for row in result.timeline.to_pylist():
        if row["device"] == "network":
            a, b = row["unit"].split("->")
            kind = graph.edges[a, b]["link_type"]
            expected = row["bytes"] * link_type(kind, "test").energy.byte_pj * PJ
            assert row["energy_j"] == pytest.approx(expected, rel=1e-12, abs=0)
            by_type[kind] = by_type.get(kind, 0.0) + expected
    return by_type


def test_link_energy_is_bytes_carried_times_the_link_types_figure():
    """Every network row: bytes x J/byte of its link's type (NVLink3 inside a
    DGX A100, HDR InfiniBand between them); the summary's links_j and its split
    by type add them up."""
    scenario, result = _quickstart()
    by_type = check_link_rows(scenario, result)
    energy = result.summary["energy"]
    assert set(by_type) == {"nvlink3", "ib_hdr"}
    assert energy["links_j_by_type"] == pytest.approx(by_type, rel=1e-9)
    assert energy["links_j"] == pytest.approx(sum(by_type.values()), rel=1e-9)


def test_a_folded_run_totals_the_whole_cluster():
    """Quickstart simulates one rank per stage (2 of 16 GPUs): device energy
    counts 8 times, links (already every rank's traffic) once; J per token is
    the cluster's joules over the iteration's tokens."""
    scenario, result = _quickstart()
    energy = result.summary["energy"]
    plan = scenario.training.plan
    represents = energy["devices_represented_per_simulated"]
    assert represents == plan.world / 2 == 8
    devices = sum(d["total_j"] for d in energy["by_device"].values())
    assert energy["total_j"] == pytest.approx(energy["links_j"] + represents * devices, rel=1e-12)
    assert sum(energy["breakdown_j"].values()) == pytest.approx(energy["total_j"], rel=1e-12)
    assert energy["breakdown_j"]["static"] == pytest.approx(
        16 * load_device_spec("a100_sxm4_80gb").energy.static_w * result.summary["iteration_time_s"], rel=1e-12)
    assert energy["j_per_token"] == pytest.approx(energy["total_j"] / (plan.global_batch * 2048), rel=1e-12)
    assert energy["average_power_w"] <= energy["peak_power_w"] <= 16 * 400 + 1e3    # 400 W board limit each


def _per_op_dynamic(result) -> dict[tuple[str, int], float]:
    out: dict[tuple[str, int], float] = {}
    for row in result.timeline.to_pylist():
        key = (row["device"], row["op_id"])
        out[key] = out.get(key, 0.0) + row["energy_j"]
    return out


def test_more_bandwidth_or_flops_changes_time_not_joules_per_op():
    """What-ifs on the NPU: twice the systolic arrays and twice the HBM
    bandwidth. Every op costs the same joules (figures are per FLOP and per
    byte); the run is no slower, so static energy never grows."""
    path = ROOT / "scenarios" / "npu_scratchpad.yaml"
    base = sim.run(path, overrides={"device_overrides": {"energy": {"static_w": 20.0}}})
    faster = sim.run(path, overrides={"device_overrides": {
        "energy": {"static_w": 20.0}, "systolic_array": {"count": 16},
        "memory": {"hbm": {"bandwidth_bytes_per_s": 2.4e12}}}})
    assert faster.summary["makespan_s"] <= base.summary["makespan_s"]
    a, b = _per_op_dynamic(base), _per_op_dynamic(faster)
    assert a.keys() == b.keys()
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-12, abs=0), key
    static = [r.summary["energy"]["by_device"]["npu0"]["static_j"] for r in (base, faster)]
    assert static[1] <= static[0]


def test_the_printed_summary_has_the_breakdown_table():
    from io import StringIO

    from sim.cli.run import print_summary
    _, result = _quickstart()
    out = StringIO()
    print_summary(result.summary, result.utilization, None, out)
    text = out.getvalue()
    header = next(line for line in text.splitlines() if line.startswith("joules"))
    assert header.split() == ["joules", "compute", "host", "hbm", "links", "static", "total"] or \
        header.split() == ["joules", "compute", "hbm", "host", "links", "static", "total"]
    assert "all 16 devices" in text and "links by type: " in text and "/token" in text


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sim", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("value, expected", [
    ("-1", "energy.byte_pj.hbm: expected a non-negative value"),
    ("44pJ", "energy.byte_pj.hbm: expected a number"),
])
def test_bad_device_energy_figures_are_one_line_exit_2_and_nothing_written(tmp_path, value, expected):
    out = tmp_path / "out"
    proc = _cli("run", str(ROOT / "scenarios" / "npu_scratchpad.yaml"), "--out", str(out), "--quiet",
                "--set", f"device_overrides.energy.byte_pj.hbm={value}")
    assert proc.returncode == 2 and not out.exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr


def test_a_device_energy_tier_the_device_lacks_is_an_error():
    raw_path = device_catalog()["npu_pim"]
    with pytest.raises(SpecError, match=r"energy\.byte_pj\.ddr: the device has no memory tier 'ddr'"):
        load_device_spec(raw_path, overrides={"energy": {"byte_pj": {"ddr": 1.0}}})
    with pytest.raises(SpecError, match=r"energy\.flop_pj\.sm_array: the device has no sm_array"):
        load_device_spec(raw_path, overrides={"energy": {"flop_pj": {"sm_array": {"bf16": 1.0}}}})


@pytest.mark.parametrize("energy, expected", [
    ("{byte_pj: -3}", "energy.byte_pj: expected a non-negative value"),
    ("{byte_pj: 5pJ}", "energy.byte_pj: expected a number"),
    ("{pj_per_byte: 5}", "energy: missing key 'byte_pj'"),
])
def test_bad_link_energy_is_one_line_exit_2_and_nothing_written(tmp_path, energy, expected):
    link = tmp_path / "bad_link.yaml"
    shipped = (ROOT / "topologies" / "links" / "nvlink3.yaml").read_text()
    link.write_text(shipped.split("\nenergy:")[0] + f"\nenergy: {energy}\n")
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(f"generator: cluster:2x8\ndevice: a100_sxm4_80gb\nnvlink: {link}\nnic: ib_hdr\n")
    out = tmp_path / "out"
    proc = _cli("run", str(QUICKSTART), "--out", str(out), "--quiet", "--set", f"cluster={cluster}")
    assert proc.returncode == 2 and not out.exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad_link.yaml" in lines[0] and expected in lines[0], proc.stderr


def test_run_summary_json_carries_the_energy_section(tmp_path):
    out = tmp_path / "run"
    proc = _cli("run", str(ROOT / "scenarios" / "resnet50_tpu.yaml"), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    energy = json.loads((out / "summary.json").read_text())["energy"]
    assert energy["total_j"] > 0 and energy["breakdown_j"]["compute"] > 0 and energy["breakdown_j"]["hbm"] > 0
