"""Ops on units: the simulated times equal the cost models' closed forms."""

import pytest

import sim
from sim.errors import CapacityError, SpecError, TraceError
from sim.hardware.specs import device_spec_from_dict
from sim.runtime.scenario import Scenario
from sim.workload.trace import Op, validate_ops

from conftest import gpu_spec_dict, npu_spec_dict


def run_ops(ops, spec_dict, resident=None):
    spec = device_spec_from_dict(spec_dict)
    trace = validate_ops(ops, "test")
    return sim.run(Scenario(name="t", device=spec, device_name="d0", trace=trace,
                            resident_bytes=resident or {}))


def gemm(i, m, n, k, **kw):
    return Op(id=i, name=f"g{i}", op="gemm", m=m, n=n, k=k, flops=2.0 * m * n * k,
              bytes_read=kw.pop("bytes_read", 0.0), bytes_written=kw.pop("bytes_written", 0.0), **kw)


def test_single_gemm_takes_its_wave_quantized_time():
    # 4 SMs of 1 TFLOP/s, 64x64 tiles: 256x256 output = 16 tiles = 4 waves.
    result = run_ops([gemm(0, 256, 256, 512)], gpu_spec_dict())
    expected = 4 * 2 * 64 * 64 * 512 / 1e12
    assert result.summary["makespan_s"] == pytest.approx(expected, rel=1e-12)


def test_mainloop_efficiency_stretches_gemms_but_not_the_peak_mfu_is_measured_against():
    spec = gpu_spec_dict()
    spec["sm_array"] = {**spec["sm_array"], "mainloop_efficiency": {"default": 0.5}}
    result = run_ops([gemm(0, 256, 256, 512)], spec)
    quantized = 4 * 2 * 64 * 64 * 512 / 1e12  # as in the test above, at the datasheet peak
    assert result.summary["makespan_s"] == pytest.approx(quantized / 0.5, rel=1e-12)
    row = next(r for r in result.utilization.to_pylist() if r["unit"] == "sm")
    assert row["peak_flops_per_s"] == 4e12
    assert result.summary["mfu"] == pytest.approx(2 * 256 * 256 * 512 / (4e12 * quantized / 0.5))
    # pointwise ops on the CUDA cores are not GEMMs: untouched
    op = Op(id=0, name="act", op="elementwise", flops=4e9, bytes_read=0.0, bytes_written=0.0)
    assert run_ops([op], spec).summary["makespan_s"] == pytest.approx(4e9 / 4e11)


@pytest.mark.parametrize("value", [0, 1.5, -0.2, "high"])
def test_mainloop_efficiency_must_be_a_fraction(value):
    spec = gpu_spec_dict()
    spec["sm_array"] = {**spec["sm_array"], "mainloop_efficiency": {"bf16": value}}
    with pytest.raises(SpecError, match=r"sm_array\.mainloop_efficiency\.bf16"):
        device_spec_from_dict(spec)


def test_launch_overhead_is_added_to_every_kernel():
    spec = gpu_spec_dict()
    spec["sm_array"] = {**spec["sm_array"], "launch_overhead_s": "5us"}
    quantized = 4 * 2 * 64 * 64 * 512 / 1e12
    assert run_ops([gemm(0, 256, 256, 512)], spec).summary["makespan_s"] == pytest.approx(quantized + 5e-6)
    op = Op(id=0, name="add", op="elementwise", flops=1e6, bytes_read=2e9, bytes_written=1e9)
    assert run_ops([op], spec).summary["makespan_s"] == pytest.approx(5e-6 + 3e9 / 1e12)


def test_tier_efficiency_scales_the_bandwidth_transfers_share():
    spec = gpu_spec_dict()
    spec["memory"][0] = {**spec["memory"][0], "efficiency": 0.8}
    op = Op(id=0, name="add", op="elementwise", flops=1e6, bytes_read=2e9, bytes_written=1e9)
    assert run_ops([op], spec).summary["makespan_s"] == pytest.approx(3e9 / 0.8e12)


def test_memory_bound_op_follows_the_roofline():
    op = Op(id=0, name="add", op="elementwise", flops=1e6, bytes_read=2e9, bytes_written=1e9)
    result = run_ops([op], gpu_spec_dict())
    assert result.summary["makespan_s"] == pytest.approx(3e9 / 1e12)


def test_two_concurrent_memory_bound_kernels_share_the_tier():
    # Two one-tile GEMMs (one SM each) on separate streams, each reading 1 GB: alone 1 ms,
    # together they run at once on 2 of the 4 SMs and share HBM, so both end at 2 ms.
    ops = [gemm(i, 64, 64, 64, bytes_read=1e9, stream=i) for i in range(2)]
    result = run_ops(ops, gpu_spec_dict())
    rows = [r for r in result.timeline.to_pylist() if r["category"] == "compute"]
    assert [r["start_s"] for r in rows] == [0.0, 0.0]
    assert [r["units_held"] for r in rows] == [1, 1]
    assert [r["end_s"] for r in rows] == pytest.approx([2e-3, 2e-3])


