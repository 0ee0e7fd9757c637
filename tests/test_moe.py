"""Mixture of experts with expert parallelism: presets against published
parameter counts, FLOPs and all-to-all volume closed forms, routing, memory,
folded vs full, placement, errors; the pairwise all-to-all's closed forms."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

import sim
from sim.errors import ScenarioError
from sim.network.runtime import simulate_collective
from sim.network.topology import from_name
from sim.parallel.experts import ep_group, expert_dp_group, moe_layer_params
from sim.parallel.memory import stage_params
from sim.parallel.metrics import training_flops
from sim.parallel.plan import ParallelPlan, model_from_dict
from sim.workload.moe import MoEConfig, capacity, expert_loads, expert_params, mlp_forward_flops_per_token

from conftest import ROOT

SMALL = {"cluster": "cluster:2x4", "device": "a100_sxm4_80gb",
         "model": {"layers": 4, "hidden": 1024, "heads": 16, "seq_len": 1024, "vocab": 8192, "gated_mlp": True,
                   "attention": "materialized",
                   "moe": {"experts": 8, "top_k": 2}},
         "parallel": {"dp": 4, "tp": 2, "microbatches": 2, "ep": 4, "sequence_parallel": True}}


def small(fidelity="folded", moe=None, **parallel):
    model = {**SMALL["model"], "moe": {**SMALL["model"]["moe"], **(moe or {})}}
    return {**SMALL, "model": model, "parallel": {**SMALL["parallel"], **parallel},
            "training": {"fidelity": fidelity}}


def _total_and_active(cfg):
    """Parameters of the whole model (untied embeddings, no position table: RoPE) and per token."""
    h = cfg.hidden
    attention = h * (h + 2 * cfg.kv_dim) + (h + 2 * cfg.kv_dim) + h * h + h + 4 * h
    fc1 = 2 * cfg.ffn if cfg.gated_mlp else cfg.ffn
    dense_mlp = h * fc1 + fc1 + cfg.ffn * h + h
    moe = cfg.moe
    total = active = 2 * cfg.vocab * h
    for layer in range(cfg.layers):
        if moe.is_moe(layer):
            total += attention + h * moe.experts + (moe.experts + moe.shared_experts) * expert_params(cfg)
            active += attention + h * moe.experts + (moe.top_k + moe.shared_experts) * expert_params(cfg)
        else:
            total += attention + dense_mlp
            active += attention + dense_mlp
    return total, active


@pytest.mark.parametrize("preset,total,active,rel", [
    ("mixtral-8x7b", 46.7e9, 12.9e9, 0.01),        # Jiang et al. 2024: 47B parameters, 13B active
    ("deepseek-v3-like", 671e9, 37e9, 0.05),       # DeepSeek-V3 report: 671B, 37B active (MLA as MHA here)
])
def test_presets_match_published_parameter_counts(preset, total, active, rel):
    cfg = model_from_dict({"preset": preset})
    ours_total, ours_active = _total_and_active(cfg)
    assert ours_total == pytest.approx(total, rel=rel)
    assert ours_active == pytest.approx(active, rel=rel)
    # the MLP part's FLOPs per token: twice the router's and active experts' weights
    moe = cfg.moe
    assert mlp_forward_flops_per_token(cfg) == pytest.approx(
        2 * (cfg.hidden * moe.experts + (moe.top_k + moe.shared_experts) * expert_params(cfg)), rel=1e-3)


def test_preset_keys_are_overridable():
    cfg = model_from_dict({"preset": "mixtral-8x7b", "layers": 4, "moe": {"top_k": 1}})
    assert (cfg.layers, cfg.hidden, cfg.moe.experts, cfg.moe.top_k) == (4, 4096, 8, 1)


@pytest.mark.parametrize("fidelity", ["folded", "full"])
def test_generated_trace_carries_the_moe_flops(fidelity):
    """Balanced dropless routing: every expert gets T k / E tokens, so the trace's
    matrix FLOPs add up to the analytical count (router, top-k experts, attention)."""
    scenario = sim.load_scenario_dict(small(fidelity))
    cfg, plan = scenario.training.model, scenario.training.plan
    copies = plan.dp * plan.tp if fidelity == "folded" else 1
    _, hardware = training_flops(cfg, plan.global_batch, plan.recompute)
    assert scenario.training.expansion.hardware_flops * copies == pytest.approx(hardware, rel=1e-9)


def test_balanced_dispatch_moves_the_routed_copies():
    """Per rank and all-to-all: its b s / t tokens, k copies of h elements each."""
    scenario = sim.load_scenario_dict(small())
    cfg, plan = scenario.training.model, scenario.training.plan
    a2a = [op for op in scenario.trace.ops if op.op == "alltoall"]
    # per MoE layer and microbatch: dispatch and combine, forward and backward
    assert len(a2a) == cfg.layers * plan.microbatches * 4
    expected = plan.microbatch_size * cfg.seq_len / plan.tp * cfg.moe.top_k * cfg.hidden * cfg.dtype_bytes
    assert all(op.bytes_read == pytest.approx(expected) and op.phase == "ep" for op in a2a)
    assert all(len(op.group) == plan.ep for op in a2a)


def test_routing_is_seeded_and_documented():
    moe = MoEConfig(experts=16, top_k=2, routing_alpha=1.0, routing_seed=3)
    a = expert_loads(moe, 4096, layer=2, microbatch=5)
    assert a == expert_loads(MoEConfig(**{**moe.__dict__}), 4096, 2, 5)          # same seed, same draw
    assert a != expert_loads(moe, 4096, 2, 6)                                    # another microbatch
    assert sum(a) == 4096 * 2 and max(a) <= 4096                                  # k distinct experts
    balanced = expert_loads(MoEConfig(experts=16, top_k=2), 4096, 0, 0)
    assert set(balanced) == {512}
    # Dirichlet shares: unbiased on average, more skewed as alpha falls
    def skew(alpha):
        draws = [expert_loads(MoEConfig(experts=16, top_k=2, routing_alpha=alpha), 4096, layer, 0)
                 for layer in range(400)]
        return np.mean(draws, axis=0), np.mean([max(d) for d in draws])
    mean, skew_1 = skew(1.0)
    assert np.allclose(mean, 512, rtol=0.15)
    _, skew_10 = skew(10.0)
    assert 512 < skew_10 < skew_1


def test_capacity_factor_drops_tokens():
    """Megatron-Core's capacity ceil(C T k / E): no expert processes more."""
    moe = MoEConfig(experts=8, top_k=2, routing_alpha=0.5, capacity_factor=1.25)
    cap = capacity(moe, 1000)
    assert cap == math.ceil(1.25 * 1000 * 2 / 8)
    loads = expert_loads(moe, 1000, 0, 0)
    assert max(loads) <= cap and sum(loads) < 2000


