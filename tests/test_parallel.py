"""Parallel training replay: closed forms for pipeline bubbles and FLOPs, schedules,
memory, folded vs full fidelity, and plan validation."""

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

import sim
from sim.errors import ScenarioError
from sim.parallel.memory import stage_memory
from sim.parallel.metrics import training_flops
from sim.parallel.plan import ParallelPlan
from sim.parallel.schedules import max_in_flight, stage_order
from sim.workload.transformer import ModelConfig

from conftest import ROOT


def pipeline(pp, m, schedule, v=1):
    return sim.run(ROOT / "scenarios" / "pipeline_ideal.yaml",
                   [f"parallel.pp={pp}", f"parallel.microbatches={m}", f"parallel.schedule={schedule}",
                    f"parallel.virtual_stages={v}"]).summary


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize("pp,m", [(2, 4), (4, 8), (4, 3), (8, 16)])
def test_bubble_fraction_gpipe_and_1f1b(schedule, pp, m):
    summary = pipeline(pp, m, schedule)
    expected = (pp - 1) / (m + pp - 1)
    for fraction in summary["bubble_fraction_per_stage"]:
        assert fraction == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("pp,m,v", [(4, 8, 2), (4, 4, 4), (8, 16, 2), (2, 6, 2)])
def test_bubble_fraction_interleaved(pp, m, v):
    summary = pipeline(pp, m, "interleaved", v)
    expected = (pp - 1) / (v * m + pp - 1)
    for fraction in summary["bubble_fraction_per_stage"]:
        assert fraction == pytest.approx(expected, abs=1e-9)


def test_pipeline_ideal_from_the_command_line(tmp_path):
    out = tmp_path / "pipe"
    proc = subprocess.run([sys.executable, "-m", "sim", "run", "scenarios/pipeline_ideal.yaml", "--out", out,
                           "--set", "parallel.pp=8", "--set", "parallel.microbatches=16",
                           "--set", "parallel.schedule=interleaved", "--set", "parallel.virtual_stages=2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bubble_fraction"] == pytest.approx(7 / (2 * 16 + 7), abs=1e-9)
    import pyarrow.ipc as ipc
    with open(out / "bubbles.arrow", "rb") as fh:
        bubbles = ipc.open_file(fh).read_all()
    causes = set(bubbles["cause"].to_pylist())
    assert {"pipeline_fill", "pipeline_drain"} <= causes
    fills = [r for r in bubbles.to_pylist() if r["cause"] == "pipeline_fill"]
    assert all(r["stage"] is not None and r["microbatch"] is not None for r in fills)


def test_megatron_flops_formula():
    """Narayanan et al. SC'21 Eq. 3 with full recomputation, for the shipped GPT-3 shapes, with
    materialized attention; causal flash attention counts the core at 0.5 + 1 (model) and
    0.5 + 1.25 + 0.5 replayed (hardware) of its full forward 4 B s^2 h l instead of 3 and 4."""
    cfg = ModelConfig("gpt3", layers=96, hidden=12288, heads=96, seq_len=2048, vocab=51200, attention="materialized")
    B, s, l, h, V = 1536, 2048, 96, 12288, 51200
    hardware_eq3 = 96 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h))
    model_eq = 72 * B * s * l * h * h * (1 + s / (6 * h) + V / (12 * l * h))
    _, hardware = training_flops(cfg, B, "full")
    assert hardware == pytest.approx(hardware_eq3, rel=1e-12)
    model, _ = training_flops(cfg, B, "none")
    assert model == pytest.approx(model_eq, rel=1e-12)
    flash = ModelConfig("gpt3", layers=96, hidden=12288, heads=96, seq_len=2048, vocab=51200, attention="flash")
    core = 4 * B * s * s * h * l
    assert training_flops(flash, B, "full")[1] == pytest.approx(hardware_eq3 - (4 - 2.25) * core, rel=1e-12)
    assert training_flops(flash, B, "none")[0] == pytest.approx(model_eq - (3 - 1.5) * core, rel=1e-12)


