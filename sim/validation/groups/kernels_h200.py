"""H200-SXM kernels and power measured by accsim's developers (benchmarks/device/measure_gpu.py).

The figures are copied from benchmarks/device/h200_2026-11-30.json (one H200 SXM, 700 W, PyTorch
2.11 + CUDA 13.0, driver 580.159.04, 2026-11-30): CUPTI kernel durations (launch gaps excluded),
mean of 20 calls over inputs rotated so that they do not stay in L2, random normal data.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from sim.validation import Group, Point
from sim.validation.groups._kernel_points import calibration_points, gemm_point

DEVICE = "h200_sxm_141gb"
MEASURED = ("accsim developers, benchmarks/device/measure_gpu.py on one H200 SXM (PyTorch 2.11 + CUDA 13.0; "
            "raw figures: benchmarks/device/h200_2026-11-30.json)")

# bf16 GEMMs (batch, m, n, k) -> seconds, measured in bursts of 20 calls (cuBLAS via torch.matmul);
# the tags are the measurement script's
GEMM_BF16_S = {
    (1, 1024, 1024, 1024): 6.30e-6,  # square
    (1, 1536, 1536, 1536): 12.97e-6,  # square
    (1, 2048, 2048, 2048): 25.84e-6,  # square
    (1, 3072, 3072, 3072): 74.48e-6,  # square
    (1, 4096, 4096, 4096): 170.09e-6,  # square
    (1, 6144, 6144, 6144): 575.84e-6,  # square
    (1, 8192, 8192, 8192): 1384.29e-6,  # square
    (1, 2048, 4608, 12288): 340.82e-6,  # gpt175b_tp8_mbs1_qkv
    (1, 2048, 12288, 1536): 127.75e-6,  # gpt175b_tp8_mbs1_proj
    (1, 2048, 6144, 12288): 449.79e-6,  # gpt175b_tp8_mbs1_fc1
    (1, 2048, 12288, 6144): 455.13e-6,  # gpt175b_tp8_mbs1_fc2
    (1, 2048, 12288, 4608): 327.15e-6,  # gpt175b_tp8_mbs1_qkv_dgrad
    (1, 2048, 1536, 12288): 98.19e-6,  # gpt175b_tp8_mbs1_proj_dgrad
    (1, 4608, 12288, 2048): 296.57e-6,  # gpt175b_tp8_mbs1_qkv_wgrad
    (1, 12288, 1536, 2048): 99.87e-6,  # gpt175b_tp8_mbs1_proj_wgrad
    (1, 6144, 12288, 2048): 395.90e-6,  # gpt175b_tp8_mbs1_fc1_wgrad
    (1, 12288, 6144, 2048): 395.18e-6,  # gpt175b_tp8_mbs1_fc2_wgrad
    (1, 8192, 4608, 12288): 1171.03e-6,  # gpt175b_tp8_mbs4_qkv
    (1, 8192, 12288, 1536): 438.53e-6,  # gpt175b_tp8_mbs4_proj
    (1, 8192, 6144, 12288): 1590.47e-6,  # gpt175b_tp8_mbs4_fc1
    (1, 8192, 12288, 6144): 1604.88e-6,  # gpt175b_tp8_mbs4_fc2
    (1, 8192, 12288, 4608): 1254.00e-6,  # gpt175b_tp8_mbs4_qkv_dgrad
    (1, 8192, 1536, 12288): 421.89e-6,  # gpt175b_tp8_mbs4_proj_dgrad
    (1, 4608, 12288, 8192): 1246.94e-6,  # gpt175b_tp8_mbs4_qkv_wgrad
    (1, 12288, 1536, 8192): 438.41e-6,  # gpt175b_tp8_mbs4_proj_wgrad
    (1, 6144, 12288, 8192): 1652.04e-6,  # gpt175b_tp8_mbs4_fc1_wgrad
    (1, 12288, 6144, 8192): 1670.04e-6,  # gpt175b_tp8_mbs4_fc2_wgrad
    (1, 2048, 2304, 6144): 85.22e-6,  # gpt22b_tp8_mbs1_qkv
    (1, 2048, 6144, 768): 35.69e-6,  # gpt22b_tp8_mbs1_proj
    (1, 2048, 3072, 6144): 102.40e-6,  # gpt22b_tp8_mbs1_fc1
    (1, 2048, 6144, 3072): 99.45e-6,  # gpt22b_tp8_mbs1_fc2
    (1, 2048, 6144, 2304): 76.31e-6,  # gpt22b_tp8_mbs1_qkv_dgrad
    (1, 2048, 768, 6144): 27.13e-6,  # gpt22b_tp8_mbs1_proj_dgrad
    (1, 2304, 6144, 2048): 77.30e-6,  # gpt22b_tp8_mbs1_qkv_wgrad
    (1, 6144, 768, 2048): 26.71e-6,  # gpt22b_tp8_mbs1_proj_wgrad
    (1, 3072, 6144, 2048): 99.75e-6,  # gpt22b_tp8_mbs1_fc1_wgrad
    (1, 6144, 3072, 2048): 99.54e-6,  # gpt22b_tp8_mbs1_fc2_wgrad
    (12, 2048, 2048, 128): 35.26e-6,  # bmm_scores_b12
    (12, 2048, 128, 2048): 31.93e-6,  # bmm_values_b12
    (48, 2048, 2048, 128): 124.77e-6,  # bmm_scores_b48
    (48, 2048, 128, 2048): 116.23e-6,  # bmm_values_b48
    (1, 8, 8192, 8192): 33.12e-6,  # decode_m8
    (1, 256, 8192, 8192): 48.14e-6,  # decode_m256
    (1, 802816, 192, 768): 405.50e-6,  # skinny
}
# long GEMMs: 23 calls of 5-13 ms back to back, during which the board power limit lowers the clock
GEMM_BF16_LONG_S = {(1, 12288, 12288, 12288): 5216.94e-6, (1, 16384, 16384, 16384): 12567.22e-6}
GEMM_FP8_S = {   # e4m3 inputs, bf16 output (torch._scaled_mm)
    (1, 1024, 1024, 1024): 5.34e-6,
    (1, 2048, 2048, 2048): 15.39e-6,
    (1, 4096, 4096, 4096): 98.51e-6,
    (1, 8192, 8192, 8192): 747.71e-6,
    (1, 2048, 4608, 12288): 184.85e-6,
    (1, 2048, 12288, 6144): 255.51e-6,
    (1, 8192, 6144, 12288): 870.82e-6,
}

# memory-bound kernels: (name, elements, bytes read + written, kind of work for the spec's
# sm_array.instructions_per_element or "" (bandwidth-bound), seconds, role)
ELEMENTS = 8192 * 12288
POINTWISE = (
    ("LayerNorm forward 8192x12288", ELEMENTS, 4 * ELEMENTS, "norm", 180.7e-6, "calibration"),
    ("LayerNorm backward 8192x12288", ELEMENTS, 6 * ELEMENTS, "norm_backward", 375.4e-6, "calibration"),
    ("dropout forward 8192x12288", ELEMENTS, 5 * ELEMENTS, "dropout", 167.6e-6, "calibration"),
    ("GeLU (tanh) forward 8192x12288", ELEMENTS, 4 * ELEMENTS, "gelu", 114.8e-6, "calibration"),
    ("GeLU (tanh) backward 8192x12288", ELEMENTS, 6 * ELEMENTS, "gelu_backward", 152.2e-6, "calibration"),
    ("softmax forward 96k rows of 2048", 48 * 2048 * 2048, 4 * 48 * 2048 * 2048, "softmax", 437.8e-6, "calibration"),
    ("LayerNorm forward 2048x12288", 2048 * 12288, 4 * 2048 * 12288, "norm", 49.6e-6, "check"),
    ("LayerNorm forward 8192x6144", 8192 * 6144, 4 * 8192 * 6144, "norm", 81.6e-6, "check"),
    ("LayerNorm backward 8192x6144", 8192 * 6144, 6 * 8192 * 6144, "norm_backward", 202.4e-6, "check"),
    ("dropout forward 2048x12288", 2048 * 12288, 5 * 2048 * 12288, "dropout", 44.0e-6, "check"),
    ("GeLU (tanh) forward 8192x6144", 8192 * 6144, 4 * 8192 * 6144, "gelu", 58.3e-6, "check"),
    ("softmax forward 24k rows of 2048", 12 * 2048 * 2048, 4 * 12 * 2048 * 2048, "softmax", 113.8e-6, "check"),
    ("residual add 8192x12288", ELEMENTS, 6 * ELEMENTS, "", 137.9e-6, "check"),
    ("copy 8192x12288", ELEMENTS, 4 * ELEMENTS, "", 96.3e-6, "check"),
    ("fused AdamW, 256M fp32 parameters", 256 << 20, 28 * (256 << 20), "", 2127.7e-6, "check"),
)

# GEMMs inside a whole layer: one tensor-parallel rank (TP 8, sequence 2048, dropout 0.1) of a GPT
# layer run forward and backward by PyTorch eager, profiled with CUPTI ('layers' in the raw JSON): the
# summed durations of the layer's cuBLAS kernels (named nvjet_*: the linear layers' forward, input- and
# weight-gradient GEMMs, and with materialized attention the six batched score and value GEMMs), in
# the layouts a layer uses (weights transposed, bias epilogues) and at the clock the board held
# through the mix of kernels (median 1800-1875 MHz against 1980 in bursts).
# (model, hidden, heads, micro-batch, attention, GEMM kernels, seconds)
LAYER_GEMMS = (
    ("GPT-3 175B", 12288, 96, 1, "materialized", 18, 3814.2e-6),
    ("GPT-3 175B", 12288, 96, 1, "flash", 12, 3733.0e-6),
    ("GPT-3 175B", 12288, 96, 2, "flash", 12, 7442.2e-6),
    ("GPT 22B", 6144, 64, 4, "materialized", 18, 3970.2e-6),
    ("GPT 22B", 6144, 64, 4, "flash", 12, 3617.2e-6),
    ("GPT 22B", 6144, 64, 1, "flash", 12, 925.8e-6),
)


# (spec key set, (batch, m, n, k), dtype, TFLOP/s, source): sim.validation.calibrate. The fc2
# weight-gradient GEMM of the GPT-3 175B layer above (micro-batch 1: K = 2048 tokens; 416.1 us in
# the layer's profile): a short main loop per tile, so the tiles' prologue and epilogue show.
IN_LAYER = MEASURED + ", inside a whole GPT-3 175B layer ('layers' in the raw JSON)"
CALIBRATION = (("sm_array.gemm_tile_overhead_clocks", (1, 6144, 12288, 2048), "bf16",
                2.0 * 6144 * 12288 * 2048 / 416.1e-6 / 1e12, IN_LAYER),)


def layer_gemm_kernels(hidden: int, heads: int, microbatch: int, attention: str) -> list:
    """The GEMM kernels of one TP-8 rank's layer, forward and backward (no recomputation)."""
    from sim.workload.layer_kernels import layer_kernels
    from sim.workload.transformer import ModelConfig
    cfg = ModelConfig(name="layer", layers=1, hidden=hidden, heads=heads, seq_len=2048, vocab=0, dtype="bf16",
                      attention=attention, dropout=0.1)
    phases = layer_kernels(cfg, microbatch, 8, False)
    return [k for phase, kernels in phases.items() if phase.startswith(("fwd.", "bwd."))
            for k in kernels if k.kind == "gemm"]


