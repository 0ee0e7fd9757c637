"""Helpers of the tables built after a run: chunked interval merging gives the
bits one pass gives; per-op reads give each op's attributes."""

import numpy as np
from hypothesis import given, settings, strategies as st

from sim.reports.tables import grouped_busy, op_arrays, op_values
from sim.workload.trace import Op


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**16), rows=st.integers(0, 60), count=st.integers(1, 7), chunk=st.integers(1, 9))
def test_grouped_busy_in_chunks_is_one_pass(seed, rows, count, chunk):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, count, rows)
    starts = np.round(rng.random(rows) * 10, 1)             # ties and nested intervals
    ends = starts + np.round(rng.random(rows) * 3, 1)
    whole = grouped_busy(groups, starts, ends, count, chunk_rows=10**9)
    assert grouped_busy(groups, starts, ends, count, chunk_rows=chunk).tobytes() == whole.tobytes()
    for g in range(count):           # and it is the union length
        union, reach = 0.0, -1.0
        for s, e in sorted(zip(starts[groups == g].tolist(), ends[groups == g].tolist())):
            union += max(0.0, e - max(s, reach)) if e > reach else 0.0
            reach = max(reach, e)
        assert abs(whole[g] - union) < 1e-9


def test_op_values_and_arrays_read_each_position():
    ops = [Op(id=10 + i, name=f"op{i}", op="gemm", flops=1.0, bytes_read=0.0, bytes_written=0.0,
              stage=None if i % 3 == 0 else i) for i in range(8)]
    positions = np.array([5, 1, 5, 7, 0])
    assert op_values(ops, positions, "name") == ["op5", "op1", "op5", "op7", "op0"]
    arrays = op_arrays(ops, np.array([3, -1, 2]), {"next_op_id": "id", "stage": "stage"})
    assert arrays["next_op_id"].to_pylist() == [13, None, 12]
    assert arrays["stage"].to_pylist() == [None, None, 2]


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**16), rows=st.integers(0, 50), window=st.integers(1, 12), static=st.floats(0, 50))
def test_peak_power_in_windows_is_the_power_curves_maximum(seed, rows, window, static):
    from sim.energy.account import peak_power_w, power_curve
    rng = np.random.default_rng(seed)
    starts = np.round(rng.random(rows) * 8, 1)               # ties, and rows of no duration
    ends = starts + np.round(rng.random(rows) * 3, 1)
    energy = rng.random(rows) * 100
    makespan = float(ends.max()) if rows else 1.0
    _, power = power_curve(starts, ends, energy, static, makespan)
    expected = float(power.max())
    assert peak_power_w(starts, ends, energy, static, makespan, window_rows=window) == expected
    assert peak_power_w(starts, ends, energy, static, makespan) == expected
    cuts = sorted(rng.integers(0, rows + 1, size=int(rng.integers(0, 4))).tolist())     # a table's chunks
    pieces = lambda x: np.split(x, cuts)                                                 # noqa: E731
    assert peak_power_w(pieces(starts), pieces(ends), energy, static, makespan, window_rows=window) == expected
