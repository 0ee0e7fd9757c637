"""The roofline, systolic and PIM cost models against hand-computed closed forms
(GPU kernel models: tests/test_kernels.py)."""

import math

import pytest
from hypothesis import given, strategies as st

from sim.hardware import cost


def test_roofline_takes_the_slower_side():
    assert cost.roofline_s(1e12, 1e9, 1e12, 1e12) == pytest.approx(1.0)      # compute-bound
    assert cost.roofline_s(1e9, 2e12, 1e12, 1e12) == pytest.approx(2.0)      # memory-bound
    assert cost.roofline_s(0, 0, 1e12, 1e12) == 0.0


@pytest.mark.parametrize("dataflow,expected", [
    # M=100, N=37, K=50 on 16 x 16.
    ("os", math.ceil(100 / 16) * math.ceil(37 / 16) * (16 + 16 + 50 - 2)),      # S_R=M, S_C=N, T=K
    ("ws", math.ceil(50 / 16) * math.ceil(37 / 16) * (2 * 16 + 16 + 100 - 2)),  # S_R=K, S_C=N, T=M
    ("is", math.ceil(50 / 16) * math.ceil(100 / 16) * (2 * 16 + 16 + 37 - 2)),  # S_R=K, S_C=M, T=N
])
def test_systolic_fold_counts_by_hand(dataflow, expected):
    assert cost.systolic_gemm_cycles(100, 37, 50, 16, 16, dataflow) == expected


def test_systolic_scale_out_spreads_folds_over_arrays():
    single = cost.systolic_gemm_cycles(512, 512, 512, 128, 128, "ws")          # 16 folds
    assert cost.systolic_gemm_cycles(512, 512, 512, 128, 128, "ws", arrays=4) == single // 4
    assert cost.systolic_gemm_cycles(512, 512, 512, 128, 128, "ws", arrays=3) == 6 * (single // 16)
    assert cost.systolic_arrays_wanted(128, 128, 128, 128, 128, "ws", 8) == 1


def test_systolic_unknown_dataflow():
    with pytest.raises(ValueError, match="dataflow"):
        cost.systolic_gemm_cycles(8, 8, 8, 4, 4, "xs")


def test_pim_gemv_is_bandwidth_bound_over_all_banks():
    # 1 GB matrix over 512 banks of 9.6 GB/s: 1e9 / 4.9152e12 s.
    t = cost.pim_gemv_s(1e9, 1e9, 512, 9.6e9, 1.92e10)
    assert t == pytest.approx(1e9 / (512 * 9.6e9))
    # compute-bound when each bank's MAC is slower than its stream
    assert cost.pim_gemv_s(1e9, 4e9, 512, 9.6e9, 1.92e9) == pytest.approx(4e9 / (512 * 1.92e9))


@given(st.integers(1, 4096), st.integers(1, 4096), st.integers(1, 4096),
       st.sampled_from(["os", "ws", "is"]))
def test_systolic_cycles_never_beat_the_mac_bound(m, n, k, dataflow):
    cycles = cost.systolic_gemm_cycles(m, n, k, 32, 32, dataflow)
    assert cycles * 32 * 32 >= m * n * k
