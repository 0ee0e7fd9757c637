"""The systolic cycle model against SCALE-Sim 3's own compute modules.

SCALE-Sim (``pip install scalesim``, the ``oracle`` extra) is an optional
test dependency: without it these tests are skipped with that reason.
"""

import numpy as np
import pytest

from sim.hardware.cost import systolic_gemm_cycles

scalesim = pytest.importorskip("scalesim", reason="SCALE-Sim 3 not installed: pip install -e '.[oracle]'")


def scalesim_compute(m, n, k, rows, cols, dataflow):
    """SCALE-Sim's compute module for C[m,n] = A[m,k] B[k,n], demand matrices made."""
    from scalesim.compute.systolic_compute_is import systolic_compute_is
    from scalesim.compute.systolic_compute_os import systolic_compute_os
    from scalesim.compute.systolic_compute_ws import systolic_compute_ws
    from scalesim.scale_config import scale_config

    config = scale_config()
    config.set_arr_dims(rows, cols)
    config.valid_conf_flag = True
    compute = {"os": systolic_compute_os, "ws": systolic_compute_ws, "is": systolic_compute_is}[dataflow]()
    ifmap = np.arange(m * k).reshape(m, k)
    weights = np.arange(k * n).reshape(k, n) + m * k
    ofmap = np.arange(m * n).reshape(m, n)
    compute.set_params(config_obj=config, ifmap_op_mat=ifmap, filter_op_mat=weights, ofmap_op_mat=ofmap)
    compute.create_demand_matrices()
    return compute, config


def scalesim_cycles(m, n, k, rows, cols, dataflow):
    """Cycles in SCALE-Sim's schedule: one demand-matrix row per cycle."""
    compute, _ = scalesim_compute(m, n, k, rows, cols, dataflow)
    return compute.ofmap_demand_matrix.shape[0]


def scalesim_printed_compute_cycles(m, n, k, rows, cols, dataflow):
    """The "Compute cycles" SCALE-Sim prints for the layer: its memory system
    serves the demand matrices (SRAMs and bandwidth large enough for no stalls)
    and reports ``max(ofmap_serviced_cycles)``."""
    from scalesim.memory.double_buffered_scratchpad_mem import double_buffered_scratchpad

    compute, config = scalesim_compute(m, n, k, rows, cols, dataflow)
    memory = double_buffered_scratchpad()
    big = 1 << 30
    memory.set_params(verbose=False, estimate_bandwidth_mode=True, word_size=1,
                      ifmap_buf_size_bytes=big, filter_buf_size_bytes=big, ofmap_buf_size_bytes=big,
                      ifmap_backing_buf_bw=1 << 20, filter_backing_buf_bw=1 << 20,
                      ofmap_backing_buf_bw=1 << 20, config=config)
    try:
        memory.service_memory_requests(*compute.get_demand_matrices())
    except TypeError:
        # SCALE-Sim 3.0.0's int(max(list of 1-element arrays)) fails on recent NumPy (2.4); the
        # traces it has just built hold the same serviced cycles, so take their maximum.
        return int(memory.ofmap_trace_matrix[:, 0].max()), memory.stall_cycles
    return memory.get_total_compute_cycles(), memory.stall_cycles


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
@pytest.mark.parametrize("m,n,k,rows,cols", [
    (64, 64, 64, 32, 32), (100, 37, 50, 16, 16), (20, 70, 33, 8, 16), (128, 256, 96, 32, 16),
])
def test_cycles_equal_scalesim(dataflow, m, n, k, rows, cols):
    assert systolic_gemm_cycles(m, n, k, rows, cols, dataflow) == scalesim_cycles(m, n, k, rows, cols, dataflow)


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
@pytest.mark.parametrize("m,n,k,rows,cols", [(64, 64, 64, 32, 32), (100, 37, 50, 16, 16)])
def test_scalesim_prints_the_last_cycle_index_one_less_than_the_count(dataflow, m, n, k, rows, cols):
    """SCALE-Sim's printed "Compute cycles" numbers cycles from 0: F x P - 1 for
    F folds of P cycles, where accsim (and the demand matrices) count F x P."""
    printed, stalls = scalesim_printed_compute_cycles(m, n, k, rows, cols, dataflow)
    assert stalls == 0
    assert printed == systolic_gemm_cycles(m, n, k, rows, cols, dataflow) - 1
