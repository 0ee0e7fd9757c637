"""GPU kernel models (sim/hardware/gemm.py, kernels.py) and the device specs behind them:
closed forms, derived peaks, what-ifs that must behave like hardware, and shape trends."""

import math
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

import sim
from conftest import ROOT, gpu_spec_dict
from sim.errors import AccsimError, SpecError
from sim.hardware import gemm
from sim.hardware.kernels import AttentionShape, Kernel, flash_attention_time, pointwise_time, sm_kernel_time
from sim.hardware.specs import DTYPE_BYTES, device_spec_from_dict, load_device_spec
from sim.parallel.expand import layer_segments
from sim.parallel.plan import ParallelPlan
from sim.workload.transformer import ModelConfig

GPUS = ("a100_sxm4_80gb", "h100_sxm5_80gb", "h200_sxm_141gb", "b200", "mi300x")


def accsim(*args):
    return subprocess.run([sys.executable, "-m", "sim", *args], cwd=ROOT, capture_output=True, text=True)


# ---------------------------------------------------------------- device specs


@pytest.mark.parametrize("device,dtype,datasheet", [
    ("a100_sxm4_80gb", "bf16", 312e12), ("a100_sxm4_80gb", "tf32", 156e12), ("a100_sxm4_80gb", "int8", 624e12),
    ("a100_sxm4_80gb", "fp64", 19.5e12),
    ("h100_sxm5_80gb", "bf16", 989.4e12), ("h100_sxm5_80gb", "fp8", 1978.9e12), ("h100_sxm5_80gb", "tf32", 494.7e12),
    ("h200_sxm_141gb", "bf16", 989.4e12), ("h200_sxm_141gb", "fp8", 1978.9e12),
    ("b200", "bf16", 2.25e15), ("b200", "fp8", 4.5e15),
    ("mi300x", "bf16", 1307.4e12), ("mi300x", "fp8", 2614.9e12),
])
def test_derived_peaks_equal_the_datasheet(device, dtype, datasheet):
    """SMs x FLOP per clock per SM x clock reproduces the vendor's dense peak within 1%."""
    spec = load_device_spec(device)
    assert spec.matrix_peak_flops_per_s(dtype) == pytest.approx(datasheet, rel=0.01)


def test_tpu_v4_is_a_whole_chip():
    """8 MXUs of 128 x 128 at 1.049 GHz: the 275 TFLOP/s of one TPU v4 chip."""
    assert load_device_spec("tpu_v4_like").matrix_peak_flops_per_s() == pytest.approx(275e12, rel=0.01)


def test_capacities_are_what_the_parts_expose():
    assert load_device_spec("a100_sxm4_80gb").tier("hbm").capacity_bytes == 85_100_068_864    # CUDA's total
    assert load_device_spec("h200_sxm_141gb").tier("hbm").capacity_bytes == 143771 * 2**20      # nvidia-smi


def test_every_shipped_spec_cites_no_file_outside_the_repository():
    for path in (ROOT / "topologies" / "devices").glob("*.yaml"):
        assert "shared/" not in path.read_text(), path.name


@pytest.mark.parametrize("edit,key", [
    ({"count": 0}, "sm_array.count"),
    ({"clock_hz": "fast"}, "sm_array.clock_hz"),
    ({"matrix_flops_per_clock_per_sm": {"bf17": 4}}, "sm_array.matrix_flops_per_clock_per_sm"),
    ({"launch_overhead_s": -1}, "sm_array.launch_overhead_s"),
    ({"tile_m": 128}, "sm_array"),
])
def test_spec_errors_are_one_line_naming_file_and_key(tmp_path, edit, key):
    import yaml
    raw = gpu_spec_dict()
    raw["sm_array"] = {**raw["sm_array"], **edit}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError) as info:
        load_device_spec(str(path))
    message = str(info.value)
    assert "\n" not in message and str(path) in message and key in message


# ---------------------------------------------------------------- GEMM closed forms


def toy(**sm):
    raw = gpu_spec_dict()
    raw["sm_array"] = {**raw["sm_array"], **sm}
    return device_spec_from_dict(raw)


