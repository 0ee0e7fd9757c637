"""Communication kernels' SMs (NCCL's one thread block per channel): where and when a
collective's kernel takes SMs on each member, that kernels take SMs as they free up,
and that folded and full fidelity therefore agree (sim.runtime.simulate
``Simulation._plan_comm_kernels``, sim.engine.device ``DeviceRuntime._top_up``)."""

import itertools

import pytest

import sim
from sim.engine.device import DeviceRuntime
from sim.runtime.simulate import Simulation
from sim.workload.trace import Op, write_trace

from test_zero import small

A100_SMS = 108
M, N = 128 * 12, 128 * 9   # 108 output tiles of 128 x 128: one wave on an idle A100


def gemm(op_id, rank=0, stream=0, k=8192, deps=(), bytes_read=0.0):
    return Op(id=op_id, name=f"g{op_id}", op="gemm", m=M, n=N, k=k, flops=2.0 * M * N * k,
              bytes_read=bytes_read, bytes_written=0.0, rank=rank, stream=stream, deps=tuple(deps))


def allreduce(op_id, nbytes, deps=(), stream=1):
    return Op(id=op_id, name=f"ar{op_id}", op="allreduce", flops=0.0, bytes_read=nbytes, bytes_written=nbytes,
              group=(0, 1), rank=0, stream=stream, deps=tuple(deps), algorithm="nccl")


def simulate(ops, tmp_path):
    path = tmp_path / "trace.jsonl"
    write_trace(ops, path)
    simulation = Simulation(sim.load_scenario_dict({"cluster": "dgx_a100", "trace": str(path)}))
    simulation.run()
    by_id = {op.id: i for i, op in enumerate(simulation.scenario.trace.ops)}
    return simulation, by_id


def channels(simulation, by_id, op_id):
    wanted = simulation.bound[by_id[op_id]].channels
    assert 0 < wanted < A100_SMS
    return wanted


def test_a_members_kernel_launches_when_its_own_predecessors_finish(tmp_path):
    """Rank 0 is ready long before rank 1: NCCL's kernel on rank 0 launches then and
    holds its channels' SMs while it waits for rank 1 (the data moves once both are
    there), so the GEMM rank 0 starts meanwhile runs on what is left."""
    ops = [gemm(0, rank=0, k=1024), gemm(1, rank=1, k=65536), allreduce(2, 1e9, deps=(0, 1)),
           gemm(3, rank=0, k=8192)]
    simulation, at = simulate(ops, tmp_path)
    times = simulation.times
    assert times.start_s[at[2]] == pytest.approx(times.end_s[at[1]])        # data moves when both are ready
    assert times.start_s[at[3]] == pytest.approx(times.end_s[at[0]])        # long before that
    assert times.end_s[at[3]] < times.start_s[at[2]]
    assert times.granted[at[3]] == A100_SMS - channels(simulation, at, 2)


@pytest.mark.parametrize("comm_listed_first", [True, False])
def test_at_one_instant_the_communication_kernel_takes_its_sms_first(tmp_path, comm_listed_first):
    """Whatever order the trace lists them in, a GEMM and a collective made ready by
    the same op's end share the SMs the same way: the collective's channels, the
    GEMM the rest (the NCCL thread blocks stay resident; the GEMM's turn over)."""
    successors = [allreduce(2, 1e9, deps=(0,)), gemm(1, k=8192, deps=(0,), stream=2)]
    ops = [gemm(0, k=1024)] + (successors if comm_listed_first else successors[::-1])
    simulation, at = simulate(ops, tmp_path)
    assert simulation.times.start_s[at[1]] == simulation.times.start_s[at[2]]
    assert simulation.times.granted[at[1]] == A100_SMS - channels(simulation, at, 2)


@pytest.mark.parametrize("bytes_read", [0.0, 1e6])
def test_a_gemm_started_beside_a_collective_takes_its_sms_back_when_it_ends(tmp_path, bytes_read):
    """Closed form: a GEMM granted g SMs while a collective holds the rest does t_c / T(g)
    of its work until the collective ends at t_c, and the remainder at the full grant:
    end = t_c + (1 - t_c / T(g)) T(108). (With memory traffic too: a compute-bound GEMM.)"""
    ops = [allreduce(0, 16e6, stream=1), gemm(1, k=65536, bytes_read=bytes_read)]
    simulation, at = simulate(ops, tmp_path)
    times, bound = simulation.times, simulation.bound[at[1]]
    narrow = A100_SMS - channels(simulation, at, 0)
    t_c = times.end_s[at[0]]
    assert times.start_s[at[1]] == 0.0 and 0 < t_c < bound.seconds(narrow)
    expected = t_c + (1 - t_c / bound.seconds(narrow)) * bound.compute_s
    assert times.end_s[at[1]] == pytest.approx(expected, rel=1e-9)
    assert bound.compute_s < times.end_s[at[1]] < bound.seconds(narrow)
    assert times.granted[at[1]] == A100_SMS


