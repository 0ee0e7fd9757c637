"""ZeRO stages 1-3, FSDP strategies and optimizer offload: the ZeRO paper's
memory formulas, communication volume, prefetch, folded vs full, errors."""

import subprocess
import sys

import pytest

import sim
from sim.errors import ScenarioError
from sim.parallel.memory import model_states, stage_params, zero_model_states
from sim.parallel.plan import ParallelPlan
from sim.workload.transformer import ModelConfig

from conftest import ROOT

SMALL = {"cluster": "cluster:1x8", "device": "a100_sxm4_80gb",
         "model": {"layers": 4, "hidden": 2048, "heads": 16, "seq_len": 1024, "vocab": 32000},
         "parallel": {"dp": 4, "tp": 2, "microbatches": 2}}


def small(fidelity="folded", **parallel):
    return {**SMALL, "parallel": {**SMALL["parallel"], **parallel}, "training": {"fidelity": fidelity}}


def test_zero_paper_figure_1():
    """Rajbhandari et al. SC'20, Figure 1: Psi = 7.5B parameters, N_d = 64, K = 12:
    120 GB baseline, 31.4 GB with P_os, 16.6 GB with P_os+g, 1.88 GB with P_os+g+p."""
    expected = {0: 120e9, 1: 31.4e9, 2: 16.6e9, 3: 1.88e9}
    for stage, total in expected.items():
        assert sum(zero_model_states(7.5e9, 64, stage)) == pytest.approx(total, rel=5e-3)


@pytest.mark.parametrize("zero", [0, 1, 2, 3])
@pytest.mark.parametrize("shard_group", [0, 2])
def test_model_states_are_the_zero_formulas(zero, shard_group):
    """Per GPU: (2 + 2 + K) Psi, 2 Psi + 2 Psi + K Psi / N_d, 2 Psi + (2 + K) Psi / N_d,
    (2 + 2 + K) Psi / N_d, with Psi the stage's parameters per TP rank and N_d the shard group."""
    if shard_group and zero < 2:
        return
    cfg = ModelConfig("m", layers=8, hidden=1024, heads=16, seq_len=512, vocab=8192)
    plan = ParallelPlan(dp=8, tp=2, pp=2, microbatches=4, zero=zero, shard_group=shard_group)
    nd = shard_group or 8
    for stage in range(2):
        psi = stage_params(cfg, plan, stage)
        formula = {0: (2 + 2 + 12) * psi, 1: 2 * psi + 2 * psi + 12 * psi / nd,
                   2: 2 * psi + (2 + 12) * psi / nd, 3: (2 + 2 + 12) * psi / nd}[zero]
        assert sum(model_states(cfg, plan, stage)) == pytest.approx(formula, rel=1e-12)


def _dp_bytes(scenario, kinds):
    return sum(op.bytes_read for op in scenario.trace.ops if op.phase == "dp" and op.op in kinds)


def test_communication_volume_matches_the_zero_paper():
    """Sec. 7: ZeRO-2 moves what data parallelism's all-reduce does (a reduce-scatter and
    an all-gather of Psi each), ZeRO-3 1.5 times as much (a second all-gather, in backward).
    (Without embeddings: FSDP's root unit is gathered once, not resharded after forward.)"""
    def plan(**parallel):
        raw = small(microbatches=1, **parallel)
        return sim.load_scenario_dict({**raw, "model": {**raw["model"], "vocab": 0}})
    ddp, stage2, stage3 = plan(), plan(zero=2), plan(zero=3)
    allreduce = 2 * _dp_bytes(ddp, ("allreduce",))
    assert _dp_bytes(stage2, ("reduce_scatter", "allgather")) == pytest.approx(allreduce, rel=1e-12)
    assert _dp_bytes(stage3, ("reduce_scatter", "allgather")) == pytest.approx(1.5 * allreduce, rel=1e-12)


def test_zero3_gathers_each_layer_before_forward_and_backward_and_reduces_per_microbatch():
    scenario = sim.load_scenario_dict(small(zero=3))
    ops = scenario.trace.ops
    gathers = [op for op in ops if op.op == "allgather" and ".L" in op.name]
    scatters = [op for op in ops if op.op == "reduce_scatter" and ".L" in op.name]
    # 4 layers x 2 microbatches x (forward, backward); one reduce-scatter per layer and microbatch
    assert len(gathers) == 4 * 2 * 2 and len(scatters) == 4 * 2
    assert all(op.group == (0, 2, 4, 6) for op in gathers)  # the DP ranks of TP rank 0 (mapping tp,pp,dp)
    by_id = {op.id: op for op in ops}
    for op in ops:  # every layer's first compute waits for its gather
        if op.op == "gemm" and op.name.endswith(".L1.attn") and op.phase == "fwd":
            assert any(by_id[d].op == "allgather" for d in op.deps)