def test_gemm_is_tile_and_wave_quantized_by_hand():
    """4 SMs of 1 TFLOP/s, 64 x 64 tiles: 256 x 256 = 16 tiles = 4 waves; 257 rows need 5 rows of
    tiles (20 tiles, 5 waves); each tile does 2 x 64 x 64 x K_q FLOPs, K_q = K rounded up to
    the 64-element step of 2-byte operands."""
    spec = toy()
    hbm = spec.tier("hbm").achievable_bandwidth_bytes_per_s
    plan = gemm.gemm_plan(256, 256, 512, spec.sm_array, hbm)
    assert (plan.tiles, plan.waves, plan.split_k) == (16, 4, 1)
    assert plan.seconds == pytest.approx(4 * 2 * 64 * 64 * 512 / 1e12)
    assert gemm.gemm_plan(257, 256, 512, spec.sm_array, hbm).seconds == pytest.approx(5 * 2 * 64 * 64 * 512 / 1e12)
    assert gemm.gemm_plan(256, 256, 500, spec.sm_array, hbm).seconds == pytest.approx(plan.seconds)


def test_gemm_memory_bound_by_hand():
    """A + B + C bytes over the achievable bandwidth when that exceeds the main loop, plus the launch."""
    spec = toy(launch_overhead_s=2e-6)
    hbm = spec.tier("hbm").achievable_bandwidth_bytes_per_s
    m, n, k = 64, 64, 2**20        # one tile, very deep: 2 x 64 x 64 x k FLOPs vs 2 x 64 x k x 2 bytes
    plan = gemm.gemm_plan(m, n, k, spec.sm_array, hbm)
    nbytes = 2 * (m * k + k * n + m * n)
    assert plan.hbm_bytes == nbytes
    assert plan.seconds == pytest.approx(2e-6 + max(2 * 64 * 64 * k / 1e12, nbytes / 1e12))


def test_split_k_pays_a_second_launch_and_the_partial_sums():
    spec = toy(launch_overhead_s=1e-6, max_split_k=16)
    p = gemm._candidate(64, 64, 8192, 1, gemm.precision("bf16"), spec.sm_array, 4, 1e12, 64, 64, 4)
    assert p.tiles == 4 and p.waves == 1
    assert p.fixed_s == 2e-6
    assert p.hbm_bytes == 2 * (64 * 8192 * 2) + 64 * 64 * 2 + 2 * 4 * 64 * 64 * 4
    assert p.compute_s == pytest.approx(2 * 64 * 64 * 2048 / 1e12)


def test_weight_only_int4_reads_half_a_byte_per_weight():
    assert DTYPE_BYTES["int4"] == 0.5
    spec = load_device_spec("h100_sxm5_80gb")
    hbm = spec.tier("hbm").achievable_bandwidth_bytes_per_s
    decode = {dtype: gemm.gemm_plan(16, 12288, 5376, spec.sm_array, hbm, dtype) for dtype in ("bf16", "w8a16", "w4a16")}
    weights = 12288 * 5376
    assert decode["w4a16"].hbm_bytes == pytest.approx(16 * 5376 * 2 + weights * 0.5 + 16 * 12288 * 2)
    assert decode["bf16"].seconds > decode["w8a16"].seconds > decode["w4a16"].seconds   # memory-bound decode


def test_a_tiny_gemm_is_bounded_by_the_launch_overhead():
    """One tile: the launch and that tile's prologue and epilogue, nearly nothing else."""
    r = sim.kernel("h100_sxm5_80gb", "gemm", m=16, n=16, k=16)
    sm = load_device_spec("h100_sxm5_80gb").sm_array
    fixed = sm.launch_overhead_s + sm.gemm_tile_overhead_clocks / sm.run_clock_hz
    assert r.bound == "latency" and r.seconds == pytest.approx(fixed, rel=0.05)


def test_each_wave_pays_the_tiles_prologue_and_epilogue_by_hand():
    """The 4-wave GEMM of the quantization test with 1,000 clocks per tile outside the main loop
    (at the toy's clock): 4 x (main loop of a tile + 1,000 / clock)."""
    spec = toy(gemm_tile_overhead_clocks=1000)
    sm = spec.sm_array
    plan = gemm.gemm_plan(256, 256, 512, sm, spec.tier("hbm").achievable_bandwidth_bytes_per_s)
    assert (plan.tiles, plan.waves) == (16, 4)
    assert plan.seconds == pytest.approx(4 * (2 * 64 * 64 * 512 / 1e12 + 1000 / sm.run_clock_hz))


