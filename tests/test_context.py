"""Context parallelism: ring attention and all-gather KV, causal load balancing,
the causal work conserved, KV bytes, memory of long sequences, folded vs full, errors."""

import json
import subprocess
import sys

import pytest

import sim
from sim.errors import ScenarioError
from sim.parallel.emit.context import kv_bytes, step_blocks
from sim.parallel.memory import stage_memory
from sim.parallel.plan import ParallelPlan
from sim.workload.transformer import ModelConfig

from conftest import ROOT

MODEL = {"layers": 4, "hidden": 1024, "heads": 16, "kv_heads": 4, "seq_len": 8192, "vocab": 8192}


def plan(cluster="cluster:2x4", fidelity="folded", **parallel):
    return {"cluster": cluster, "device": "a100_sxm4_80gb", "model": MODEL,
            "parallel": {"dp": 2, "tp": 2, "cp": 2, "microbatches": 2, "sequence_parallel": True, **parallel},
            "training": {"fidelity": fidelity}}


@pytest.mark.parametrize("cp", [2, 4, 8])
@pytest.mark.parametrize("algorithm", ["ring", "allgather"])
@pytest.mark.parametrize("balance", [True, False])
def test_causal_attention_work_is_conserved(cp, algorithm, balance):
    """Summed over the CP ranks and steps, the blocks do exactly the causal
    attention of the whole sequence: half of 4 b h s^2 d per layer forward."""
    cfg = ModelConfig("m", layers=1, hidden=1024, heads=16, seq_len=4096, vocab=0, kv_heads=4)
    p = ParallelPlan(cp=cp, cp_algorithm=algorithm, cp_load_balance=balance)
    steps = 1 if algorithm == "allgather" else cp
    total = sum(k.flops for i in range(cp) for step in range(steps) for k in step_blocks(cfg, p, i, step, False))
    assert total == pytest.approx(4 * 16 * 4096 * 4096 * 64 / 2, rel=1e-12)


