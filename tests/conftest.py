"""Shared helpers: small device specs and traces built in code."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def gpu_spec_dict(**over) -> dict:
    """A toy GPU: 4 SMs of 1 TFLOP/s matrix, 0.1 TFLOP/s vector; 1 TB/s HBM."""
    spec = {
        "name": "toy-gpu", "default_tier": "hbm",
        "sm_array": {"count": 4, "matrix_flops_per_s": {"bf16": 4e12},
                     "vector_flops_per_s": {"bf16": 4e11}, "tile_m": 64, "tile_n": 64},
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
        "vector": {"flops_per_s": {"bf16": 1e11}},
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
