"""Three tiers and offload: model switching on an SN40L-like socket, ZeRO-Offload-like training."""

from __future__ import annotations

from pathlib import Path

import pytest

import sim
from sim.memory.offload import coe_switching_ops, zero_offload_ops

ROOT = Path(__file__).resolve().parents[1]


def _bytes_on(result, unit, phase=None):
    rows = result.timeline.to_pylist()
    return sum(r["bytes"] for r in rows if r["unit"] == unit and (phase is None or r["phase"] == phase))


def test_expert_loads_are_the_cache_misses_and_prefetch_hides_them():
    requests = [0, 1, 0, 2, 3, 1, 4, 0, 5, 2, 1, 0]
    ops = coe_switching_ops(requests, 6.74e9, 16, 8, hbm_slots=3)
    loads = [op for op in ops if op.phase == "switch"]
    # LRU over 3 slots: every request misses but the third (0 again right after 1)
    assert [int(op.name.removeprefix("load expert")) for op in loads] == [0, 1, 2, 3, 1, 4, 0, 5, 2, 1, 0]
    assert all(op.bytes_read == 6.74e9 * 2 for op in loads)
    scenario = ROOT / "scenarios" / "sn40l_coe_switching.yaml"
    prefetch = sim.run(scenario)
    on_demand = sim.run(scenario, ["trace=../traces/coe_switching_on_demand.jsonl"])
    assert prefetch.summary["makespan_s"] < on_demand.summary["makespan_s"]
    # the DDR tier carries exactly the experts' weights, once per miss
    assert _bytes_on(prefetch, "ddr") == pytest.approx(11 * 6.74e9 * 2)
    assert prefetch.summary["peak_memory_bytes"]["rdu0"]["hbm"] <= 3 * 6.74e9 * 2
    # on demand, every switch is exposed: at least 11 loads of 13.5 GB at DDR's 200 GB/s
    decode_s = sum(r["end_s"] - r["start_s"] for r in on_demand.timeline.to_pylist()
                   if r["unit"] == "vector")
    assert on_demand.summary["makespan_s"] >= decode_s + 11 * 6.74e9 * 2 / 2.0e11 * 0.999


def test_zero_offload_moves_gradients_and_parameters_over_pcie():
    layers, h = 24, 2048
    params = 12 * h * h
    scenario = ROOT / "scenarios" / "zero_offload.yaml"
    plain = sim.run(scenario)
    with_act = sim.run(scenario, ["trace=../traces/zero_offload_step_act.jsonl"])
    offload = _bytes_on(plain, "host", "offload")
    assert offload == pytest.approx(layers * 2 * params)                 # bf16 gradients out
    assert _bytes_on(plain, "host", "prefetch") == pytest.approx(layers * 2 * params)   # params back
    act = 34.0 * 2048 * 2048
    assert _bytes_on(with_act, "host", "offload") == pytest.approx(layers * (2 * params + act))
    # activations offloaded: less HBM held at the peak, more PCIe traffic, not faster
    assert with_act.summary["peak_memory_bytes"]["gpu0"]["hbm"] < plain.summary["peak_memory_bytes"]["gpu0"]["hbm"]
    assert with_act.summary["makespan_s"] >= plain.summary["makespan_s"]


def test_offload_ops_without_activation_offload_keep_activations_on_the_device():
    ops = zero_offload_ops(2, 256, 128, 1, offload_activations=False)
    assert not [op for op in ops if "act" in op.name and op.op == "copy"]
    ops = zero_offload_ops(2, 256, 128, 1, offload_activations=True)
    assert len([op for op in ops if op.phase == "prefetch" and "act" in op.name]) == 2