def test_load_balancing_evens_the_work_per_step():
    """Balanced: every rank does 2 chunk-blocks per ring step; unbalanced: the
    last rank does 4 every step after the first, the first rank none."""
    cfg = ModelConfig("m", layers=1, hidden=1024, heads=16, seq_len=4096, vocab=0)
    for balance, expected in ((True, {0: 2, 1: 2, 3: 2}), (False, {0: 0, 1: 0, 3: 4})):
        p = ParallelPlan(cp=4, cp_load_balance=balance)
        unit = 4 * 16 * (4096 // 8) ** 2 * 64   # one full c x c chunk-block
        for index, work in expected.items():
            flops = sum(k.flops for k in step_blocks(cfg, p, index, 2, False))
            assert flops == pytest.approx(work * unit, rel=1e-12)


@pytest.mark.parametrize("algorithm", ["ring", "allgather"])
def test_trace_flops_match_the_same_iteration_without_cp(algorithm):
    """The generated iteration does the same work with and without context parallelism."""
    with_cp = sim.load_scenario_dict(plan("ideal", cp_algorithm=algorithm))
    without = sim.load_scenario_dict(plan("ideal", cp=1))
    a, b = with_cp.training, without.training
    assert a.expansion.hardware_flops * a.plan.replicas * a.plan.tp == pytest.approx(
        b.expansion.hardware_flops * b.plan.replicas * b.plan.tp, rel=1e-9)


def test_ring_passes_kv_blocks_and_allgather_gathers_them():
    ring = sim.load_scenario_dict(plan())
    cfg, p = ring.training.model, ring.training.plan
    block = 2 * 1 * (8192 / 2) * cfg.kv_dim / 2 * 2                # K and V, b (s/cp) kv_dim / t, bf16
    assert kv_bytes(cfg, p) == block
    sends = [op for op in ring.trace.ops if op.phase == "cp"]
    # per layer and microbatch: cp - 1 = 1 send forward, 1 in backward (KV and dK, dV: twice)
    assert len(sends) == 4 * 2 * 2 and {op.op for op in sends} == {"sendrecv"}
    assert sorted({op.bytes_read for op in sends}) == [block, 2 * block]
    gathered = sim.load_scenario_dict(plan(cp_algorithm="allgather"))
    ops = [op for op in gathered.trace.ops if op.phase == "cp"]
    assert {op.op for op in ops} == {"allgather", "reduce_scatter"}
    assert all(op.bytes_read == 2 * block and len(op.group) == 2 for op in ops)


@pytest.mark.parametrize("extra", [{}, {"cp_load_balance": False}, {"cp_algorithm": "allgather"},
                                   {"zero": 3}, {"schedule": "zb-h1", "pp": 2, "dp": 1}])
def test_folded_and_full_agree(extra):
    folded = sim.run(plan(**extra)).summary
    full = sim.run(plan(fidelity="full", **extra)).summary
    assert full["devices"] == 8
    assert folded["iteration_time_s"] == pytest.approx(full["iteration_time_s"], rel=0.01)
    assert "cp" in full["exposed_comm_s"]


def test_unbalanced_causal_attention_is_slower():
    balanced = sim.run(plan()).summary["iteration_time_s"]
    unbalanced = sim.run(plan(cp_load_balance=False)).summary["iteration_time_s"]
    assert unbalanced > balanced


def test_activations_of_long_sequences_divide_by_cp():
    """Every kept activation is per token (flash attention keeps no s x s scores):
    a rank holds 1/cp of a sequence's."""
    cfg = ModelConfig("m", layers=8, hidden=4096, heads=32, kv_heads=8, seq_len=131072, vocab=0, gated_mlp=True,
                      ffn_hidden=14336)
    one = stage_memory(cfg, ParallelPlan(tp=8, sequence_parallel=True, microbatches=2), 0)
    for cp in (2, 4, 8):
        split = stage_memory(cfg, ParallelPlan(tp=8, cp=cp, sequence_parallel=True, microbatches=2), 0)
        assert split.activations_bytes == pytest.approx(one.activations_bytes / cp, rel=1e-12)


def test_a_long_context_that_only_fits_with_cp():
    path = ROOT / "scenarios" / "long_context_cp.yaml"
    scenario = sim.load_scenario(path)
    assert scenario.training.plan.cp == 2 and scenario.training.model.seq_len == 131072
    with pytest.raises(ScenarioError, match="does not fit in memory"):
        sim.load_scenario(path, ["parallel.cp=1", "parallel.dp=2"])


@pytest.mark.parametrize("parallel,model,key", [
    ({"cp": 3, "dp": 1}, {}, "parallel"),                                  # 2 x 2 x 3 != 8
    ({"cp": 4, "dp": 1}, {"seq_len": 8190}, "parallel.cp"),               # not 2 x cp chunks
    ({"cp": 2}, {"attention": "materialized"}, "parallel.cp"),
    ({"cp": 2, "cp_algorithm": "tree"}, {}, "parallel.cp_algorithm"),
])
def test_invalid_context_parallel_plans(parallel, model, key):
    raw = plan(**parallel)
    raw["model"] = {**MODEL, **model}
    with pytest.raises(ScenarioError, match=key.replace(".", r"\.")):
        sim.load_scenario_dict(raw)


def test_context_parallel_from_the_command_line(tmp_path):
    out = tmp_path / "long"
    proc = subprocess.run([sys.executable, "-m", "sim", "run", "scenarios/long_context_cp.yaml", "--out", out,
                           "--quiet", "--set", "parallel.cp_algorithm=allgather", "--set", "model.layers=8"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parallel"]["cp"] == 2 and summary["exposed_comm_s"]["cp"] >= 0
    assert 0 < summary["mfu"] <= summary["hfu"] < 1