def test_expert_memory_per_rank():
    """Each rank holds experts / ep whole experts; expert optimizer state shards over
    the expert-data-parallel group (dp x tp / ep) with ZeRO-1."""
    cfg = model_from_dict(SMALL["model"])
    plan = ParallelPlan(dp=4, tp=2, microbatches=2, ep=4, sequence_parallel=True)
    dense, experts = moe_layer_params(cfg, plan)
    assert experts == 2 * expert_params(cfg)
    assert stage_params(cfg, plan, 0) == pytest.approx(4 * (dense + experts) + (8192 + 1024) * 1024 / 2)
    scenario = sim.load_scenario_dict(small(zero=1))
    plain = sim.load_scenario_dict(small())
    saved = plain.training.memory[0].optimizer_bytes - scenario.training.memory[0].optimizer_bytes
    dense_all = stage_params(cfg, plan, 0) - 4 * experts
    assert saved == pytest.approx(12 * (dense_all * (1 - 1 / 4) + 4 * experts * (1 - 1 / 2)))


def test_ep_groups_and_placement():
    plan = ParallelPlan(dp=4, tp=2, ep=4, microbatches=1)
    assert ep_group(plan, 0, 0, 0) == [0, 1, 2, 3]                        # two replicas' TP ranks
    assert expert_dp_group(plan, 0, 0, 0) == [0, 4]
    strided = ParallelPlan(dp=4, tp=2, ep=4, microbatches=1, ep_placement="strided")
    assert ep_group(strided, 0, 0, 0) == [0, 2, 4, 6]
    assert expert_dp_group(strided, 0, 0, 0) == [0, 1]


@pytest.mark.parametrize("moe", [{}, {"routing_alpha": 2.0}, {"capacity_factor": 1.0, "routing_alpha": 2.0}])
def test_folded_and_full_agree(moe):
    folded = sim.run(small("folded", moe)).summary
    full = sim.run(small("full", moe)).summary
    assert full["devices"] == 8 and folded["devices"] == 1
    assert folded["iteration_time_s"] == pytest.approx(full["iteration_time_s"], rel=0.01)
    assert full["exposed_comm_s"]["ep"] > 0


def test_imbalance_and_placement_cost_time():
    balanced = sim.run(small()).summary["iteration_time_s"]
    skewed = sim.run(small(moe={"routing_alpha": 0.5})).summary["iteration_time_s"]
    assert skewed > balanced
    # an EP group inside a node (NVLink) against one spread over both nodes (InfiniBand)
    inside = sim.run(small()).summary
    across = sim.run(small(ep_placement="strided")).summary
    assert across["exposed_comm_s"]["ep"] > inside["exposed_comm_s"]["ep"]


