"""The shipped traces are what the generator computes from their model configs,
and the generator's GEMM FLOPs equal Megatron-LM's per-layer closed form."""

import importlib.util

import pytest

from sim.workload.trace import load_trace
from sim.workload.transformer import ModelConfig, matrix_flops, training_ops

from conftest import ROOT


def load_make_traces():
    spec = importlib.util.spec_from_file_location("make_traces", ROOT / "scenarios" / "make_traces.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("suffix", [".jsonl", ".arrow"])
def test_committed_traces_equal_the_generator(suffix):
    for stem, ops in load_make_traces().build().items():
        assert load_trace(ROOT / "traces" / f"{stem}{suffix}").ops == tuple(ops)


@pytest.mark.parametrize("recompute,passes", [("none", 3), ("full", 4)])
def test_layer_gemm_flops_match_megatron(recompute, passes):
    """Narayanan et al. SC'21 Eq. 3: per layer, forward 24*b*s*h^2 + 4*b*s^2*h FLOPs;
    backward twice that; full recomputation adds one more forward."""
    cfg = ModelConfig("gpt", layers=3, hidden=2560, heads=32, seq_len=2048, vocab=50257)
    b, s, h, l = 2, cfg.seq_len, cfg.hidden, cfg.layers
    ops = training_ops(cfg, microbatch=b, recompute=recompute)
    assert matrix_flops(ops) == pytest.approx(passes * l * (24 * b * s * h * h + 4 * b * s * s * h), rel=1e-12)
