"""Hardware layer: device specifications (frozen dataclasses loaded from YAML),
the GPU kernel models (sim.hardware.gemm, sim.hardware.kernels) and the other
pure cost models (sim.hardware.cost) that turn an operator into time on a unit."""

from sim.hardware.specs import (
    DTYPE_BYTES, DeviceSpec, MemoryTierSpec, PimSpec, SmArraySpec, SystolicArraySpec,
    VectorUnitSpec, load_device_spec, device_catalog,
)

__all__ = [
    "DTYPE_BYTES", "DeviceSpec", "MemoryTierSpec", "PimSpec", "SmArraySpec",
    "SystolicArraySpec", "VectorUnitSpec", "load_device_spec", "device_catalog",
]