def test_short_k_gemms_lose_more_to_the_tiles_prologue_and_epilogue():
    """A micro-batch's weight gradient (K = its 2,048 tokens) runs further below the large-GEMM rate
    than the same output with a deep K, as measured inside a GPT-3 layer on an H200 (kernels_h200)."""
    def tflops(k, overhead):
        return sim.kernel("h200_sxm_141gb", "gemm", {"sm_array": {"gemm_tile_overhead_clocks": overhead}},
                          m=6144, n=12288, k=k).flops_per_s
    shipped = load_device_spec("h200_sxm_141gb").sm_array.gemm_tile_overhead_clocks
    assert shipped > 0
    short_loss, deep_loss = (1 - tflops(k, shipped) / tflops(k, 0) for k in (2048, 16384))
    assert short_loss > 2 * deep_loss > 0


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 16384), n=st.integers(1, 16384), k=st.integers(1, 16384), extra=st.floats(1.0, 10000.0))
def test_a_longer_tile_prologue_and_epilogue_never_makes_a_gemm_faster(m, n, k, extra):
    base = load_device_spec("a100_sxm4_80gb").sm_array.gemm_tile_overhead_clocks
    before = sim.kernel("a100_sxm4_80gb", "gemm", m=m, n=n, k=k).seconds
    after = sim.kernel("a100_sxm4_80gb", "gemm", {"sm_array": {"gemm_tile_overhead_clocks": base + extra}},
                       m=m, n=n, k=k).seconds
    assert after >= before


@pytest.mark.parametrize("device", ["a100_sxm4_80gb", "h100_sxm5_80gb"])
def test_a_large_square_gemm_approaches_the_calibrated_throughput(device):
    spec = load_device_spec(device)
    r = sim.kernel(device, "gemm", m=16384, n=16384, k=16384)
    calibrated = spec.sm_array.efficiency("bf16") * spec.matrix_peak_flops_per_s("bf16")
    assert r.bound == "compute"
    assert 0.96 * calibrated <= r.flops_per_s <= calibrated


# ---------------------------------------------------------------- what-ifs behave like hardware


def test_more_sms_or_clock_make_a_compute_bound_gemm_faster():
    base = sim.kernel("a100_sxm4_80gb", "gemm", m=8192, n=8192, k=8192)
    more_sms = sim.kernel("a100_sxm4_80gb", "gemm", {"sm_array": {"count": 216}}, m=8192, n=8192, k=8192)
    faster = sim.kernel("a100_sxm4_80gb", "gemm", {"sm_array": {"clock_hz": 1.8e9}}, m=8192, n=8192, k=8192)
    assert more_sms.seconds < 0.55 * base.seconds
    assert faster.seconds < base.seconds * 1.41 / 1.8 * 1.01
    sustained = sim.kernel("a100_sxm4_80gb", "gemm", {"sm_array": {"sustained_clock_hz": 1.2e9}},
                           m=8192, n=8192, k=8192)
    assert sustained.seconds > base.seconds


def test_more_bandwidth_makes_a_memory_bound_kernel_faster():
    for op, args in (("pointwise", {"bytes": 2**30}), ("gemm", {"m": 16, "n": 12288, "k": 12288})):
        base = sim.kernel("h100_sxm5_80gb", op, **args)
        more = sim.kernel("h100_sxm5_80gb", op, {"memory": {"hbm": {"bandwidth_bytes_per_s": 6.7e12}}}, **args)
        assert base.bound == "memory" and more.seconds < 0.6 * base.seconds


@settings(max_examples=150, deadline=None)
@given(device=st.sampled_from(GPUS), m=st.integers(1, 20000), n=st.integers(1, 20000), k=st.integers(1, 20000),
       batch=st.integers(1, 8), dtype=st.sampled_from(["bf16", "fp8", "w4a16"]),
       knob=st.sampled_from(["count", "clock_hz", "bandwidth", "l2"]), factor=st.floats(1.0, 3.0))
