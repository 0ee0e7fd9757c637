"""Shared helpers: small device specs and traces built in code."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def gpu_spec_dict(**over) -> dict:
    """A toy GPU: 4 SMs of 1 TFLOP/s matrix (1000 FLOP per clock at 1 GHz), 0.1 TFLOP/s
    vector; 1 TB/s HBM; one 64 x 64 GEMM tile, no split-K, no launch overhead, so GEMM
    times are the tile- and wave-quantized closed form."""
    spec = {
        "name": "toy-gpu", "default_tier": "hbm",
        "sm_array": {"count": 4, "clock_hz": 1e9, "matrix_flops_per_clock_per_sm": {"bf16": 1000},
                     "vector_flops_per_clock_per_sm": {"bf16": 100}, "gemm_tiles": [[64, 64]],
                     "max_split_k": 1},
        "memory": [{"name": "hbm", "kind": "hbm", "capacity_bytes": 1e9,
                    "bandwidth_bytes_per_s": 1e12},
                   {"name": "host", "kind": "host", "capacity_bytes": 1e10,
                    "bandwidth_bytes_per_s": 1e11}],
    }
    spec.update(over)
    return spec


def npu_spec_dict(mode: str = "blocked") -> dict:
    return {
        "name": "toy-npu", "default_tier": "hbm",
        "systolic_array": {"rows": 8, "cols": 8, "count": 2, "clock_hz": 1e9, "dataflow": "ws"},
        "vector": {"lanes": 100, "clock_hz": 1e9, "flops_per_lane_per_clock": {"bf16": 1}},
        "pim": {"banks": 4, "bank_bandwidth_bytes_per_s": 1e10, "bank_flops_per_s": 1e10,
                "tier": "hbm", "mode": mode},
        "memory": [{"name": "sram", "kind": "scratchpad", "capacity_bytes": 1e6,
                    "bandwidth_bytes_per_s": 1e12},
                   {"name": "hbm", "kind": "hbm", "capacity_bytes": 1e9,
                    "bandwidth_bytes_per_s": 1e11}],
    }


@pytest.fixture
def root() -> Path:
    return ROOT
