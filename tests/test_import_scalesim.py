"""accsim import scalesim: SCALE-Sim topology files as traces of conv2d / gemm ops,
priced with SCALE-Sim's own mapping (checked against its compute modules where installed)."""

import re
import subprocess
import sys

import pytest

import sim
from sim.engine.device import bind_op, isolated_seconds
from sim.hardware import cost
from sim.hardware.specs import device_spec_from_dict
from sim.importers.scalesim import convert
from sim.runtime.scenario import load_scenario
from sim.workload.trace import load_trace

from conftest import ROOT, gpu_spec_dict, npu_spec_dict


def accsim(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "sim", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


SMALL = """Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
c1, 15, 15, 3, 3, 4, 20, 2,
c2, 9, 11, 3, 1, 6, 7, 1,
DPc3, 8, 8, 3, 3, 3, 2, 1,
"""


def systolic(rows, cols, dataflow, count=1, clock_hz=1.0):
    spec = npu_spec_dict()
    spec["systolic_array"] = {"rows": rows, "cols": cols, "count": count, "clock_hz": clock_hz,
                              "dataflow": dataflow}
    return device_spec_from_dict(spec)


def test_shipped_resnet50_imports_to_the_shipped_trace(tmp_path):
    out = tmp_path / "r.arrow"
    proc = accsim("import", "scalesim", "traces/resnet50.csv", "--out", out, "--batch", "8")
    assert proc.returncode == 0, proc.stderr
    assert "54 ops (conv2d 54)" in proc.stdout
    assert out.read_bytes() == (ROOT / "traces" / "resnet50_scalesim.arrow").read_bytes()


def test_resnet50_topology_has_the_published_multiply_adds():
    """He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Table 1:
    the 50-layer network is 3.8 x 10^9 multiply-adds per 224 x 224 image."""
    macs = sum(op.flops / 2 for op in convert(ROOT / "traces" / "resnet50.csv"))
    assert macs == pytest.approx(3.8e9, rel=0.02)
    assert sum(1 for op in convert(ROOT / "traces" / "resnet50.csv") if op.name.endswith("_b")) == 16


def test_conv_layer_is_its_im2col_gemm(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(SMALL)
    c1, c2, dp = convert(path)
    # c1: ofmap ceil((15 - 3 + 2) / 2) = 7 -> M = 49, N = 20, K = 3 * 3 * 4 = 36
    spec = systolic(8, 8, "ws")
    assert bind_op(c1, spec, "t").compute_s == cost.systolic_gemm_cycles(49, 20, 36, 8, 8, "ws")
    assert c1.flops == 2 * 49 * 20 * 36 and c1.bytes_written == 2 * 49 * 20
    # depthwise: three single-channel layers of M = 36, N = 2, K = 9
    assert (dp.groups, dp.channels, dp.filters) == (3, 3, 6)
    assert bind_op(dp, spec, "t").compute_s == 3 * cost.systolic_gemm_cycles(36, 2, 9, 8, 8, "ws")
    # on SM arrays: the implicit GEMM through the GEMM kernel model (M = 77, N = 7, K = 18): on the
    # toy GPU's 64 x 64 tiles, 2 tiles in one wave, K rounded up to the 64-element K step
    gpu = device_spec_from_dict(gpu_spec_dict())
    assert bind_op(c2, gpu, "t").compute_s == pytest.approx(2 * 64 * 64 * 64 / 1e12)


def test_gemm_layout(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("Layer, M, N, K,\nqkv, 512, 768, 256,\nfc, 64, 10, 3,\n")
    ops = convert(path)
    assert [(o.op, o.m, o.n, o.k) for o in ops] == [("gemm", 512, 768, 256), ("gemm", 64, 10, 3)]
    assert ops[1].deps == (0,)


def test_scenario_replays_the_layers_back_to_back():
    result = sim.run(ROOT / "scenarios" / "resnet50_tpu.yaml")
    trace = load_trace(ROOT / "traces" / "resnet50_scalesim.arrow")
    spec = load_scenario(ROOT / "scenarios" / "resnet50_tpu.yaml").device
    expected = sum(isolated_seconds(bind_op(op, spec, "t"), spec) for op in trace.ops)
    assert result.summary["makespan_s"] == pytest.approx(expected, rel=1e-9)
    assert result.summary["ops"] == 54


@pytest.mark.parametrize("text,pattern", [
    ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
     "c1, 15, 15, 3, three, 4, 20, 2,\n", r"line 2 \(layer 'c1'\): column 'Filter Width': expected a positive integer, got 'three'"),
    ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
     "c1, 15, 15, 3,\n", r"line 2 \(layer 'c1'\): expected 8 columns"),
    ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
     "c1, 2, 15, 3, 3, 4, 20, 2,\n", r"filter 3x3 is larger than the ifmap 2x15"),
    ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides, Sparsity,\n"
     "c1, 15, 15, 3, 3, 4, 20, 2, 2:4,\n", r"sparsity '2:4': only dense layers"),
    ("Layer, M, N, K,\nfc, 64, 0, 3,\n", r"column 'N': expected a positive integer, got 0"),
    ("a,b\n1,2\n", r"line 1: header .* is neither"),
    ("Layer, M, N, K,\n", r"no layers after the header row"),
])
def test_malformed_rows_fail_in_one_line_and_write_nothing(tmp_path, text, pattern):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    out = tmp_path / "out.arrow"
    proc = accsim("import", "scalesim", path, "--out", out)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0]
    assert re.search(pattern, lines[0]), lines[0]
    assert not out.exists() and not list(tmp_path.glob("out.arrow*"))