def test_more_of_any_resource_never_makes_a_gemm_slower(device, m, n, k, batch, dtype, knob, factor):
    spec = load_device_spec(device)
    if dtype == "fp8" and "fp8" not in spec.sm_array.matrix_flops_per_clock_per_sm:
        dtype = "bf16"
    sm = spec.sm_array
    over = {"count": {"sm_array": {"count": math.ceil(sm.count * factor)}},
            "clock_hz": {"sm_array": {"clock_hz": sm.clock_hz * factor}},
            "bandwidth": {"memory": {"hbm": {"bandwidth_bytes_per_s": spec.tier("hbm").bandwidth_bytes_per_s * factor}}},
            "l2": {"sm_array": {"l2_bytes": int((sm.l2_bytes or 2**20) * factor)}}}[knob]
    before = sim.kernel(device, "gemm", m=m, n=n, k=k, batch=batch, dtype=dtype).seconds
    after = sim.kernel(device, "gemm", over, m=m, n=n, k=k, batch=batch, dtype=dtype).seconds
    assert after <= before * (1 + 1e-12)


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 8192), n=st.integers(1, 8192), k=st.integers(1, 8192), granted=st.integers(1, 107))
def test_a_gemm_granted_fewer_sms_is_never_faster(m, n, k, granted):
    spec = load_device_spec("a100_sxm4_80gb")
    kernel = Kernel("g", "gemm", 2.0 * m * n * k, 0, 0, "bf16", m, n, k)
    assert sm_kernel_time(kernel, spec, sms=granted).seconds >= sm_kernel_time(kernel, spec, sms=granted + 1).seconds


@settings(max_examples=60, deadline=None)
@given(batch=st.integers(1, 8), heads=st.sampled_from([8, 16, 32]), seq=st.integers(64, 8192),
       head_dim=st.sampled_from([64, 128]), causal=st.booleans(), backward=st.booleans(),
       knob=st.sampled_from(["count", "clock_hz", "bandwidth"]))
def test_more_of_any_resource_never_makes_attention_slower(batch, heads, seq, head_dim, causal, backward, knob):
    over = {"count": {"sm_array": {"count": 216}}, "clock_hz": {"sm_array": {"clock_hz": 2e9}},
            "bandwidth": {"memory": {"hbm": {"bandwidth_bytes_per_s": 4e12}}}}[knob]
    args = dict(batch=batch, heads=heads, seq=seq, head_dim=head_dim, causal=causal, backward=backward)
    assert sim.kernel("a100_sxm4_80gb", "attention", over, **args).seconds <= \
        sim.kernel("a100_sxm4_80gb", "attention", **args).seconds


# ---------------------------------------------------------------- attention and memory-bound closed forms


def test_flash_attention_forward_by_hand():
    """Toy GPU (4 SMs, 1 TFLOP/s each, 1 exp per ns per SM without an SFU figure: fp32 vector
    100/clk / 2 = 50 per clock x 1 GHz): non-causal b1 h4 s256 d64 forward = 4 heads x 2 blocks of
    128 rows = 8 blocks, 2 waves; a block: 128 x 256 x (4 x 64 FLOPs / 1e12 + 1 / 5e10) s."""
    spec = toy(vector_flops_per_clock_per_sm={"fp32": 100, "bf16": 100})
    shape = AttentionShape(1, 4, 4, 256, 256, 64, causal=False)
    t = flash_attention_time(shape, spec.sm_array, 1e12)
    block = 128 * 256 * (4 * 64 / 1e12 + 1 / 5e10)
    assert (t.tiles, t.waves) == (8, 2)
    assert t.compute_s == pytest.approx(2 * block)
    assert t.flops == 4 * 4 * 256 * 256 * 64
    assert t.hbm_bytes == 2 * (2 * 4 * 256 * 64 + 2 * 4 * 256 * 64) + 4 * 4 * 256


def test_causal_masking_halves_the_flops_and_about_halves_the_time():
    full = sim.kernel("a100_sxm4_80gb", "attention", batch=4, heads=16, seq=8192, head_dim=128, causal=False)
    causal = sim.kernel("a100_sxm4_80gb", "attention", batch=4, heads=16, seq=8192, head_dim=128)
    assert causal.flops == full.flops / 2
    assert causal.seconds == pytest.approx(full.seconds / 2, rel=0.02)