def test_a_communication_kernel_takes_sms_as_a_running_gemm_frees_them(tmp_path):
    """The collective launches while a GEMM holds every SM: its thread blocks are
    placed as the GEMM's finish, so the next GEMM runs beside them on what is left."""
    host = Op(id=1, name="issue", op="host", flops=0.0, bytes_read=0.0, bytes_written=0.0,
              duration_s=1e-6, rank=0, stream=2)
    ops = [gemm(0, k=8192), host, allreduce(2, 1e9, deps=(1,)), gemm(3, k=8192)]
    simulation, at = simulate(ops, tmp_path)
    times = simulation.times
    assert times.granted[at[0]] == A100_SMS
    assert times.start_s[at[3]] == pytest.approx(times.end_s[at[0]])
    assert times.end_s[at[3]] < times.end_s[at[2]]
    assert times.granted[at[3]] == A100_SMS - channels(simulation, at, 2)


def iteration_s(fidelity, **parallel):
    return sim.run(small(fidelity, **parallel)).summary["iteration_time_s"]


def test_zero3_with_tp_folded_equals_full_and_the_comm_sms_count(monkeypatch):
    """The case that disagreed by 15% (ZeRO-3, TP 2 x DP 4 on one DGX A100, prefetched
    per-layer all-gathers beside the TP all-reduces): the same iteration time in both
    fidelities, and slower than with communication kernels taking no SMs."""
    folded, full = iteration_s("folded", zero=3), iteration_s("full", zero=3)
    assert folded == pytest.approx(full, rel=1e-9)
    monkeypatch.setattr(DeviceRuntime, "launch_comm_kernel", lambda self, collective, sms: None)
    monkeypatch.setattr(DeviceRuntime, "end_comm_kernel", lambda self, collective: None)
    assert iteration_s("folded", zero=3) < 0.97 * folded


PLANS = [dict(zero=zero, tp=tp, dp=8 // tp, **({"zero_prefetch": prefetch} if zero == 3 else {}))
         for zero, tp, prefetch in itertools.product(range(4), (1, 2), range(3)) if zero == 3 or not prefetch]


@pytest.mark.parametrize("parallel", PLANS, ids=lambda p: "-".join(f"{k}{v}" for k, v in p.items()))
def test_folded_and_full_agree_with_communication_sms(parallel):
    assert iteration_s("folded", **parallel) == pytest.approx(iteration_s("full", **parallel), rel=0.01)


@pytest.mark.parametrize("shared,move_at,new_not_before,expected_end", [
    (False, 0.0, 5e-4, 5e-4),      # alone, bytes done at 1 us: it now ends at the new time
    (False, 0.0, 1e-7, 1e-6),      # ... or with its last byte when that is later
    (True, 1e-4, 5e-4, 5e-4),      # sharing the tier, bytes done at 2 us, waiting: ends at the new time
    (True, 1e-4, 1e-5, 1e-4),      # ... a time already past: it ends now
])
def test_a_transfer_may_end_earlier_when_its_compute_phase_is_retimed(shared, move_at, new_not_before,
                                                                      expected_end):
    """FluidNetwork.move_not_before, which DeviceRuntime._top_up uses when a kernel
    with memory traffic speeds up: the transfer ends at max(last byte, new time)."""
    from sim.engine.calendar import Environment
    from sim.engine.fluid import FluidNetwork
    env = Environment()
    net = FluidNetwork(env, {"tier": 1e12})
    ends = []
    flow = net.start(1e6, ("tier",), lambda f: ends.append(f.end_s), not_before=1e-3)
    if shared:
        net.start(1e6, ("tier",), lambda f: None)
    env.at(move_at, lambda _: net.move_not_before(flow, new_not_before))
    env.run()
    assert ends == [pytest.approx(expected_end)]
    assert flow.bytes_end_s == pytest.approx(2e-6 if shared else 1e-6)