def layer_gemm_us(hidden: int, heads: int, microbatch: int, attention: str) -> float:
    """The model's summed time (us) of those GEMMs on the H200, each priced alone."""
    from sim.hardware.kernels import sm_kernel_time
    from sim.hardware.specs import load_device_spec
    spec = load_device_spec(DEVICE)
    return sum(sm_kernel_time(k, spec).seconds for k in layer_gemm_kernels(hidden, heads, microbatch, attention)) * 1e6


def _layer_point(model, hidden, heads, microbatch, attention, count, seconds) -> Point:
    command = ("python -c \"from sim.validation.groups import kernels_h200 as k; "
               f"print(k.layer_gemm_us({hidden}, {heads}, {microbatch}, '{attention}'))\"")
    return Point(f"H200 {model} layer, TP 8, micro-batch {microbatch}, {attention} attention: its {count} GEMMs",
                 seconds * 1e6, "us", MEASURED, "check",
                 lambda: layer_gemm_us(hidden, heads, microbatch, attention), command,
                 "summed kernel times inside a whole layer, forward and backward")


# sustained: 6 s of back-to-back calls, nvidia-smi power and clock (median of the last 4 s)
SUSTAINED_BF16_TFLOPS, SUSTAINED_FP8_TFLOPS = 667.0, 1210.0
COPY_TB_S, COPY_POWER_W = 4.25, 572.0