def test_grouped_query_attention_reads_fewer_kv_bytes():
    mha = AttentionShape(2, 32, 32, 4096, 4096, 128).hbm_bytes(2)
    gqa = AttentionShape(2, 32, 8, 4096, 4096, 128).hbm_bytes(2)
    mqa = AttentionShape(2, 32, 1, 4096, 4096, 128).hbm_bytes(2)
    kv = 2 * 2 * 4096 * 128 * 2      # K and V of one head, both sequences, 2 bytes
    assert mha - gqa == pytest.approx(24 * kv) and gqa - mqa == pytest.approx(7 * kv)


def test_pointwise_kernel_is_launch_plus_roofline_at_the_achievable_bandwidth():
    spec = toy(launch_overhead_s=3e-6)
    t = pointwise_time(1e6, 3e9, spec.sm_array, 0.8e12)
    assert t.seconds == pytest.approx(3e-6 + 3e9 / 0.8e12) and t.bound == "memory"
    t = pointwise_time(4e12, 1e3, spec.sm_array, 1e12)
    assert t.seconds == pytest.approx(3e-6 + 4e12 / 4e11) and t.bound == "compute"


def test_each_distinct_shape_is_priced_once():
    spec = load_device_spec("h100_sxm5_80gb")
    kernel = Kernel("g", "gemm", 0.0, 0, 0, "bf16", 4096, 4096, 4096)
    first = sm_kernel_time(kernel, spec)
    size = len(spec.kernel_cache)
    assert sm_kernel_time(Kernel("other name", "gemm", 0.0, 0, 0, "bf16", 4096, 4096, 4096), spec) is first
    assert len(spec.kernel_cache) == size


# ---------------------------------------------------------------- trends of a training layer


def layer_tflops(cfg: ModelConfig, plan: ParallelPlan, device="a100_sxm4_80gb") -> float:
    """Per-GPU throughput of one layer's forward and backward (no recomputation)."""
    segments = layer_segments(cfg, plan, load_device_spec(device))
    parts = [segments[k] for k in ("fwd.attn", "fwd.mlp", "bwd.mlp.dgrad", "bwd.mlp.wgrad", "bwd.attn.dgrad",
                                   "bwd.attn.wgrad")]
    return sum(p.matrix_flops for p in parts) / sum(p.duration_s for p in parts) / 1e12


