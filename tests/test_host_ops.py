"""Host ops: time on the CPU thread that issues a device's work (imported profiles)."""

import pytest

import sim
from sim.workload.trace import Op, write_trace


def test_host_op_delays_the_kernel_it_launches_and_is_a_host_wait(tmp_path):
    ops = [Op(1, "python", "host", 0, 0, 0, duration_s=2e-3, stream=9),
           Op(2, "kernel", "elementwise", 0, 0, 0, duration_s=1e-3, deps=(1,)),
           Op(3, "python2", "host", 0, 0, 0, duration_s=0.5e-3, stream=9),
           Op(4, "kernel2", "elementwise", 0, 0, 0, duration_s=1e-3, deps=(3,))]
    write_trace(ops, tmp_path / "t.arrow")
    result = sim.run({"device": "a100_sxm4_80gb", "trace": str(tmp_path / "t.arrow")})
    # host 0-2 ms, kernel 2-3 ms; host2 2-2.5 ms; kernel2 waits for kernel on stream 0: 3-4 ms
    assert result.summary["makespan_s"] == pytest.approx(4e-3)
    rows = {r["op_id"]: r for r in result.timeline.to_pylist()}
    assert (rows[1]["unit"], rows[1]["category"]) == ("cpu", "host")
    assert rows[3]["start_s"] == pytest.approx(2e-3) and rows[4]["start_s"] == pytest.approx(3e-3)
    assert result.summary["bubble_s_by_cause"]["host_wait"] == pytest.approx(2e-3)
    cpu = [r for r in result.utilization.to_pylist() if r["unit"] == "cpu"]
    assert cpu and cpu[0]["busy_s"] == pytest.approx(2.5e-3)