def _gemm_points() -> tuple[Point, ...]:
    out = []
    for dtype, table in (("bf16", GEMM_BF16_S), ("fp8", GEMM_FP8_S)):
        for (b, m, n, k), seconds in table.items():
            out.append(gemm_point(DEVICE, (b, m, n, k), dtype, 2.0 * b * m * n * k / seconds / 1e12, MEASURED))
    for (b, m, n, k), seconds in GEMM_BF16_LONG_S.items():
        out.append(gemm_point(DEVICE, (b, m, n, k), "bf16", 2.0 * b * m * n * k / seconds / 1e12, MEASURED,
                              note="power-limited: accsim kernel prices a burst at the full clock"))
    return tuple(out)


def _pointwise_point(name, elements, nbytes, work, seconds, role) -> Point:
    from sim.hardware.specs import load_device_spec
    per_element = load_device_spec(DEVICE).sm_array.instructions_per_element.get(work, 0.0) if work else 0.0
    instructions = per_element * elements

    def predict() -> float:
        from sim.hardware.kernels import Kernel, sm_kernel_time
        spec = load_device_spec(DEVICE)
        kernel = Kernel(name, "pointwise", 0.0, nbytes / 2, nbytes / 2, "bf16", work=work, elements=elements)
        return sm_kernel_time(kernel, spec).seconds * 1e6

    note = f"{work}: {per_element} instructions per element" if work else "bandwidth-bound (no instruction count)"
    if role == "calibration":
        note = "sets sm_array.instructions_per_element." + note
    command = f"accsim kernel --device {DEVICE} --op pointwise --bytes {nbytes}" + \
        (f" --instructions {instructions:.6g}" if work else "")
    return Point(f"H200 {name}", seconds * 1e6, "us", MEASURED, role, predict, command, note)