def test_bad_output_and_missing_input(tmp_path):
    proc = accsim("import", "scalesim", tmp_path / "none.csv", "--out", tmp_path / "o.arrow")
    assert proc.returncode == 2 and "topology file not found" in proc.stderr
    proc = accsim("import", "scalesim", "traces/resnet50.csv", "--out", tmp_path / "o.parquet")
    assert proc.returncode == 2 and "must end in .arrow or .jsonl" in proc.stderr


# ---------------------------------------------------------------- the SCALE-Sim oracle

def scalesim_layer_cycles(csv_path, rows, cols, dataflow):
    """Compute cycles of every layer, from SCALE-Sim 3's own topology reader,
    im2col operand matrices and systolic compute modules."""
    from scalesim.compute.operand_matrix import operand_matrix
    from scalesim.compute.systolic_compute_is import systolic_compute_is
    from scalesim.compute.systolic_compute_os import systolic_compute_os
    from scalesim.compute.systolic_compute_ws import systolic_compute_ws
    from scalesim.scale_config import scale_config
    from scalesim.topology_utils import topologies

    topo = topologies()
    topo.load_arrays(str(csv_path))
    topo.topo_calc_hyperparams()
    config = scale_config()
    config.set_arr_dims(rows, cols)
    config.valid_conf_flag = True
    cycles = {}
    for layer in range(topo.num_layers):
        matrices = operand_matrix()
        matrices.set_params(config, topo, None, layer)
        matrices.create_operand_matrices()
        ifmap, filters, ofmap = matrices.get_all_operand_matrix()
        compute = {"os": systolic_compute_os, "ws": systolic_compute_ws, "is": systolic_compute_is}[dataflow]()
        compute.set_params(config_obj=config, ifmap_op_mat=ifmap, filter_op_mat=filters, ofmap_op_mat=ofmap)
        compute.create_demand_matrices()
        name = topo.topo_arrays[layer][0].split("Channel_")[0]
        cycles[name] = cycles.get(name, 0) + compute.ofmap_demand_matrix.shape[0]
    return cycles


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
@pytest.mark.parametrize("rows,cols", [(8, 8), (4, 16)])
def test_conv_cycles_equal_scalesim(tmp_path, dataflow, rows, cols):
    pytest.importorskip("scalesim", reason="SCALE-Sim 3 not installed: pip install -e '.[oracle]'")
    path = tmp_path / "t.csv"
    path.write_text(SMALL)
    spec = systolic(rows, cols, dataflow)
    ours = {op.name: bind_op(op, spec, "t").compute_s for op in convert(path)}
    assert ours == scalesim_layer_cycles(path, rows, cols, dataflow)