@pytest.mark.parametrize("fidelity", ["folded", "full"])
@pytest.mark.parametrize("attention", ["materialized", "flash"])
def test_generated_trace_carries_megatron_flops(fidelity, attention):
    """The ops the expansion emits add up to Eq. 3 (folded: each op stands for dp x tp ranks)
    with materialized attention. With causal flash attention the attention core does half the
    work of each pass and its backward 2.5x its forward (Dao 2023): per layer and sequence
    0.5 + 0.5 (recomputed) + 1.25 units of 4 s^2 h instead of Eq. 3's 1 + 1 + 2."""
    raw = {"cluster": "ideal", "device": "a100_sxm4_80gb",
           "model": {"layers": 8, "hidden": 1024, "heads": 16, "seq_len": 512, "vocab": 8192,
                     "attention": attention},
           "parallel": {"dp": 2, "tp": 2, "pp": 2, "microbatches": 4, "recompute": "full"},
           "training": {"fidelity": fidelity}}
    scenario = sim.load_scenario_dict(raw)
    expansion = scenario.training.expansion
    copies = 4 if fidelity == "folded" else 1
    B, s, l, h, V = 2 * 4, 512, 8, 1024, 8192
    expected = 96 * B * s * l * h * h * (1 + s / (6 * h) + V / (16 * l * h))
    if attention == "flash":
        expected -= (4 - 2.25) * 4 * B * s * s * h * l
    assert expansion.hardware_flops * copies == pytest.approx(expected, rel=1e-9)


def test_folded_and_full_agree_on_64_gpus():
    raw = {"cluster": "cluster:8x8", "device": "a100_sxm4_80gb",
           "model": {"layers": 16, "hidden": 2048, "heads": 16, "seq_len": 1024, "vocab": 32000},
           "parallel": {"dp": 2, "tp": 4, "pp": 8, "microbatches": 8, "schedule": "1f1b"}}
    folded = sim.run({**raw, "training": {"fidelity": "folded"}}).summary
    full = sim.run({**raw, "training": {"fidelity": "full"}}).summary
    assert full["devices"] == 64 and folded["devices"] == 8
    assert folded["iteration_time_s"] == pytest.approx(full["iteration_time_s"], rel=0.01)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(1, 24), st.sampled_from(["gpipe", "1f1b", "interleaved"]),
       st.integers(1, 4))