def _sustained_run(ops: list) -> dict:
    """Simulate back-to-back ops on one H200 (the governor applies) and return the summary."""
    import sim
    from sim.workload.trace import write_trace
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.jsonl"
        write_trace(ops, path)
        return sim.run({"device": DEVICE, "trace": str(path)}).summary


def _gemms(dtype: str, count: int = 40) -> list:
    from sim.workload.trace import Op
    m = 8192
    width = 1 if dtype == "fp8" else 2
    return [Op(id=i, name=f"gemm{i}", op="gemm", m=m, n=m, k=m, flops=2.0 * m ** 3,
               bytes_read=2.0 * width * m * m, bytes_written=2.0 * m * m, dtype=dtype,
               deps=(i - 1,) if i else ()) for i in range(count)]


def _copies(count: int = 40) -> list:
    from sim.workload.trace import Op
    n = 1 << 30
    return [Op(id=i, name=f"copy{i}", op="elementwise", flops=0.0, bytes_read=float(2 * n), bytes_written=float(2 * n),
               deps=(i - 1,) if i else ()) for i in range(count)]


def _sustained_tflops(dtype: str) -> float:
    summary = _sustained_run(_gemms(dtype))
    return 40 * 2.0 * 8192 ** 3 / summary["makespan_s"] / 1e12