def test_prefetch_overlaps_gathers_with_compute():
    """Gathering each layer only when it is needed (prefetch 0) exposes the
    all-gathers; one ahead (FSDP's default) hides them; a second adds nothing
    here (it only shares the links with the gradient reduce-scatters sooner)."""
    times = [sim.run(small(zero=3, zero_prefetch=p)).summary["iteration_time_s"] for p in (0, 1, 2)]
    assert times[0] > 1.05 * times[1]
    assert times[2] == pytest.approx(times[1], rel=0.01)


@pytest.mark.parametrize("parallel", [
    {"zero": 2},
    {"zero": 3},
    {"fsdp": "hybrid_shard", "shard_group": 2},
    {"zero": 2, "offload_optimizer": True}])
def test_folded_and_full_agree_and_the_ledger_stays_within_the_model(parallel):
    folded = sim.run(small("folded", **parallel)).summary
    full = sim.run(small("full", **parallel)).summary
    assert full["devices"] == 8 and folded["devices"] == 1
    assert folded["iteration_time_s"] == pytest.approx(full["iteration_time_s"], rel=0.01)
    model = full["memory_per_gpu"]["peak_bytes"]
    for device, peak in full["peak_memory_bytes"].items():
        # the model counts two layers' unsharded gradients; the run holds one or two
        assert model * 0.9 <= peak["hbm"] <= model * (1 + 1e-9)


def test_offload_moves_the_optimizer_state_to_the_host():
    plain = sim.load_scenario_dict(small(zero=2))
    offload = sim.load_scenario_dict(small(zero=2, offload_optimizer=True))
    a, b = plain.training.memory[0], offload.training.memory[0]
    assert b.optimizer_bytes == 0 and b.host_bytes == pytest.approx(a.optimizer_bytes)
    assert b.total_bytes == pytest.approx(a.total_bytes - a.optimizer_bytes)
    cfg, plan = offload.training.model, offload.training.plan
    shard = stage_params(cfg, plan, 0) / plan.shards
    copies = [op for op in offload.trace.ops if op.op == "copy" and op.phase == "optimizer"]
    assert {op.name.split(".")[-1] for op in copies} == {"grad_to_host", "params_to_device"}
    assert all(op.bytes_read == pytest.approx(2 * shard) for op in copies)
    assert offload.resident_by_rank[0]["optimizer"][0] == "host"


@pytest.mark.parametrize("parallel,key", [
    ({"zero": 4}, "parallel.zero"),
    ({"zero": 1, "fsdp": "full_shard"}, "parallel.fsdp"),
    ({"zero": 3, "shard_group": 3}, "parallel.shard_group"),
    ({"fsdp": "hybrid_shard"}, "parallel.shard_group"),
    ({"zero": 1, "shard_group": 2}, "parallel.shard_group"),
    ({"zero": 2, "zero_prefetch": 2}, "parallel.zero_prefetch"),
    ({"offload_optimizer": True}, "parallel.offload_optimizer"),
    ({"fsdp": "fully_sharded"}, "parallel.fsdp"),
])
def test_invalid_sharding_plans(parallel, key):
    with pytest.raises(ScenarioError, match=key.replace(".", r"\.")):
        sim.load_scenario_dict(small(**parallel))


def test_invalid_sharding_from_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sim", "run", "scenarios/quickstart.yaml", "--out", tmp_path / "o",
                           "--set", "parallel.zero=3", "--set", "parallel.fsdp=shard_grad_op"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "parallel.fsdp" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_fsdp_from_the_command_line(tmp_path):
    import json
    out = tmp_path / "fsdp"
    proc = subprocess.run([sys.executable, "-m", "sim", "run", "scenarios/quickstart.yaml", "--out", out,
                           "--set", "parallel.fsdp=full_shard", "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parallel"]["zero"] == 3
    assert summary["memory_per_gpu"]["stages"][0]["buffers_bytes"] > 0
