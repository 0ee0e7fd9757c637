"""The software-overlap switches of the parallel plan: ``overlap_grad_reduce``
(data-parallel gradients reduced during the backward, or once after it as
Megatron-LM's local DDP of 2021) and ``async_tp_allreduce`` (the tensor-parallel
input-gradient collective overlapping the weight-gradient GEMMs, or after them
as autograd ran it in 2021). Defaults keep today's traces
(tests/test_expansion_identity.py); these tests check what the switches change."""

import subprocess
import sys

import pytest

import sim
from sim.errors import ScenarioError

from conftest import ROOT

# No SM contention between collectives and kernels (comm_sms 0, our ring
# algorithm reports no NCCL channels), so overlap can only hide time.
BASE = {"cluster": "cluster:2x4", "device": "a100_sxm4_80gb",
        "device_overrides": {"sm_array": {"comm_sms": 0}},
        "model": {"layers": 8, "hidden": 2048, "heads": 16, "seq_len": 1024, "vocab": 8192},
        "parallel": {"dp": 2, "tp": 2, "pp": 2, "microbatches": 4, "recompute": "full",
                     "dp_bucket_bytes": "4MiB", "tp_algorithm": "ring", "dp_algorithm": "ring"}}


def _raw(**parallel) -> dict:
    return {**BASE, "parallel": {**BASE["parallel"], **parallel}}


def _ops(raw: dict):
    return sim.load_scenario_dict(raw).training.expansion.ops


def _dp_collectives(ops):
    return [op for op in ops if op.group and ".dp." in op.name]


def test_grad_reduce_after_backward_is_one_collective_of_the_same_bytes():
    overlapped = _dp_collectives(_ops(_raw()))
    serial = _dp_collectives(_ops(_raw(overlap_grad_reduce=False)))
    stages = {op.stage for op in overlapped}
    assert len(overlapped) > len(stages)              # several buckets per stage with overlap
    assert sorted(op.stage for op in serial) == sorted(stages)   # one per stage without
    for s in stages:
        assert sum(op.bytes_read for op in serial if op.stage == s) == \
            pytest.approx(sum(op.bytes_read for op in overlapped if op.stage == s))


def test_grad_reduce_after_backward_starts_after_every_backward_op():
    rows = sim.run(_raw(overlap_grad_reduce=False)).timeline.to_pylist()
    backward_end: dict[str, float] = {}
    for r in rows:
        if r["category"] == "compute" and r["phase"] in ("bwd", "recompute"):
            backward_end[r["device"]] = max(backward_end.get(r["device"], 0.0), r["end_s"])
    dp = [r for r in rows if r["category"] == "comm" and ".dp." in r["name"] and r["device"] in backward_end]
    assert len(dp) >= 2   # both simulated stages
    for row in dp:
        assert row["start_s"] >= backward_end[row["device"]] - 1e-12


def test_serial_tp_allreduce_follows_the_weight_gradients():
    ops = _ops(_raw(async_tp_allreduce=False))
    by_id = {op.id: op for op in ops}
    backward_tp = [op for op in ops if op.group and op.op == "allreduce" and ".dgrad." in op.name]
    assert backward_tp
    for op in backward_tp:
        assert any(".wgrad" in by_id[d].name for d in op.deps), op.name
    # the same collectives as with overlap, only ordered differently
    ops_on = _ops(_raw())
    by_id_on = {op.id: op for op in ops_on}
    overlapped = [op for op in ops_on if op.group and op.op == "allreduce" and ".dgrad." in op.name]
    assert sorted(op.name for op in overlapped) == sorted(op.name for op in backward_tp)
    assert all(not any(".wgrad" in by_id_on[d].name for d in op.deps) for op in overlapped)


def _nccl(raw: dict) -> dict:
    """The same run with NCCL's algorithms, whose kernels take one SM per channel."""
    parallel = {k: v for k, v in raw["parallel"].items() if k not in ("tp_algorithm", "dp_algorithm")}
    return {**{k: v for k, v in raw.items() if k != "device_overrides"}, "parallel": parallel}


@pytest.mark.parametrize("contention", [False, True])
@pytest.mark.parametrize("knobs", [{"overlap_grad_reduce": False}, {"async_tp_allreduce": False},
                                   {"overlap_grad_reduce": False, "async_tp_allreduce": False}])
def test_disabling_overlap_never_makes_an_iteration_faster(knobs, contention):
    """Also when the communication kernels hold SMs: a GEMM beside a collective
    takes them back when it ends (sim.engine.device), so overlapping never costs
    more than serialising."""
    wrap = _nccl if contention else (lambda raw: raw)
    on = sim.run(wrap(_raw())).summary["iteration_time_s"]
    off = sim.run(wrap(_raw(**knobs))).summary["iteration_time_s"]
    assert off >= on * (1 - 1e-9)
    assert off > on   # and here the hidden communication becomes exposed


@pytest.mark.parametrize("knobs,message", [
    ({"overlap_grad_reduce": False, "zero": 2}, "parallel.overlap_grad_reduce: ZeRO stage 2"),
    ({"async_tp_allreduce": False, "schedule": "zb-h1"}, "parallel.async_tp_allreduce: false"),
    ({"async_tp_allreduce": "maybe"}, "parallel.async_tp_allreduce"),
    ({"optimizer": "megatron_fp16", "zero": 1, "offload_optimizer": True}, "parallel.optimizer: megatron_fp16"),
    ({"optimizer": "sgd"}, "parallel.optimizer"),
])
def test_overlap_knob_errors(knobs, message):
    with pytest.raises(ScenarioError, match=message.replace(".", r"\.")):
        sim.load_scenario_dict(_raw(**knobs))


def test_overlap_knob_from_the_command_line_exits_2_with_one_line(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "sim", "run", "scenarios/gpt3_175b_1024_a100.yaml", "--out", out,
                           "--set", "parallel.zero=2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "overlap_grad_reduce" in proc.stderr
    assert not out.exists()


def test_megatron_fp16_optimizer_moves_52_bytes_per_parameter_where_fused_moves_28():
    """Megatron-LM's Float16OptimizerWithFloat16Params.step (2021): copy grads 2+4, unscale 4+4,
    norm 4, FusedAdam 16+12, copy params 4+2 = 52 bytes per parameter; the fused step 28."""
    def step_bytes(optimizer):
        return {op.stage: op.bytes_read + op.bytes_written for op in _ops(_raw(optimizer=optimizer))
                if op.phase == "optimizer"}
    fused, megatron = step_bytes("fused"), step_bytes("megatron_fp16")
    assert fused.keys() == megatron.keys() == {0, 1}
    for stage in fused:
        assert megatron[stage] == pytest.approx(fused[stage] * 52 / 28, rel=1e-12)
    on = sim.run(_raw()).summary["iteration_time_s"]
    assert sim.run(_raw(optimizer="megatron_fp16")).summary["iteration_time_s"] > on
