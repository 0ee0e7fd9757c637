"""The plan search (sim.parallel.search / planner, ``accsim plan``) and the dry run
(sim.parallel.fit, ``accsim run --dry-run``)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from dataclasses import asdict

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import ROOT
from sim.errors import AccsimError, ScenarioError
from sim.parallel.fit import load_training, plan_fit
from sim.parallel.memory import stage_memory
from sim.parallel.plan import plan_from_dict
from sim.parallel.planner import CANDIDATE_SCHEMA, judge
from sim.reports.writer import decode_dictionaries
from sim.parallel.search import (Candidate, SearchSpace, divisors, enumerate_candidates, resolved_space,
                                 space_size)
from sim.workload.moe import MoEConfig
from sim.workload.transformer import ModelConfig


def accsim(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sim", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=900)


def plan_of(model, world, batch, c: Candidate):
    return plan_from_dict(c.parallel(batch), model, world)


@st.composite
def models(draw):
    heads = draw(st.sampled_from([1, 2, 4, 6, 8, 12, 16]))
    kv = draw(st.sampled_from([h for h in (1, 2, 4, heads) if heads % h == 0]))
    moe = None
    if draw(st.booleans()):
        experts = draw(st.sampled_from([2, 4, 6, 8]))
        moe = MoEConfig(experts=experts, top_k=min(2, experts))
    return ModelConfig(name="m", layers=draw(st.sampled_from([1, 2, 3, 4, 6, 8, 12])), hidden=heads * 16,
                       heads=heads, kv_heads=kv, seq_len=draw(st.sampled_from([128, 256, 384, 8192, 16384])),
                       vocab=draw(st.sampled_from([0, 1000])), ffn_hidden=draw(st.sampled_from([None, 96, 192])),
                       attention=draw(st.sampled_from(["flash", "standard"])), moe=moe)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=models(), world=st.sampled_from([1, 2, 4, 6, 8, 12, 16, 24]),
       batch=st.sampled_from([1, 2, 8, 12, 16, 32, 48]),
       schedule=st.sampled_from(["1f1b", "gpipe", "interleaved", "zb-h1"]))
def test_every_candidate_divides_and_validates(model, world, batch, schedule):
    """Each enumerated plan divides the world and the global batch, and the
    plan rules (the same as a run's) accept it."""
    seen = set()
    for c in enumerate_candidates(model, world, batch, schedule=schedule):
        assert c.dp * c.tp * c.pp * c.cp == world
        assert batch % (c.dp * c.microbatch_size) == 0
        assert c.microbatches == batch // (c.dp * c.microbatch_size)
        assert model.layers % (c.pp * c.virtual_stages) == 0
        assert c.sequence_parallel is False or c.tp > 1
        assert c.ep == 1 or model.moe.experts % c.ep == 0
        plan = plan_of(model, world, batch, c)           # raises if the rules refuse it
        assert (plan.world, plan.global_batch) == (world, batch)
        assert c not in seen
        seen.add(c)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=models(), world=st.sampled_from([1, 2, 4, 6, 8]), batch=st.sampled_from([2, 4, 6, 8]))