@pytest.mark.parametrize("parallel,model,key", [
    ({"ep": 3}, None, "parallel.ep"),
    ({"ep": 16}, None, "parallel.ep"),
    ({"ep": 4, "sequence_parallel": False}, None, "parallel.sequence_parallel"),
    ({"zero": 2}, None, "parallel.zero"),
    ({"zero": 3}, None, "parallel.zero"),
    ({"ep": 2}, {"moe": None}, "parallel.ep"),
    ({}, {"moe": {"experts": 8, "top_k": 9}}, "model.moe"),
    ({}, {"preset": "mixtral-9x9b"}, "model"),
])
def test_invalid_moe_plans(parallel, model, key):
    raw = small(**parallel)
    if model is not None:
        raw["model"] = {**raw["model"], **model}
        if model.get("moe", 1) is None:
            del raw["model"]["moe"]
    with pytest.raises(ScenarioError, match=key.replace(".", r"\.")):
        sim.load_scenario_dict(raw)


def test_moe_from_the_command_line(tmp_path):
    import yaml
    scenario = tmp_path / "moe.yaml"
    scenario.write_text(yaml.safe_dump(small()))
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "sim", "run", scenario, "--out", out, "--quiet",
                           "--set", "model.moe.routing_alpha=1.0", "--set", "parallel.ep_placement=strided"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parallel"]["ep"] == 4 and summary["exposed_comm_s"]["ep"] > 0
    bad = subprocess.run([sys.executable, "-m", "sim", "run", scenario, "--out", tmp_path / "bad",
                          "--set", "parallel.ep=3"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "parallel.ep" in bad.stderr and not (tmp_path / "bad").exists()
    assert len(bad.stderr.strip().splitlines()) == 1


def test_shipped_mixtral_scenario_validates():
    scenario = sim.load_scenario(ROOT / "scenarios" / "mixtral_8x7b_moe.yaml")
    cfg, plan = scenario.training.model, scenario.training.plan
    assert (cfg.name, cfg.moe.experts, cfg.moe.top_k, plan.ep, plan.world) == ("mixtral-8x7b", 8, 2, 8, 64)
    assert max(m.total_bytes for m in scenario.training.memory) < 80e9


# ---------------------------------------------------------------- the all-to-all under alpha-beta

B, ALPHA, N = 100e9, 2e-6, 256e6
LINKS = {"bandwidth_bytes_per_s": B, "latency_s": ALPHA}


@pytest.mark.parametrize("p", [4, 8, 16])
def test_pairwise_alltoall_on_a_switch(p):
    """p - 1 steps; in each every rank sends n/p to one peer through the switch
    (two links, no link shared): (p - 1)(2 alpha + n / (p B))."""
    result = simulate_collective(from_name(f"switch:{p}", LINKS), "alltoall", "ring", N)
    assert result.time_s == pytest.approx((p - 1) * (2 * ALPHA + N / (p * B)), rel=1e-9)


def _tree_step_time(p: int, arity: int, shift: int) -> float:
    """One pairwise step on a tree of ``arity``: each flow i -> i + shift climbs to
    the common ancestor; a link into a subtree carries every flow leaving it; a
    flow moves at B / (most flows on a link of its path) (max-min sharing)."""
    def climb(i, j):
        level, x, y = 0, i, j
        while x != y:
            x, y, level = x // arity, y // arity, level + 1
        return level

    load: dict[tuple[int, int], int] = {}
    flows = [(i, (i + shift) % p) for i in range(p)]
    for i, j in flows:
        for level in range(climb(i, j)):
            load[(level, i // arity**level)] = load.get((level, i // arity**level), 0) + 1
    worst = 0.0
    for i, j in flows:
        top = climb(i, j)
        shared = max(load[(level, i // arity**level)] for level in range(top))
        worst = max(worst, 2 * top * ALPHA + shared * N / (p * B))
    return worst


@pytest.mark.parametrize("p,arity", [(16, 4), (9, 3), (8, 2)])
def test_pairwise_alltoall_on_a_tree(p, arity):
    """An oversubscribed tree: each step costs its most shared path."""
    cluster = from_name(f"tree:{p}", {**LINKS, "arity": arity})
    result = simulate_collective(cluster, "alltoall", "ring", N)
    assert result.time_s == pytest.approx(sum(_tree_step_time(p, arity, s) for s in range(1, p)), rel=1e-9)


def test_pairwise_alltoall_on_a_fat_tree():
    """A non-blocking leaf/spine fat tree (two leaves, two spines, one GPU per
    node): no link is shared, every flow crosses 6 links (GPU, NIC, leaf, spine,
    leaf, NIC, GPU): (p - 1)(6 alpha + n / (p B))."""
    options = {"nvlink_bandwidth": B, "nvlink_latency": ALPHA, "nic_bandwidth": B, "nic_latency": ALPHA,
               "nvlink_efficiency": 1.0, "nic_efficiency": 1.0, "nics_per_leaf": 2}
    result = simulate_collective(from_name("cluster:4x1", options), "alltoall", "ring", N)
    assert result.time_s == pytest.approx(3 * (6 * ALPHA + N / (4 * B)), rel=1e-9)
