"""Hardware layer: device specifications (frozen dataclasses loaded from YAML),
the GPU kernel models (sim.hardware.gemm, sim.hardware.kernels) and the other
pure cost models (sim.hardware.cost) that turn an operator into time on a unit.

The spec names below load sim.hardware.specs (and pydantic) on first use
(PEP 562), so importing a light submodule such as sim.hardware.dtypes does not."""

from __future__ import annotations

import importlib

__all__ = [
    "DTYPE_BYTES", "DeviceSpec", "MemoryTierSpec", "PimSpec", "SmArraySpec",
    "SystolicArraySpec", "VectorUnitSpec", "load_device_spec", "device_catalog",
]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("sim.hardware.specs"), name)
    raise AttributeError(f"module 'sim.hardware' has no attribute {name!r}")