def gpt(hidden=4096, seq=2048, **kw):
    return ModelConfig("m", layers=8, hidden=hidden, heads=hidden // 128, seq_len=seq, vocab=0, **kw)


def test_throughput_rises_with_micro_batch_size():
    rates = [layer_tflops(gpt(), ParallelPlan(tp=8, microbatch_size=b)) for b in (1, 2, 4, 8)]
    assert rates == sorted(rates) and rates[-1] > 1.1 * rates[0]


def test_throughput_rises_with_hidden_size():
    rates = [layer_tflops(gpt(hidden=h), ParallelPlan(tp=8)) for h in (1024, 2048, 4096, 8192, 12288)]
    assert rates == sorted(rates) and rates[-1] > 1.5 * rates[0]


def test_throughput_rises_with_sequence_length():
    rates = [layer_tflops(gpt(hidden=2048, seq=s), ParallelPlan(tp=8)) for s in (256, 512, 1024, 2048)]
    assert rates == sorted(rates)


def test_per_gpu_throughput_falls_as_tensor_parallelism_splits_the_gemms():
    rates = [layer_tflops(gpt(hidden=4096), ParallelPlan(tp=t)) for t in (1, 2, 4, 8)]
    assert rates == sorted(rates, reverse=True) and rates[0] > 1.1 * rates[-1]


def test_h100_is_faster_than_a100_and_fp8_faster_than_bf16_on_large_layers():
    plan = ParallelPlan(tp=8, microbatch_size=2)
    a100 = layer_tflops(gpt(hidden=8192), plan)
    h100 = layer_tflops(gpt(hidden=8192), plan, "h100_sxm5_80gb")
    fp8 = layer_tflops(gpt(hidden=8192, dtype="fp8"), plan, "h100_sxm5_80gb")
    assert h100 > 2.5 * a100 and fp8 > 1.2 * h100


def test_fused_kernels_and_flash_attention_make_a_layer_faster():
    plan = ParallelPlan(tp=8)
    time = lambda cfg: sum(s.duration_s for s in layer_segments(cfg, plan, load_device_spec("a100_sxm4_80gb")).values())
    base = dict(hidden=4096, seq=4096, dropout=0.1)
    assert time(gpt(**base, fused_kernels=False)) > time(gpt(**base))
    assert time(gpt(**base, attention="materialized")) > time(gpt(**base))
    assert "recompute.core" not in layer_segments(gpt(**base), plan, load_device_spec("a100_sxm4_80gb"))


# ---------------------------------------------------------------- fp8 end to end, CLI and API


def test_fp8_training_runs_on_h100_and_is_faster_than_bf16():
    raw = {"cluster": "dgx_h100",
           "model": {"layers": 8, "hidden": 8192, "heads": 64, "seq_len": 4096, "vocab": 32000},
           "parallel": {"tp": 8, "microbatches": 2, "recompute": "selective"}}
    bf16 = sim.run(raw).summary
    fp8 = sim.run(raw, ["model.dtype=fp8"]).summary
    assert fp8["iteration_time_s"] < 0.9 * bf16["iteration_time_s"]


def test_fp8_on_a100_is_a_one_line_error():
    raw = {"cluster": "dgx_a100", "model": {"layers": 8, "hidden": 1024, "heads": 8, "seq_len": 512, "vocab": 0},
           "parallel": {"tp": 8}}
    with pytest.raises(AccsimError, match="fp8"):
        sim.run(raw, ["model.dtype=fp8"])


def test_kernel_command_prints_time_throughput_bound_and_tile():
    proc = accsim("kernel", "--device", "h100_sxm5_80gb", "--m", "4096", "--n", "4096", "--k", "4096")
    assert proc.returncode == 0, proc.stderr
    assert "TFLOP/s" in proc.stdout and "compute" in proc.stdout and "256x128" in proc.stdout
    sm = load_device_spec("h100_sxm5_80gb").sm_array      # 512 tiles of 256x128 on 132 SMs: 4 waves
    overhead = 4 * sm.gemm_tile_overhead_clocks / sm.run_clock_hz
    assert f"tile prologues and epilogues {overhead * 1e6:.4g} us over 4 waves" in proc.stdout
    proc = accsim("kernel", "--device", "a100_sxm4_80gb", "--n", "12288", "--k", "12288", "--sweep", "--json")
    import json
    rows = json.loads(proc.stdout)
    assert len(rows) > 5 and [r["shape"].split("x")[0] for r in rows][:2] == ["128", "256"]
    assert all(0 < r["tile_overhead_s"] < r["seconds"] for r in rows)


@pytest.mark.parametrize("args,expect", [
    (("--device", "h100_sxm5_80gb", "--m", "0", "--n", "1", "--k", "1"), "m"),
    (("--device", "h100_sxm5_80gb", "--m", "5"), "--n"),
    (("--device", "a100_sxm4_80gb", "--m", "5", "--n", "5", "--k", "5", "--dtype", "fp8"), "fp8"),
    (("--device", "nope", "--m", "5", "--n", "5", "--k", "5"), "nope"),
    (("--device", "npu_pim", "--m", "5", "--n", "5", "--k", "5"), "sm_array"),
    (("--device", "h100_sxm5_80gb", "--op", "conv", "--m", "5"), "op"),
    (("--device", "h100_sxm5_80gb", "--m", "8", "--n", "8", "--k", "8", "--set", "sm_array.count=-1"), "count"),
])
def test_kernel_command_bad_input_is_one_line_and_exit_2(args, expect):
    proc = accsim("kernel", *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and expect in proc.stderr


def test_a_spec_file_may_carry_an_energy_section():
    """The energy figures (sim.energy.model.EnergySpec) are part of the device schema."""
    spec = device_spec_from_dict(gpu_spec_dict(energy={"flop_pj": {"sm_array": {"bf16": 0.5}},
                                                       "byte_pj": {"hbm": 40}}), "gpu.yaml")
    assert spec.energy.e_flop_pj("sm_array", "bf16") == 0.5
    with pytest.raises(SpecError, match=r"gpu.yaml: energy.byte_pj.hbm"):
        device_spec_from_dict(gpu_spec_dict(energy={"byte_pj": {"hbm": -1}}), "gpu.yaml")