def test_kernels_compete_for_sms():
    # Each GEMM has 4 tiles and wants all 4 SMs: the second waits for the first (FIFO).
    ops = [gemm(i, 128, 128, 512, stream=i) for i in range(2)]
    result = run_ops(ops, gpu_spec_dict())
    one = 2 * 64 * 64 * 512 / 1e12
    rows = [r for r in result.timeline.to_pylist() if r["category"] == "compute"]
    assert [t for r in rows for t in (r["start_s"], r["end_s"])] == pytest.approx([0.0, one, one, 2 * one])
    assert result.bubbles.num_rows == 0


def test_concurrent_copies_share_bandwidth_exactly():
    ops = [Op(id=i, name=f"c{i}", op="copy", flops=0.0, bytes_read=1e9, bytes_written=1e9,
              src_tier="hbm", dst_tier="hbm", stream=i) for i in range(3)]
    result = run_ops(ops, gpu_spec_dict())
    ends = result.timeline["end_s"].to_pylist()
    assert ends == pytest.approx([3e-3] * 3)


def test_copy_is_limited_by_the_slower_tier():
    op = Op(id=0, name="h2d", op="copy", flops=0.0, bytes_read=1e9, bytes_written=1e9,
            src_tier="host", dst_tier="hbm")
    result = run_ops([op], gpu_spec_dict())
    assert result.summary["makespan_s"] == pytest.approx(1e9 / 1e11)
    assert sorted(result.timeline["unit"].to_pylist()) == ["hbm", "host"]


def test_systolic_gemm_time_from_folds_and_clock():
    # 8x8 arrays x2, ws: M=32, N=16, K=8 -> S_R=8, S_C=16: 2 folds of 2*8+8+32-2 = 54 cycles,
    # spread over 2 arrays: 54 cycles at 1 GHz.
    result = run_ops([gemm(0, 32, 16, 8)], npu_spec_dict())
    assert result.summary["makespan_s"] == pytest.approx(54e-9)


def test_non_matrix_op_runs_on_the_vector_unit():
    op = Op(id=0, name="softmax", op="softmax", flops=1e9, bytes_read=1.0, bytes_written=1.0)
    result = run_ops([op], npu_spec_dict())
    assert result.timeline["unit"].to_pylist()[0] == "vector"
    assert result.summary["makespan_s"] == pytest.approx(1e9 / 1e11)


def pim_and_read(mode):
    gemv = Op(id=0, name="gemv", op="gemv", flops=4e8, bytes_read=4e8, bytes_written=0.0)
    read = Op(id=1, name="read", op="copy", flops=0.0, bytes_read=4e8, bytes_written=4e8,
              src_tier="hbm", dst_tier="hbm", stream=1)
    return run_ops([gemv, read], npu_spec_dict(mode))


def test_pim_modes_blocked_time_shares_concurrent_overlaps():
    # PIM alone: 4e8 B over 4 banks x 10 GB/s = 10 ms; the read alone: 4e8 B / 100 GB/s = 4 ms.
    concurrent = pim_and_read("concurrent")
    ends = dict(zip(concurrent.timeline["name"].to_pylist(), concurrent.timeline["end_s"].to_pylist()))
    assert ends["gemv"] == pytest.approx(10e-3)
    assert ends["read"] == pytest.approx(4e-3)
    # Blocked: both share the HBM in time until the read finishes (at 8 ms, having had half),
    # then the PIM op has 6 ms of its 10 left: it ends at 14 ms.
    blocked = pim_and_read("blocked")
    pim_rows = blocked.timeline.filter(blocked.timeline["unit"].to_numpy(zero_copy_only=False) == "pim")
    read_rows = blocked.timeline.filter(blocked.timeline["name"].to_numpy(zero_copy_only=False) == "read")
    assert read_rows["end_s"][0].as_py() == pytest.approx(8e-3)
    assert pim_rows["end_s"][0].as_py() == pytest.approx(14e-3)


def test_allocation_beyond_capacity_names_device_tier_and_sizes():
    op = Op(id=0, name="big", op="elementwise", flops=1.0, bytes_read=1.0, bytes_written=2e9,
            tensor="act")
    with pytest.raises(CapacityError) as info:
        run_ops([op], gpu_spec_dict())
    message = str(info.value)
    assert "device d0" in message and "tier hbm" in message
    assert "requested 2000000000 bytes" in message and "free 1000000000 bytes" in message


def test_tensors_are_tracked_and_freed():
    ops = [Op(id=0, name="a", op="elementwise", flops=1.0, bytes_read=0, bytes_written=6e8, tensor="x"),
           Op(id=1, name="b", op="elementwise", flops=1.0, bytes_read=6e8, bytes_written=0, frees=("x",)),
           Op(id=2, name="c", op="elementwise", flops=1.0, bytes_read=0, bytes_written=6e8, tensor="y")]
    result = run_ops(ops, gpu_spec_dict())
    assert result.summary["peak_memory_bytes"]["d0"]["hbm"] == 6e8
    used = result.memory["used_bytes"].to_pylist()
    assert used == [600000000, 0, 600000000]