def test_schedules_run_every_unit_once_forward_first(pp, m, schedule, v):
    if schedule != "interleaved":
        v = 1
    elif m % pp:
        m = pp * max(1, m // pp)
    for stage in range(pp):
        order = stage_order(schedule, stage, pp, m, v)
        forwards = [(mb, c) for kind, mb, c in order if kind == "F"]
        backwards = [(mb, c) for kind, mb, c in order if kind == "B"]
        everything = {(mb, c) for mb in range(m) for c in range(v)}
        assert sorted(forwards) == sorted(everything) and sorted(backwards) == sorted(everything)
        for unit in everything:
            assert order.index(("F", *unit)) < order.index(("B", *unit))
        if schedule == "1f1b":
            assert max_in_flight(order) == min(pp - stage, m)
        if schedule == "gpipe":
            assert max_in_flight(order) == m


def test_memory_breakdown_and_ledger_agree():
    raw = {"cluster": "ideal", "device": "a100_sxm4_80gb",
           "model": {"layers": 8, "hidden": 1024, "heads": 16, "seq_len": 512, "vocab": 8192},
           "parallel": {"dp": 1, "tp": 1, "pp": 4, "microbatches": 8, "schedule": "1f1b"}}
    result = sim.run(raw)
    stages = result.summary["memory_per_gpu"]["stages"]
    assert [s["in_flight_microbatches"] for s in stages] == [4, 3, 2, 1]
    for stage in stages:
        device = f"dev{stage['stage']}"
        assert result.summary["peak_memory_bytes"][device]["hbm"] == pytest.approx(stage["total_bytes"], rel=1e-6)
    gpipe = sim.run({**raw, "parallel": {**raw["parallel"], "schedule": "gpipe"}})
    assert all(s["in_flight_microbatches"] == 8 for s in gpipe.summary["memory_per_gpu"]["stages"])


def test_zero1_divides_optimizer_state():
    cfg = ModelConfig("m", layers=8, hidden=1024, heads=16, seq_len=512, vocab=0)
    plain = stage_memory(cfg, ParallelPlan(dp=4, pp=2, microbatches=4), 1)
    zero = stage_memory(cfg, ParallelPlan(dp=4, pp=2, microbatches=4, zero=1), 1)
    assert zero.optimizer_bytes == pytest.approx(plain.optimizer_bytes / 4)
    assert plain.optimizer_bytes == pytest.approx(12 * plain.weights_bytes / 2)


@pytest.mark.parametrize("parallel,message", [
    ({"dp": 3, "tp": 1, "pp": 1}, "does not match the cluster's 4 devices"),
    ({"dp": 1, "tp": 1, "pp": 4, "virtual_stages": 3, "schedule": "interleaved", "microbatches": 4},
     "do not divide into pp x virtual_stages"),
    ({"dp": 1, "tp": 1, "pp": 4, "virtual_stages": 2, "schedule": "interleaved", "microbatches": 6},
     "needs a multiple of pp = 4 microbatches"),
    ({"dp": 4, "global_batch": 6}, "not a multiple of dp x microbatch_size"),
    ({"dp": 1, "pp": 4, "schedule": "zigzag"}, "schedule: expected one of"),
])
def test_plan_errors(parallel, message):
    raw = {"cluster": "ideal:4", "device": "a100_sxm4_80gb",
           "model": {"layers": 8, "hidden": 1024, "heads": 16, "seq_len": 512}, "parallel": parallel}
    with pytest.raises(ScenarioError, match=message):
        sim.load_scenario_dict(raw)


def test_out_of_memory_names_stage_breakdown_and_capacity(tmp_path):
    raw = {"cluster": "ideal:2", "device": "a100_sxm4_80gb",
           "model": {"layers": 8, "hidden": 16384, "heads": 128, "seq_len": 2048, "vocab": 51200},
           "parallel": {"pp": 2, "microbatches": 4}}
    with pytest.raises(ScenarioError) as info:
        sim.load_scenario_dict(raw)
    text = str(info.value)
    for word in ("stage 0", "weights", "gradients", "optimizer state", "activations", "HBM", "continue_on_oom"):
        assert word.lower() in text.lower()
    result = sim.run({**raw, "training": {"continue_on_oom": True}})
    assert result.summary["memory_per_gpu"]["peak_bytes"] > 80e9
    scenario = tmp_path / "oom.yaml"
    import yaml
    scenario.write_text(yaml.safe_dump(raw))
    proc = subprocess.run([sys.executable, "-m", "sim", "run", scenario, "--out", tmp_path / "o"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "stage 0" in proc.stderr and not (tmp_path / "o").exists()


def test_exposed_comm_split_and_tp_collectives_per_layer():
    raw = {"cluster": "cluster:1x8", "device": "a100_sxm4_80gb",
           "model": {"layers": 4, "hidden": 2048, "heads": 16, "seq_len": 1024, "vocab": 0},
           "parallel": {"dp": 2, "tp": 4, "pp": 1, "microbatches": 2, "recompute": "full"}}
    scenario = sim.load_scenario_dict(raw)
    tp_ops = [op for op in scenario.trace.ops if op.phase == "tp"]
    # per layer and microbatch: 2 forward + 2 recompute + 2 backward all-reduces
    assert len(tp_ops) == 4 * 2 * 6
    summary = sim.run(scenario).summary
    assert set(summary["exposed_comm_s"]) == {"tp", "pp", "dp", "embedding_sync"}
    assert summary["exposed_comm_s"]["tp"] > 0 and summary["exposed_comm_s"]["pp"] == 0
    assert 0 < summary["mfu"] < summary["hfu"] < 1


def test_generated_iteration_replays_from_its_trace_file(tmp_path):
    """Generated models and trace files share one path through the simulator."""
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "sim", "run", "scenarios/quickstart.yaml", "--out", out,
                           "--write-trace", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    replay = sim.run({"cluster": "a100_2node", "trace": str(out / "trace.arrow")}, [])
    assert replay.summary["makespan_s"] == pytest.approx(summary["iteration_time_s"], rel=1e-12)
    assert replay.summary["ops"] == summary["ops"]
    # what differs, as docs/architecture.md says: no training metrics, end bubbles named otherwise
    assert "hfu" not in replay.summary and "exposed_comm_s" not in replay.summary
    causes = replay.summary["bubble_s_by_cause"]
    assert "pipeline_fill" in summary["bubble_s_by_cause"] and "pipeline_fill" not in causes
    assert causes["no_work"] == pytest.approx(summary["bubble_s_by_cause"]["pipeline_drain"])
    assert sum(causes.values()) == pytest.approx(sum(summary["bubble_s_by_cause"].values()), rel=1e-9)


def test_optimizer_step_is_adam_traffic_over_hbm_bandwidth():
    """Mixed-precision Adam reads a bf16 gradient and fp32 master weight, momentum and
    variance and writes the last three and the bf16 weight: 28 bytes per parameter,
    memory-bound: duration = launch overhead + 28 x params / achievable HBM bandwidth
    (params / dp with ZeRO-1)."""
    from sim.hardware.specs import load_device_spec
    from sim.parallel.memory import stage_params
    spec = load_device_spec("a100_sxm4_80gb")
    for zero in (0, 1):
        scenario = sim.load_scenario_dict({
            "cluster": "ideal", "device": "a100_sxm4_80gb",
            "model": {"layers": 8, "hidden": 1024, "heads": 16, "seq_len": 512, "vocab": 8192},
            "parallel": {"dp": 2, "pp": 2, "microbatches": 2, "zero": zero}})
        plan, cfg = scenario.training.plan, scenario.training.model
        bandwidth = spec.tier("hbm").bandwidth_bytes_per_s * spec.tier("hbm").efficiency
        for op in (o for o in scenario.trace.ops if o.phase == "optimizer"):
            params = stage_params(cfg, plan, op.stage) / (plan.dp if zero else 1)
            assert op.duration_s == pytest.approx(spec.sm_array.launch_overhead_s + 28 * params / bandwidth,
                                                  rel=1e-12)


def test_fused_segment_time_is_the_sum_of_its_ops_alone():
    """A layer segment's duration is the sum of the isolated times of the kernels it fuses
    (the same kernels as trace ops bound to the device give the same number)."""
    from sim.engine.device import bind_op, isolated_seconds
    from sim.hardware.specs import load_device_spec
    from sim.parallel.expand import layer_segments
    from sim.parallel.plan import ParallelPlan
    from sim.workload.transformer import OpBuilder
    spec = load_device_spec("a100_sxm4_80gb")
    cfg = ModelConfig("m", layers=4, hidden=2048, heads=16, seq_len=1024, vocab=0)
    plan = ParallelPlan(tp=2, microbatches=1, microbatch_size=2)
    seg = layer_segments(cfg, plan, spec)["bwd.mlp.wgrad"]
    g = OpBuilder("bf16")
    g.gemm("fc2_wgrad", cfg.ffn // 2, cfg.hidden, 2 * 1024, shared_b=True)
    g.gemm("fc1_wgrad", cfg.hidden, cfg.ffn // 2, 2 * 1024, shared_b=True)
    expected = sum(isolated_seconds(bind_op(op, spec, "t"), spec) for op in g.ops)
    assert seg.duration_s == pytest.approx(expected, rel=1e-12)
    assert seg.matrix_flops == pytest.approx(2 * 2 * 2 * 1024 * cfg.hidden * cfg.ffn // 2, rel=1e-12)


def test_embedding_sync_is_its_own_kind_and_dp_1_reports_no_dp_time():
    """The tied embedding's gradient all-reduce between the first and last stage is
    'embedding_sync', not DP: a dp = 1 plan has no DP time."""
    raw = {"cluster": "cluster:1x4", "device": "a100_sxm4_80gb",
           "model": {"layers": 4, "hidden": 1024, "heads": 16, "seq_len": 512, "vocab": 32000},
           "parallel": {"dp": 1, "tp": 2, "pp": 2, "microbatches": 2}}
    summary = sim.run(raw).summary
    assert summary["exposed_comm_s"]["dp"] == 0.0
    assert summary["exposed_comm_s"]["embedding_sync"] > 0
    with_dp = sim.run(raw, {"parallel.dp": 2, "parallel.tp": 1}).summary
    assert with_dp["exposed_comm_s"]["dp"] > 0
    assert with_dp["bubble_aggregation"]["bubble_s_by_cause_per_device"].endswith("/ 2 simulated devices")
    per_device = with_dp["bubble_s_by_cause_per_device"]
    assert per_device == pytest.approx({k: v / 2 for k, v in with_dp["bubble_s_by_cause"].items()})
