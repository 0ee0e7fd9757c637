"""Every cost model against hand-computed closed forms."""

import math

import pytest
from hypothesis import given, strategies as st

from sim.hardware import cost


def test_roofline_takes_the_slower_side():
    assert cost.roofline_s(1e12, 1e9, 1e12, 1e12) == pytest.approx(1.0)      # compute-bound
    assert cost.roofline_s(1e9, 2e12, 1e12, 1e12) == pytest.approx(2.0)      # memory-bound
    assert cost.roofline_s(0, 0, 1e12, 1e12) == 0.0


def test_sm_gemm_wave_quantization_by_hand():
    # 1024 x 1024 output in 128 x 128 tiles = 64 tiles; on 108 SMs that is one wave.
    per_sm = 312e12 / 108
    t = cost.sm_gemm_compute_s(1024, 1024, 4096, 108, per_sm, 128, 128)
    assert t == pytest.approx(2 * 128 * 128 * 4096 / per_sm)
    # 1152 x 1536 = 9 x 12 = 108 tiles: still one wave; 109 tiles would need two.
    one = cost.sm_gemm_compute_s(1152, 1536, 512, 108, per_sm)
    two = cost.sm_gemm_compute_s(1153, 1536, 512, 108, per_sm)
    assert two == pytest.approx(2 * one)


def test_sm_gemm_tile_quantization_pads_partial_tiles():
    # M = 129 needs 2 row tiles: the same time as M = 256.
    assert cost.sm_gemm_compute_s(129, 128, 64, 4, 1e12) == cost.sm_gemm_compute_s(256, 128, 64, 4, 1e12)
    assert cost.gemm_tiles(129, 128, 128, 128, batch=3) == 6


def test_sm_gemm_large_square_approaches_peak():
    per_sm, sms = 312e12 / 108, 108
    m = n = k = 128 * 108
    t = cost.sm_gemm_compute_s(m, n, k, sms, per_sm)
    assert 2 * m * n * k / t == pytest.approx(312e12)


def test_sms_wanted_is_one_per_tile_capped():
    assert cost.sm_gemm_sms_wanted(128, 128, 108) == 1
    assert cost.sm_gemm_sms_wanted(4096, 4096, 108) == 108


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