def test_unit_not_on_device_is_a_trace_error():
    op = Op(id=0, name="g", op="gemv", flops=1.0, bytes_read=1.0, bytes_written=1.0, unit="pim")
    with pytest.raises(TraceError, match="op 0 .*unit 'pim' is not on device toy-gpu"):
        run_ops([op], gpu_spec_dict())


def test_bubble_causes_name_what_the_unit_waited_for():
    # stream 1 copies from host (10 ms); the GEMM on stream 0 depends on it: the SMs idle
    # for a memory_wait. Then an elementwise op depends on the GEMM (no gap), and after it
    # the SMs have no work while a last copy runs.
    ops = [Op(id=0, name="load", op="copy", flops=0, bytes_read=1e9, bytes_written=1e9,
              src_tier="host", dst_tier="hbm", stream=1),
           gemm(1, 256, 256, 512, deps=(0,)),
           Op(id=2, name="tail", op="copy", flops=0, bytes_read=1e9, bytes_written=1e9,
              src_tier="hbm", dst_tier="host", stream=1, deps=(1,))]
    result = run_ops(ops, gpu_spec_dict())
    rows = result.bubbles.to_pylist()
    assert [r["cause"] for r in rows] == ["memory_wait", "no_work"]
    assert rows[0]["start_s"] == 0.0 and rows[0]["end_s"] == pytest.approx(1e-2)
    assert rows[0]["next_op_id"] == 1


def test_utilization_and_mfu_of_a_compute_bound_gemm():
    result = run_ops([gemm(0, 256, 256, 512)], gpu_spec_dict())
    row = next(r for r in result.utilization.to_pylist() if r["unit"] == "sm")
    assert row["utilization"] == pytest.approx(1.0)
    assert row["peak_flops_per_s"] == 4e12
    assert result.summary["mfu"] == pytest.approx(2 * 256 * 256 * 512 / (4e12 * result.summary["makespan_s"]))


def test_communication_kernels_take_sms_from_compute(tmp_path):
    """An all-reduce running beside a GEMM holds comm_sms SMs (8 on the A100 spec), so a
    GEMM of exactly 108 tiles of 128 x 128 needs a second wave (100 SMs left): twice the
    main loop, one launch overhead."""
    from sim.workload.trace import write_trace
    m, n, k = 128 * 12, 128 * 9, 8192
    gemm_op = Op(id=1, name="gemm", op="gemm", m=m, n=n, k=k, flops=2.0 * m * n * k, bytes_read=0.0,
                 bytes_written=0.0, rank=0)
    comm = Op(id=0, name="ar", op="allreduce", flops=0.0, bytes_read=1e9, bytes_written=1e9,
              group=(0, 1), rank=0, stream=1, algorithm="ring")
    alone_path, shared_path = tmp_path / "alone.jsonl", tmp_path / "shared.jsonl"
    write_trace([gemm_op], alone_path)
    write_trace([comm, gemm_op], shared_path)
    base = {"cluster": "dgx_a100"}
    alone = sim.run({**base, "trace": str(alone_path)})
    shared = sim.run({**base, "trace": str(shared_path)})
    gemm_time = lambda r: next(row["end_s"] - row["start_s"] for row in r.timeline.to_pylist()
                               if row["name"] == "gemm" and row["category"] == "compute")
    from sim.hardware.specs import load_device_spec
    launch = load_device_spec("a100_sxm4_80gb").sm_array.launch_overhead_s
    assert gemm_time(shared) - launch == pytest.approx(2 * (gemm_time(alone) - launch))
    held = next(row["units_held"] for row in shared.timeline.to_pylist()
                if row["name"] == "gemm" and row["category"] == "compute")
    assert held == 100


@pytest.mark.parametrize("scenario", ["pipeline_ideal", "quickstart", "long_context_cp"])
def test_each_ops_blocker_is_the_predecessor_that_finished_last(scenario):
    """Simulation._blockers (vectorised) against the definition, edge by edge:
    ready = the latest end of an op's predecessors (0 without any), blocker =
    the predecessor with that end, the last edge in trace order on ties."""
    from sim.paths import scenarios_dir
    from sim.runtime.simulate import Simulation
    simulation = Simulation(sim.load_scenario(scenarios_dir() / f"{scenario}.yaml"))
    simulation.run()
    ready, blocker = simulation._blockers()
    src, dst = simulation.scenario.trace.edge_indices()
    ends = simulation.times.end_s
    want_ready = [0.0] * len(ends)
    want_blocker = [-1] * len(ends)
    for a, b in zip(src.tolist(), dst.tolist()):
        if want_blocker[b] < 0 or ends[a] >= want_ready[b]:
            want_ready[b], want_blocker[b] = max(want_ready[b], ends[a]), a
    assert list(ready) == want_ready and list(blocker) == want_blocker
