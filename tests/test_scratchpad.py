"""The managed scratchpad: replacement policies, the COSMA ILP, the trace rewrite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.ipc as ipc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.memory.config import ScratchpadConfig
from sim.memory.ilp import plan_ilp
from sim.memory.manager import manage_scratchpad
from sim.memory.problem import ScratchpadError, problem_from_ops
from sim.memory.replacement import FILL, SPILL, plan_replacement, replay
from sim.workload.trace import Op, validate_ops

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "npu_scratchpad.yaml"


@st.composite
def graphs(draw, max_ops=12, equal_sizes=False):
    """Random DAGs of ops: each reads the outputs of up to 3 earlier ops and
    possibly an off-chip input; some outputs are named (live-out), some freed."""
    count = draw(st.integers(2, max_ops))
    ops, sizes = [], {}
    for i in range(count):
        deps = tuple(sorted(draw(st.sets(st.integers(0, i - 1), max_size=min(i, 3))))) if i else ()
        size = 1 if equal_sizes else draw(st.integers(1, 5))
        extra = 0 if equal_sizes else draw(st.sampled_from([0, 0, 1, 3]))
        named = draw(st.booleans()) and draw(st.booleans())
        sizes[i] = size
        ops.append(Op(id=i, name=f"op{i}", op="gemm", flops=1.0,
                      bytes_read=float(sum(sizes[d] for d in deps) + extra),
                      bytes_written=float(size), deps=deps, tensor=f"t{i}" if named else None))
    roomy = problem_from_ops(ops, 10**9)
    need = max(roomy.needed_bytes(i) for i in range(count))
    return ops, need + draw(st.integers(0, 6))


@st.composite
def read_only_traces(draw):
    """Classic paging: ops read equal-sized off-chip tensors shared between them."""
    from sim.memory.problem import Problem, Step, Tensor
    tensors = draw(st.integers(2, 8))
    steps = draw(st.lists(st.sets(st.integers(0, tensors - 1), min_size=1, max_size=3), min_size=1, max_size=30))
    widest = max(len(s) for s in steps)
    capacity = widest + draw(st.integers(0, 3))
    return Problem(capacity, tuple(Step(i, f"op{i}", tuple(f"x{t}" for t in sorted(s)), None)
                                   for i, s in enumerate(steps)),
                   {f"x{t}": Tensor(f"x{t}", 1, None) for t in range(tensors)},
                   tuple(() for _ in steps))


@settings(max_examples=300, deadline=None)
@given(read_only_traces())
def test_belady_never_moves_more_than_lru(problem):
    """Belady's MIN is optimal for equal-sized items in a fixed order, so over
    random read-only traces it never moves more bytes than LRU."""
    lru = replay(problem, plan_replacement(problem, "lru"))
    belady = replay(problem, plan_replacement(problem, "belady"))
    assert belady.total_bytes <= lru.total_bytes
    assert belady.spill_bytes == lru.spill_bytes == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(max_ops=16, equal_sizes=True))
def test_belady_never_fills_more_than_lru(case):
    """With tensors produced on chip the same holds for fills (the misses MIN
    minimises); write-backs of evicted live tensors are not what MIN
    optimises (the ILP is the optimum for fills plus spills)."""
    ops, capacity = case
    problem = problem_from_ops(ops, capacity)
    lru = replay(problem, plan_replacement(problem, "lru"))
    belady = replay(problem, plan_replacement(problem, "belady"))
    assert belady.fill_bytes <= lru.fill_bytes
    assert belady.compulsory_bytes == lru.compulsory_bytes == problem.compulsory_bytes()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs(max_ops=9))
def test_ilp_never_moves_more_than_belady(case):
    """On the same op order the ILP is the optimum, so it never moves more
    than Belady (any tensor sizes); letting it choose the order too
    (COSMA's combined problem) never moves more than the fixed order."""
    ops, capacity = case
    problem = problem_from_ops(ops, capacity)
    belady = replay(problem, plan_replacement(problem, "belady"))
    fixed = replay(problem, plan_ilp(problem, 16, False, reorder=False))
    free = replay(problem, plan_ilp(problem, 16, False, reorder=True))
    assert free.total_bytes <= fixed.total_bytes <= belady.total_bytes
    windows = replay(problem, plan_ilp(problem, 3, True, reorder=True))
    assert windows.total_bytes >= free.total_bytes


def test_the_ilp_solves_a_graph_highs_presolve_calls_infeasible():
    """HiGHS 1.16's MIP presolve declared this feasible 7-op window infeasible
    (hypothesis found it); the solver is asked again without presolve."""
    ops = [Op(i, f"op{i}", "gemm", 1.0, 0.0, 1.0) for i in range(3)]
    ops += [Op(3, "op3", "gemm", 1.0, 2.0, 1.0, deps=(0, 1))]
    ops += [Op(i, f"op{i}", "gemm", 1.0, 1.0, 1.0, deps=(0,)) for i in (4, 5, 6)]
    problem = problem_from_ops(ops, 10**9)
    plan = plan_ilp(problem, 16, False)
    assert sorted(plan.order) == list(range(7))
    assert replay(problem, plan).non_compulsory_bytes == 0


@settings(max_examples=150, deadline=None)
@given(graphs(max_ops=14))
def test_a_trace_that_fits_moves_only_compulsory_bytes(case):
    ops, _ = case
    problem = problem_from_ops(ops, 10**9)
    for policy in ("lru", "belady"):
        traffic = replay(problem, plan_replacement(problem, policy))
        assert traffic.non_compulsory_bytes == 0
        assert traffic.total_bytes == problem.compulsory_bytes()
    assert replay(problem, plan_ilp(problem, 16, False)).non_compulsory_bytes == 0


@settings(max_examples=150, deadline=None)
@given(graphs(max_ops=14), st.sampled_from(["lru", "belady"]), st.sampled_from(["capacity", "address"]))
def test_spill_and_fill_bytes_are_conserved(case, policy, allocation):
    """Every produced tensor filled back was spilled first, at most once
    (tensors are immutable); every live-out tensor reaches the lower tier."""
    ops, capacity = case
    problem = problem_from_ops(ops, capacity)
    try:
        plan = plan_replacement(problem, policy, allocation=allocation)
    except ScratchpadError:
        assert allocation == "address"          # operands that fit only non-contiguously
        return
    traffic = replay(problem, plan)
    spilled: dict[str, int] = {}
    for action in plan.actions():
        if action.kind == SPILL:
            spilled[action.tensor] = spilled.get(action.tensor, 0) + 1
        if action.kind == FILL and not problem.tensors[action.tensor].external:
            assert spilled.get(action.tensor) == 1
    assert all(count == 1 for count in spilled.values())
    assert traffic.spill_bytes == sum(problem.size(n) for n in spilled)
    live_out = {n for n, t in problem.tensors.items() if t.live_out}
    assert live_out <= set(spilled)


def test_reordering_avoids_a_spill():
    """Two producers of 4 bytes each and their consumers, 9 bytes of scratchpad:
    in trace order (A, B, C, D) A's output must be spilled while B runs; the
    ILP runs A, C, B, D and moves nothing but the final outputs."""
    ops = [Op(0, "A", "gemm", 1.0, 0.0, 4.0), Op(1, "B", "gemm", 1.0, 0.0, 4.0),
           Op(2, "C", "gemm", 1.0, 4.0, 1.0, deps=(0,)), Op(3, "D", "gemm", 1.0, 4.0, 1.0, deps=(1,))]
    problem = problem_from_ops(ops, 8)
    fixed = replay(problem, plan_ilp(problem, 8, False, reorder=False))
    free_plan = plan_ilp(problem, 8, False, reorder=True)
    free = replay(problem, free_plan)
    assert fixed.non_compulsory_bytes == 8          # spill A's output, fill it back
    assert free.non_compulsory_bytes == 0
    assert free_plan.order.index(2) < free_plan.order.index(1)
    assert free.total_bytes == problem.compulsory_bytes() == 2


def test_address_allocation_reports_fragmentation():
    """Tensors of 2, 1, 2 bytes in 5: dropping the 1 leaves holes of 1 and ... a
    3-byte output then fits by capacity but not contiguously."""
    ops = [Op(0, "a", "gemm", 1.0, 0.0, 2.0), Op(1, "b", "gemm", 1.0, 0.0, 1.0),
           Op(2, "c", "gemm", 1.0, 0.0, 2.0), Op(3, "use_b", "gemm", 1.0, 1.0, 1.0, deps=(1,)),
           Op(4, "d", "gemm", 1.0, 0.0, 2.0), Op(5, "use_ac", "gemm", 1.0, 4.0, 1.0, deps=(0, 2))]
    problem = problem_from_ops(ops, 6)
    by_capacity = replay(problem, plan_replacement(problem, "belady"))
    plan = plan_replacement(problem, "belady", allocation="address")
    by_address = replay(problem, plan)
    assert by_capacity.non_compulsory_bytes == 0
    assert plan.fragmentation_evicted_bytes > 0 and 0 < plan.peak_fragmentation <= 1
    assert by_address.total_bytes > by_capacity.total_bytes


def _managed(policy="belady", **extra):
    from sim.hardware.specs import load_device_spec
    from sim.workload.trace import load_trace
    trace = load_trace(ROOT / "traces" / "npu_layer_fwd_bwd.jsonl")
    spec = load_device_spec("npu_pim")
    return manage_scratchpad(trace, lambda rank: spec, {"policy": policy, **extra}, "")


def test_rewritten_trace_carries_the_plans_bytes():
    trace, plan = _managed()
    device = plan.devices[0]
    fills = [op for op in trace.ops if op.op == "copy" and op.dst_tier == "scratchpad"]
    spills = [op for op in trace.ops if op.op == "copy" and op.src_tier == "scratchpad" and op.bytes_read]
    assert sum(op.bytes_read for op in fills) == device.traffic.fill_bytes
    assert sum(op.bytes_read for op in spills) == device.traffic.spill_bytes
    assert device.traffic.non_compulsory_bytes > 0        # 32 MiB is too small for two layers
    compute = [op for op in trace.ops if op.op != "copy"]
    assert all(op.tier == "scratchpad" for op in compute)


def _run(*args, out=None):
    cmd = [sys.executable, "-m", "sim", "run", str(SCENARIO), "--quiet", *args]
    if out is not None:
        cmd += ["--out", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)


def test_scenario_runs_and_the_hbm_carries_exactly_the_planned_bytes(tmp_path):
    result = _run("--set", "memory.scratchpad.compare=[lru]", out=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    device = summary["scratchpad"]["devices"][0]
    assert device["offchip_bytes"] == device["fill_bytes"] + device["spill_bytes"]
    assert device["compulsory_bytes"] + device["non_compulsory_bytes"] == device["offchip_bytes"]
    assert device["offchip_bytes"] <= device["compared"]["lru"]["offchip_bytes"]
    with ipc.open_file(tmp_path / "timeline.arrow") as reader:
        rows = reader.read_all().to_pylist()
    hbm = sum(r["bytes"] for r in rows if r["unit"] == "hbm")
    assert hbm == device["offchip_bytes"]
    assert summary["peak_memory_bytes"]["npu0"]["scratchpad"] <= device["capacity_bytes"]


def test_a_smaller_scratchpad_moves_more_and_takes_longer(tmp_path):
    spans, moved = [], []
    for size in ("128MiB", "16MiB"):
        out = tmp_path / size
        result = _run("--set", f"device_overrides.memory.scratchpad.capacity_bytes={size}",
                      "--set", "memory.scratchpad.compare=[]", out=out)
        assert result.returncode == 0, result.stderr
        summary = json.loads((out / "summary.json").read_text())
        spans.append(summary["makespan_s"])
        moved.append(summary["scratchpad"]["devices"][0])
    assert moved[0]["non_compulsory_bytes"] == 0
    assert moved[1]["offchip_bytes"] > moved[0]["offchip_bytes"]
    assert spans[1] > spans[0]


@pytest.mark.parametrize("args,expected", [
    (["--set", "device_overrides.memory.scratchpad.capacity_bytes=4MiB"], "needs"),
    (["--set", "memory.scratchpad.policy=fifo"], "memory.scratchpad.policy"),
    (["--set", "memory.scratchpad.policy=ilp", "--set", "memory.scratchpad.divide_and_conquer=false"],
     "over ilp_max_ops"),
    (["--set", "memory.scratchpad.lower_tier=scratchpad"], "lower_tier"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, expected):
    out = tmp_path / "out"
    result = _run(*args, out=out)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.stderr
    assert not out.exists()


def test_config_defaults_and_validation():
    config = ScratchpadConfig()
    assert config.policy == "belady" and config.allocation == "capacity"
    from sim.errors import ScenarioError
    from sim.schema import validate
    with pytest.raises(ScenarioError, match="ilp_max_ops"):
        validate(ScratchpadConfig, {"ilp_max_ops": 0}, "memory.scratchpad", ScenarioError)


def test_copies_into_a_managed_scratchpad_are_refused():
    from sim.errors import ScenarioError
    from sim.hardware.specs import load_device_spec
    from sim.workload.trace import load_trace
    trace = load_trace(ROOT / "traces" / "llm_decode_step.jsonl")
    spec = load_device_spec("npu_pim")
    with pytest.raises(ScenarioError, match="copies to or from the managed tier"):
        manage_scratchpad(trace, lambda rank: spec, {"policy": "lru"}, "")
    assert validate_ops(list(trace.ops), "x")


def test_sweep_script_writes_parquet_rows(tmp_path):
    import pyarrow.parquet as pq
    result = subprocess.run([sys.executable, str(ROOT / "scenarios" / "scratchpad_sweep.py"), "--out",
                             str(tmp_path), "--sizes", "16,64", "--policies", "lru,belady"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    rows = pq.read_table(tmp_path / "results.parquet").to_pylist()
    assert [(r["capacity_mib"], r["policy"]) for r in rows] == [(16, "lru"), (16, "belady"),
                                                                 (64, "lru"), (64, "belady")]
    assert rows[2]["non_compulsory_bytes"] == rows[3]["non_compulsory_bytes"] == 0
    assert rows[0]["offchip_bytes"] > rows[2]["offchip_bytes"]
