"""Data types: bytes per element, the tensor-core rate each runs at, their names.

Kept apart from the device specs (sim/hardware/specs.py, pydantic models) so
that modules needing only dtype sizes (energy figures, link specs on the
``accsim collective`` path) load none of those models.
"""

from __future__ import annotations

from typing import Literal, Mapping

# Bytes per element. int4 is half a byte: sizes are floats (a tensor of n int4
# elements takes n / 2 bytes). fp8 is e4m3 unless named (e5m2 for gradients,
# Micikevicius et al., "FP8 Formats for Deep Learning", 2022).
DTYPE_BYTES: Mapping[str, float] = {
    "fp64": 8, "fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2,
    "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "int8": 1, "int4": 0.5,
}
# The tensor-core rate a dtype runs at (fp8 variants share the fp8 rate).
MATH_DTYPE: Mapping[str, str] = {**{d: d for d in DTYPE_BYTES}, "fp8_e4m3": "fp8", "fp8_e5m2": "fp8"}

DtypeName = Literal["fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "fp8_e4m3", "fp8_e5m2", "int8", "int4"]