def _copy_summary() -> dict:
    return _sustained_run(_copies())


def _power_points() -> tuple[Point, ...]:
    note = "40 chained 8192^3 GEMMs simulated on one H200: the power governor (sim.energy.governor) " \
           "lowers the clock until static + dynamic power is 700 W"
    command = "python -c \"from sim.validation.groups import kernels_h200 as k; print(k._sustained_tflops('{}'))\""
    return (
        Point("H200 bf16 8192^3, sustained (power-limited)", SUSTAINED_BF16_TFLOPS, "TFLOP/s", MEASURED, "calibration",
              lambda: _sustained_tflops("bf16"), command.format("bf16"), "sets flop_pj.sm_array.bf16; " + note),
        Point("H200 fp8 8192^3, sustained (power-limited)", SUSTAINED_FP8_TFLOPS, "TFLOP/s", MEASURED, "calibration",
              lambda: _sustained_tflops("fp8"), command.format("fp8"), "sets flop_pj.sm_array.fp8; " + note),
        Point("H200 copy, sustained: board power", COPY_POWER_W, "W", MEASURED, "calibration",
              lambda: _copy_summary()["energy"]["average_power_w"],
              "python -c \"from sim.validation.groups import kernels_h200 as k; print(k._copy_summary()['energy'])\"",
              "sets byte_pj.hbm (static_w: the idle board, 127 W)"),
        Point("H200 copy, sustained: bandwidth", COPY_TB_S, "TB/s", MEASURED, "check",
              lambda: 40 * 4.0 * (1 << 30) / _copy_summary()["makespan_s"] / 1e12,
              "python -c \"from sim.validation.groups import kernels_h200 as k; print(k._copy_summary()['makespan_s'])\"",
              "memory-bound work is not throttled: its clock is not its limit"),
    )


def group() -> Group:
    points = (*(dataclasses.replace(p, name=p.name + " inside a layer (fc2 weight gradient)")
                for p in calibration_points(DEVICE, CALIBRATION)),
              *_gemm_points(),
              *(_pointwise_point(*row) for row in POINTWISE),
              *(_layer_point(*row) for row in LAYER_GEMMS),
              *_power_points())
    return Group(
        name="kernels_h200",
        title="Kernels and power measured on an H200 SXM",
        description=(
            "Measured here (benchmarks/device/measure_gpu.py; the raw JSON is in benchmarks/device/): single "
            "GEMMs in bursts of 20 calls, memory-bound kernels of PyTorch, and 6 s of back-to-back work with "
            "the board's power and clock sampled, and the GEMMs of whole GPT layers (one tensor-parallel rank, forward and backward, profiled inside the layer). GEMM points only check the model: the H200 spec's GEMM "
            "figures are the H100's, calibrated from other sources (group gemm_h100). The memory-bound "
            "points calibrate the instructions per element of norms, softmax, dropout and GeLU "
            "(sm_array.instructions_per_element; priced at the SMs' issue rate, 128 thread instructions per "
            "clock per SM); the other shapes check them. The sustained points calibrate the energy "
            "figures (topologies/devices/h200_sxm_141gb.yaml) through the power governor. Left out: a "
            "1024x2145x1024 GEMM (N not a multiple of 8) ran an unaligned kernel 5x slower than the model "
            "(62.6 us against 12.2); the model has no alignment penalty. FlashAttention-2 as PyTorch ships "
            "it (raw JSON) runs 2-3x slower than the model's FlashAttention-3-class kernel on Hopper. "
            "Tolerance: 15% on average, 50% at worst, as the other GEMM groups."),
        points=points, mape_tolerance=0.15, max_tolerance=0.50)