def test_enumeration_is_complete_in_its_space(model, world, batch):
    """Brute force over the (resolved) space: every combination the plan rules
    accept is enumerated, and nothing else."""
    space = resolved_space(model, world, SearchSpace(microbatch_size=(1, 2), virtual_stages=(1, 2),
                                                     zero=(0, 3), recompute=("none", "full")))
    found = set(enumerate_candidates(model, world, batch, space))
    expected = set()
    for tp, pp, cp, ep, v, mbs, zero, rc, sp in itertools.product(*asdict(space).values()):
        if world % (tp * pp * cp):
            continue
        raw = {"dp": world // (tp * pp * cp), "tp": tp, "pp": pp, "cp": cp, "ep": ep, "virtual_stages": v,
               "microbatch_size": mbs, "zero": zero, "recompute": rc, "sequence_parallel": sp,
               "schedule": "interleaved" if v > 1 else "1f1b", "global_batch": batch}
        if (sp and tp == 1) or (v > 1 and pp == 1):
            continue                      # no-ops (no TP group; one stage to interleave) not enumerated twice
        try:
            plan_from_dict(raw, model, world)
        except ScenarioError:
            continue
        del raw["global_batch"]
        expected.add(Candidate(microbatches=batch // (raw["dp"] * mbs), **raw))
    assert found == expected


def test_space_bound_is_checked_before_enumerating():
    model = ModelConfig(name="m", layers=4, hidden=64, heads=4, seq_len=128, vocab=0)
    big = SearchSpace(microbatch_size=tuple(range(1, 2001)), virtual_stages=tuple(range(1, 2001)))
    assert space_size(resolved_space(model, 8, big)) > 2_000_000
    with pytest.raises(ValueError, match="combinations"):
        next(enumerate_candidates(model, 8, 16, big))
    assert divisors(12) == [1, 2, 3, 4, 6, 12]


QUICK = ROOT / "scenarios" / "quickstart.yaml"


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(capacity_gib=st.floats(min_value=2.0, max_value=12.0))
def test_rejected_plans_really_exceed_capacity(capacity_gib):
    """A plan the dry run rejects for memory has a stage over the device's
    capacity; one it keeps has none (stage by stage, per the memory model)."""
    capacity = int(capacity_gib * 2**30)
    setup = load_training(QUICK, [f"device_overrides.memory.hbm.capacity_bytes={capacity}"])
    space = SearchSpace(tp=(2, 4), microbatch_size=(1, 4), virtual_stages=(1,), recompute=("none", "full"))
    judged = judge(setup, space)
    assert judged
    for j in judged:
        if j.status == "invalid":
            continue
        plan = plan_from_dict({**setup.raw["parallel"], **j.candidate.parallel(32)}, setup.model, 16)
        peaks = [stage_memory(setup.model, plan, s).total_bytes for s in range(plan.pp)]
        assert j.peak_bytes == max(peaks)
        assert (j.status == "oom") == (max(peaks) > capacity), j


def test_dry_run_verdict_matches_a_run(tmp_path):
    """The dry run and accsim run agree on whether a plan fits."""
    import sim
    sets = ["device_overrides.memory.hbm.capacity_bytes=5GiB", "parallel.pp=1", "parallel.dp=4"]
    for zero, fits in ((0, False), (1, True)):
        overrides = sets + [f"parallel.zero={zero}", "parallel.microbatch_size=1"]
        setup = load_training(QUICK, overrides)
        assert plan_fit(setup.model, setup.plan, setup.spec_of_rank).fits is fits
        if fits:
            sim.load_scenario(QUICK, overrides)
        else:
            with pytest.raises(AccsimError, match="does not fit"):
                sim.load_scenario(QUICK, overrides)


# ---------------------------------------------------------------- accsim run --dry-run


def test_dry_run_prints_memory_per_stage_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    proc = accsim("run", "scenarios/plan_gpt_13b_64_a100.yaml", "--dry-run", "--out", out)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("dry run    plan_gpt_13b_64_a100: gpt-13b on 64 x A100-SXM4-80GB (tp 8, pp 2, dp 4")
    assert "weights" in lines[2] and "capacity" in lines[2]
    assert [line.split()[0] for line in lines[3:5]] == ["0", "1"] and lines[3].endswith("yes")
    assert lines[-1].startswith("the plan fits: peak 7.0 GiB per GPU (stage 0)")
    assert not out.exists()
    proc = accsim("run", "plan_gpt_13b_64_a100", "--dry-run", "--json")
    data = json.loads(proc.stdout)
    assert proc.returncode == 0 and data["fits"] is True and len(data["stages"]) == 2
    assert data["stages"][0]["total_bytes"] == data["peak_bytes"] <= data["stages"][0]["capacity_bytes"]


def test_dry_run_of_a_plan_that_does_not_fit(tmp_path):
    proc = accsim("run", "scenarios/llama2_70b_64_h100.yaml", "--dry-run", "--set", "parallel.zero=0",
                  "--set", "parallel.tp=2", "--set", "parallel.dp=8", "--out", tmp_path / "x")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "the plan does not fit in memory: stage 0 needs" in proc.stderr
    assert "the plan does NOT fit" in proc.stdout and " NO" in proc.stdout
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("args, message", [
    (["scenarios/quickstart.yaml", "--dry-run", "--set", "parallel.tp=3"], "does not match the cluster"),
    (["scenarios/npu_scratchpad.yaml", "--dry-run"], "not a training scenario"),
    (["scenarios/quickstart.yaml", "--json", "--out", "x"], "--json: only with --dry-run"),
    (["scenarios/quickstart.yaml"], "--out DIR is required"),
])
def test_dry_run_errors(args, message):
    proc = accsim("run", *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


# ---------------------------------------------------------------- accsim plan


def test_plan_end_to_end(tmp_path):
    """Four plans: one rejected for memory, three simulated and ranked by tokens/s."""
    out = tmp_path / "plan"
    proc = accsim("plan", "quickstart", "--out", out, "--workers", "1", "--tp", "4", "--pp", "1,2",
                  "--microbatch-size", "1,2", "--virtual-stages", "1", "--zero", "1", "--recompute", "selective",
                  "--sequence-parallel", "false", "--set", "device_overrides.memory.hbm.capacity_bytes=5GiB",
                  "--top", "2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("plan       quickstart: gpt3-1.3b on 16 x A100-SXM4-80GB, global batch 32; "
                               "4 plans, 1 rejected, 3 simulated (3 ok)")
    assert lines[1] == "ranked by tokens/s (objective throughput); top 2:"
    assert lines[2].split()[:4] == ["rank", "dp", "tp", "pp"]
    assert [line.split()[0] for line in lines[3:5]] == ["1", "2"] and lines[5].startswith("wrote ")
    table = decode_dictionaries(pq.read_table(out / "candidates.parquet"))  # strings are dictionary-encoded
    assert table.schema.remove_metadata() == CANDIDATE_SCHEMA
    rows = table.to_pylist()
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "oom"]
    assert [r["rank"] for r in rows] == [1, 2, 3, None]
    speeds = [r["tokens_per_s"] for r in rows[:3]]
    assert speeds == sorted(speeds, reverse=True) and all(s > 0 for s in speeds)
    oom = rows[3]
    assert (oom["pp"], oom["microbatch_size"]) == (1, 2) and "does not fit" in oom["reason"]
    assert oom["estimated_peak_bytes"] > oom["capacity_bytes"] == 5 * 2**30 and oom["tokens_per_s"] is None
    for r in rows[:3]:
        assert r["estimated_peak_bytes"] <= r["capacity_bytes"]
        assert r["peak_memory_per_gpu_bytes"] == pytest.approx(r["estimated_peak_bytes"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"enumerated": 4, "rejected": 1, "simulated": 3, "ok": 3, "oom": 1,
                                 "invalid": 0, "too_large": 0, "error": 0}
    assert summary["best"]["tokens_per_s"] == speeds[0]
    assert sorted(p.name for p in out.iterdir()) == ["candidates.parquet", "summary.json"]


@pytest.mark.parametrize("args, message", [
    (["quickstart", "--objective", "speed"], "--objective: expected one of throughput, memory"),
    (["scenarios/npu_scratchpad.yaml"], "not a training scenario"),
    (["quickstart", "--top", "0"], "--top: expected an integer from 1"),
    (["quickstart", "--tp", "4,x"], "--tp: expected positive integers"),
    (["quickstart", "--zero", "4"], "--zero: expected ZeRO stages 0 to 3"),
    (["quickstart", "--recompute", "some"], "--recompute: expected values among"),
    (["quickstart", "--max-candidates", "2"], "more than --max-candidates 2"),
    (["quickstart", "--tp", "3"], "no plan of the search space divides"),
    (["quickstart", "--workers", "0"], "--workers"),
])
def test_plan_errors_write_nothing(tmp_path, args, message):
    out = tmp_path / "plan"
    proc = accsim("plan", *args, "--out", out)
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("  ")]   # not progress
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert not out.exists() and proc.stdout == ""


def test_rank_orders_by_the_objective():
    """throughput: tokens/s, highest first; memory: simulated peak, lowest first
    (ties by tokens/s, then enumeration order); rejected and failed plans unranked."""
    from sim.parallel.planner import Judged, rank

    def cand(dp):
        return Candidate(dp=dp, tp=1, pp=1, cp=1, ep=1, virtual_stages=1, microbatch_size=1, microbatches=1,
                         schedule="1f1b", zero=0, recompute="none", sequence_parallel=False)

    def metrics(tokens, peak):
        return {"status": "ok", "error": None, "iteration_time_s": 1.0, "tokens_per_s": tokens,
                "model_flops_per_gpu_per_s": tokens, "mfu": 0.5, "hfu": 0.5, "bubble_fraction": 0.1,
                "peak_memory_per_gpu_bytes": peak}

    judged = [Judged(0, cand(1)), Judged(1, cand(2)), Judged(2, cand(4), "oom", "too big"),
              Judged(3, cand(8)), Judged(4, cand(16)), Judged(5, cand(32))]
    results = {0: metrics(100.0, 5.0), 1: metrics(300.0, 9.0), 3: metrics(200.0, 5.0),
               4: {"status": "error", "error": "timed out after 1 s"}, 5: metrics(300.0, 1.0)}
    by_speed = rank(judged, results, "throughput")
    assert [(r.judged.id, r.rank, r.status) for r in by_speed] == [
        (5, 1, "ok"), (1, 2, "ok"), (3, 3, "ok"), (0, 4, "ok"), (2, None, "oom"), (4, None, "error")]
    by_memory = rank(judged, results, "memory")
    assert [r.judged.id for r in by_memory if r.rank] == [5, 3, 0, 1]
    assert by_memory[-1].reason == "timed out after 1 s"
