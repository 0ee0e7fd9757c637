"""The systolic cycle model against SCALE-Sim 3's own compute modules.

SCALE-Sim (``pip install scalesim``, the ``oracle`` extra) is an optional
test dependency: without it these tests are skipped with that reason.
"""

import numpy as np
import pytest

from sim.hardware.cost import systolic_gemm_cycles

scalesim = pytest.importorskip("scalesim", reason="SCALE-Sim 3 not installed: pip install -e '.[oracle]'")


def scalesim_cycles(m, n, k, rows, cols, dataflow):
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
    return compute.ofmap_demand_matrix.shape[0]


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
@pytest.mark.parametrize("m,n,k,rows,cols", [
    (64, 64, 64, 32, 32), (100, 37, 50, 16, 16), (20, 70, 33, 8, 16), (128, 256, 96, 32, 16),
])
def test_cycles_equal_scalesim(dataflow, m, n, k, rows, cols):
    assert systolic_gemm_cycles(m, n, k, rows, cols, dataflow) == scalesim_cycles(m, n, k, rows, cols, dataflow)
