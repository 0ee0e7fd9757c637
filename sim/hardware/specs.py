"""Device specifications: what a chip has, as frozen dataclasses read from YAML.

A device spec file (``topologies/devices/NAME.yaml``) has a ``name``, a
``source`` citing where its figures come from, a list of ``memory`` tiers and
any of the unit kinds ``sm_array``, ``systolic_array``, ``vector`` and ``pim``.
Units carry the parameters that produce their peak, and the peak is derived:
an SM array's dense matrix peak for a dtype is SMs x FLOP per clock per SM x
clock, a systolic array's 2 x rows x cols x arrays x clock, a vector unit's
lanes x FLOP per lane per clock x clock. So adding SMs or raising the clock
raises the peak. The schema is documented in docs/architecture.md
("Device specs"); every file is validated (``sim.schema``) before use, and an
error is one line naming the file and the key.

Calibration lives here only, as physical quantities measured by public
benchmarks and recorded in ``accsim validate`` (sim/validation/groups/):
``sm_array.mainloop_efficiency`` (large-GEMM throughput over the tensor-core
peak), ``sm_array.launch_overhead_s`` (the time of the smallest GEMM) and a
memory tier's ``efficiency`` (copy-benchmark bandwidth over the datasheet).

Units in names: ``_bytes`` bytes, ``_per_s`` per second, ``_hz`` cycles per
second, ``_s`` seconds, ``_per_clock`` per cycle.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

from pydantic import field_validator, model_validator
from pydantic_core import PydanticCustomError

from sim.errors import SpecError
from sim.hardware.dtypes import DTYPE_BYTES, MATH_DTYPE, DtypeName  # noqa: F401 (re-exported)
from sim.paths import yaml_catalog
from sim.schema import (
    Fraction, Hertz, NonNegativeFloat, NonNegativeInt, PositiveBytes, PositiveFloat, PositiveInt, Rate, Seconds,
    StrictModel, join_location, load_yaml, validate,
)

MEMORY_KINDS = ("scratchpad", "hbm", "ddr", "host")
DATAFLOWS = ("os", "ws", "is")
PIM_MODES = ("blocked", "concurrent")
# Output tiles (rows x columns of C per thread block) a GEMM library offers:
# the tile shapes cuBLAS and CUTLASS kernels use on Ampere and Hopper (NVIDIA,
# "Matrix Multiplication Background User's Guide", "Typical Tile Dimensions in
# cuBLAS and Performance"; CUTLASS default threadblock shapes), and the 16- and
# 32-row tiles of skinny (decode) kernels built on the m16n8k16 tensor-core
# instruction, which sim.hardware.gemm offers only to GEMMs with that few rows.
DEFAULT_GEMM_TILES = ((256, 128), (128, 256), (128, 128), (128, 64), (64, 128), (64, 64), (32, 128), (16, 128))


@dataclass(frozen=True)
class MemoryTierSpec:
    """One memory tier: capacity and the bandwidth all its transfers share.

    ``efficiency`` is the fraction of ``bandwidth_bytes_per_s`` (the datasheet
    figure) that streaming kernels achieve, as copy benchmarks measure it
    (BabelStream, nvbandwidth); transfers on the tier share
    ``achievable_bandwidth_bytes_per_s``.
    """

    name: str
    kind: str
    capacity_bytes: int
    bandwidth_bytes_per_s: float
    efficiency: float = 1.0

    @property
    def achievable_bandwidth_bytes_per_s(self) -> float:
        return self.bandwidth_bytes_per_s * self.efficiency


@dataclass(frozen=True)
class SmArraySpec:
    """A GPU's streaming multiprocessors (or an AMD GPU's compute units).

    Peaks are derived: ``count`` x FLOP per clock per SM x ``clock_hz`` for
    each dtype of ``matrix_flops_per_clock_per_sm`` (tensor cores, dense) and
    ``vector_flops_per_clock_per_sm`` (CUDA cores). ``clock_hz`` is the clock
    the datasheet peak is quoted at; ``sustained_clock_hz`` (default: the same)
    is the clock kernels run at, the one time is computed from.

    GEMM kernel model (sim.hardware.gemm): ``mainloop_efficiency`` per math
    dtype (key ``default`` for the others) is the fraction of the tensor-core
    rate a large GEMM's main loop sustains; ``launch_overhead_s`` is the fixed
    time of any kernel (launch, block dispatch, first loads, tail);
    ``gemm_tile_overhead_clocks`` the SM clocks each output tile spends
    outside its main loop (the prologue's first operand loads and the
    epilogue that converts and stores the tile), once per wave;
    ``l2_bandwidth_bytes_per_clock`` (optional) bounds the operand traffic of
    the tiles through L2; ``gemm_tiles`` are the output tiles the GEMM library
    offers, ``max_split_k`` its deepest split-K. ``sfu_ops_per_clock_per_sm``:
    special-function (exp) results per clock per SM, for attention's softmax.
    ``issue_lanes_per_clock_per_sm``: thread instructions an SM issues per
    clock (NVIDIA: four warp schedulers of one 32-thread instruction each =
    128), which bounds memory-bound kernels that execute many instructions per
    element (norms, softmax, dropout's random numbers; sim.hardware.kernels);
    ``instructions_per_element``: those counts per kind of work (``norm``,
    ``norm_backward``, ``softmax``, ``dropout``, ``gelu``, ``gelu_backward``),
    measured (a kind the table lacks is bandwidth-bound).
    ``comm_sms``: SMs a communication kernel occupies while a collective runs
    (NCCL runs one thread block per channel), taken from the same pool as
    compute kernels so that overlapped communication slows compute.
    """

    count: int
    clock_hz: float
    matrix_flops_per_clock_per_sm: Mapping[str, float]
    vector_flops_per_clock_per_sm: Mapping[str, float]
    sustained_clock_hz: float | None = None
    mainloop_efficiency: Mapping[str, float] = field(default_factory=dict)
    launch_overhead_s: float = 0.0
    gemm_tile_overhead_clocks: float = 0.0
    l2_bytes: int | None = None
    l2_bandwidth_bytes_per_clock: float | None = None
    sfu_ops_per_clock_per_sm: float | None = None
    issue_lanes_per_clock_per_sm: float | None = None
    instructions_per_element: Mapping[str, float] = field(default_factory=dict)
    gemm_tiles: tuple[tuple[int, int], ...] = DEFAULT_GEMM_TILES
    max_split_k: int = 16
    comm_sms: int = 0

    @property
    def run_clock_hz(self) -> float:
        """The clock kernels run at: ``sustained_clock_hz``, else ``clock_hz``."""
        return self.sustained_clock_hz or self.clock_hz

    @functools.cached_property
    def matrix_flops_per_s(self) -> Mapping[str, float]:
        """Datasheet dense tensor-core peak of the whole array per dtype (derived)."""
        return {d: self.count * f * self.clock_hz for d, f in self.matrix_flops_per_clock_per_sm.items()}

    @functools.cached_property
    def vector_flops_per_s(self) -> Mapping[str, float]:
        """Datasheet CUDA-core peak of the whole array per dtype (derived)."""
        return {d: self.count * f * self.clock_hz for d, f in self.vector_flops_per_clock_per_sm.items()}

    def matrix_per_sm(self, dtype: str) -> float:
        """Tensor-core FLOP/s of one SM at the clock kernels run at."""
        return self.matrix_flops_per_clock_per_sm[MATH_DTYPE.get(dtype, dtype)] * self.run_clock_hz

    def vector_per_sm(self, dtype: str) -> float:
        """CUDA-core FLOP/s of one SM for ``dtype`` at the clock kernels run at;
        dtypes the table does not list (fp8, int8 elements) are converted and
        computed in fp32."""
        table = self.vector_flops_per_clock_per_sm
        per_clock = table.get(dtype) or table.get("fp32") or max(table.values())
        return per_clock * self.run_clock_hz

    def efficiency(self, dtype: str) -> float:
        """Main-loop efficiency of a GEMM in ``dtype`` (its math dtype's entry,
        else ``default``, else 1)."""
        table = self.mainloop_efficiency
        return table.get(MATH_DTYPE.get(dtype, dtype), table.get("default", 1.0))

    @property
    def l2_bandwidth_bytes_per_s(self) -> float | None:
        if self.l2_bandwidth_bytes_per_clock is None:
            return None
        return self.l2_bandwidth_bytes_per_clock * self.run_clock_hz

    def instructions_per_s_per_sm(self) -> float | None:
        """Thread instructions one SM issues per second at the clock kernels run
        at (None: the spec gives no issue rate, and instruction counts are not
        a bound)."""
        if self.issue_lanes_per_clock_per_sm is None:
            return None
        return self.issue_lanes_per_clock_per_sm * self.run_clock_hz

    def exp_per_s_per_sm(self) -> float:
        """Exponentials per second of one SM (special-function units; without
        a figure, one per fp32 CUDA-core lane and clock)."""
        if self.sfu_ops_per_clock_per_sm is not None:
            return self.sfu_ops_per_clock_per_sm * self.run_clock_hz
        return self.vector_per_sm("fp32") / 2.0


@dataclass(frozen=True)
class SystolicArraySpec:
    """``count`` systolic arrays (MXUs) of ``rows`` x ``cols`` MAC units; peak
    2 x rows x cols x count x clock (derived)."""

    rows: int
    cols: int
    count: int
    clock_hz: float
    dataflow: str = "ws"

    @property
    def peak_flops_per_s(self) -> float:
        return 2.0 * self.rows * self.cols * self.count * self.clock_hz


@dataclass(frozen=True)
class VectorUnitSpec:
    """The vector/scalar unit that runs ops which do not map to a matrix unit:
    ``lanes`` ALUs each doing ``flops_per_lane_per_clock[dtype]`` per clock;
    peak lanes x FLOP per lane per clock x clock (derived). A spec without a
    published microarchitecture may give ``flops_per_s`` instead (held as one
    lane at 1 Hz: clock what-ifs then leave it unchanged)."""

    lanes: int
    clock_hz: float
    flops_per_lane_per_clock: Mapping[str, float]

    @functools.cached_property
    def flops_per_s(self) -> Mapping[str, float]:
        return {d: self.lanes * f * self.clock_hz for d, f in self.flops_per_lane_per_clock.items()}


@dataclass(frozen=True)
class PimSpec:
    """Processing-in-memory banks inside memory tier ``tier``.

    In all-bank mode every bank streams its own rows through its MAC unit, so
    a GEMV sees ``banks * bank_bandwidth_bytes_per_s`` of internal bandwidth.
    ``mode`` is ``blocked`` (PIM commands and normal reads time-share the
    memory) or ``concurrent`` (dual row buffers, as in NeuPIMs).
    """

    banks: int
    bank_bandwidth_bytes_per_s: float
    bank_flops_per_s: float
    tier: str
    mode: str = "blocked"


@dataclass(frozen=True)
class DeviceSpec:
    """A whole device: its units, its memory tiers and where the figures come from."""

    name: str
    memory: tuple[MemoryTierSpec, ...]
    default_tier: str
    source: str = ""
    sm_array: SmArraySpec | None = None
    systolic_array: SystolicArraySpec | None = None
    vector: VectorUnitSpec | None = None
    pim: PimSpec | None = None
    default_dtype: str = "bf16"
    energy: Any = field(default=None, compare=False)   # sim.energy.model.EnergySpec, when the file has one
    path: str = field(default="", compare=False)

    def tier(self, name: str) -> MemoryTierSpec:
        for tier in self.memory:
            if tier.name == name:
                return tier
        raise KeyError(name)

    @functools.cached_property
    def tier_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.memory)

    @functools.cached_property
    def unit_kinds(self) -> tuple[str, ...]:
        kinds = ("sm_array", "systolic_array", "vector", "pim")
        return tuple(k for k in kinds if getattr(self, k) is not None)

    @functools.cached_property
    def kernel_cache(self) -> dict:
        """Memo of kernel-model results by shape for this spec (each distinct
        shape is priced once; see sim.hardware.kernels)."""
        return {}

    def unit_peak_flops_per_s(self, unit: str, dtype: str | None = None) -> float:
        """Peak FLOP/s of a whole unit kind (all SMs, all arrays) for ``dtype``
        (the unit's best dtype when it lists no figure for this one)."""
        dtype = MATH_DTYPE.get(dtype or self.default_dtype, dtype or self.default_dtype)
        if unit == "sm_array":
            table = self.sm_array.matrix_flops_per_s
            return table.get(dtype, max(table.values()))
        if unit == "systolic_array":
            return self.systolic_array.peak_flops_per_s
        if unit == "vector":
            table = self.vector.flops_per_s
            return table.get(dtype, max(table.values()))
        if unit == "pim":
            return self.pim.banks * self.pim.bank_flops_per_s
        raise KeyError(unit)

    def matrix_peak_flops_per_s(self, dtype: str | None = None) -> float:
        """Peak dense matrix FLOP/s of the device (the MFU denominator): its SM
        array, else its systolic arrays, else its vector unit."""
        for unit in ("sm_array", "systolic_array", "vector"):
            if getattr(self, unit) is not None:
                return self.unit_peak_flops_per_s(unit, dtype)
        return 0.0


# ---------------------------------------------------------------- the file schema


class _Cited(StrictModel):
    source: str = ""
    note: str = ""


class _MemoryTierIn(_Cited):
    name: str
    kind: Literal["scratchpad", "hbm", "ddr", "host"]
    capacity_bytes: PositiveBytes
    bandwidth_bytes_per_s: Rate
    efficiency: Fraction = 1.0


class _SmArrayIn(_Cited):
    count: PositiveInt
    clock_hz: Hertz
    sustained_clock_hz: Optional[Hertz] = None
    matrix_flops_per_clock_per_sm: dict[DtypeName, PositiveFloat]
    vector_flops_per_clock_per_sm: dict[DtypeName, PositiveFloat]
    mainloop_efficiency: dict[Literal["default", "fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4"],
                              Fraction] = {}
    launch_overhead_s: Seconds = 0.0
    gemm_tile_overhead_clocks: NonNegativeFloat = 0.0
    l2_bytes: Optional[PositiveBytes] = None
    l2_bandwidth_bytes_per_clock: Optional[PositiveFloat] = None
    sfu_ops_per_clock_per_sm: Optional[PositiveFloat] = None
    issue_lanes_per_clock_per_sm: Optional[PositiveFloat] = None
    instructions_per_element: dict[Literal["norm", "norm_backward", "softmax", "dropout", "gelu", "gelu_backward"],
                                   NonNegativeFloat] = {}
    gemm_tiles: Optional[list[tuple[PositiveInt, PositiveInt]]] = None
    max_split_k: PositiveInt = 16
    comm_sms: NonNegativeInt = 0

    @field_validator("matrix_flops_per_clock_per_sm", "vector_flops_per_clock_per_sm")
    @classmethod
    def _not_empty(cls, value):
        if not value:
            raise PydanticCustomError("accsim", "expected at least one dtype")
        return value

    @model_validator(mode="after")
    def _comm_fits(self):
        if self.comm_sms >= self.count:
            raise PydanticCustomError("accsim", f"comm_sms ({self.comm_sms}) must be fewer than count ({self.count})")
        if self.gemm_tiles is not None and not self.gemm_tiles:
            raise PydanticCustomError("accsim", "gemm_tiles: expected at least one tile")
        return self


class _SystolicIn(_Cited):
    rows: PositiveInt
    cols: PositiveInt
    count: PositiveInt
    clock_hz: Hertz
    dataflow: Literal["os", "ws", "is"] = "ws"


class _VectorIn(_Cited):
    lanes: Optional[PositiveInt] = None
    clock_hz: Optional[Hertz] = None
    flops_per_lane_per_clock: Optional[dict[DtypeName, PositiveFloat]] = None
    flops_per_s: Optional[dict[DtypeName, PositiveFloat]] = None

    @model_validator(mode="after")
    def _one_form(self):
        derived = (self.lanes, self.clock_hz, self.flops_per_lane_per_clock)
        if self.flops_per_s is not None:
            if any(x is not None for x in derived):
                raise PydanticCustomError("accsim", "give either lanes, clock_hz and flops_per_lane_per_clock, "
                                                    "or flops_per_s, not both")
            if not self.flops_per_s:
                raise PydanticCustomError("accsim", "flops_per_s: expected at least one dtype")
        elif any(x is None for x in derived) or not self.flops_per_lane_per_clock:
            raise PydanticCustomError("accsim", "expected lanes, clock_hz and flops_per_lane_per_clock "
                                                "(or, without a published microarchitecture, flops_per_s)")
        return self


class _PimIn(_Cited):
    banks: PositiveInt
    bank_bandwidth_bytes_per_s: Rate
    bank_flops_per_s: PositiveFloat
    tier: str
    mode: Literal["blocked", "concurrent"] = "blocked"


class _DeviceIn(_Cited):
    name: str
    default_dtype: DtypeName = "bf16"
    default_tier: str
    memory: list[_MemoryTierIn]
    sm_array: Optional[_SmArrayIn] = None
    systolic_array: Optional[_SystolicIn] = None
    vector: Optional[_VectorIn] = None
    pim: Optional[_PimIn] = None
    energy: Optional[dict] = None      # validated by sim.energy.model.EnergySpec

    @model_validator(mode="after")
    def _consistent(self):
        names = [t.name for t in self.memory]
        if not names:
            raise PydanticCustomError("accsim", "memory: expected a non-empty list of tiers")
        if len(set(names)) != len(names):
            raise PydanticCustomError("accsim", f"memory: tier names must be unique, got {names}")
        if self.default_tier not in names:
            raise PydanticCustomError("accsim", f"default_tier: {self.default_tier!r} is not one of the tiers {names}")
        if self.sm_array is None and self.systolic_array is None and self.vector is None:
            raise PydanticCustomError("accsim", "a device needs at least one of sm_array, systolic_array, vector")
        if self.systolic_array is not None and self.vector is None:
            raise PydanticCustomError("accsim", "a device with a systolic_array needs a vector unit for non-matrix ops")
        if self.pim is not None and self.pim.tier not in names:
            raise PydanticCustomError("accsim", f"pim.tier: {self.pim.tier!r} is not one of the tiers {names}")
        return self


def _from_model(m: _DeviceIn) -> DeviceSpec:
    memory = tuple(MemoryTierSpec(t.name, t.kind, t.capacity_bytes, t.bandwidth_bytes_per_s, t.efficiency)
                   for t in m.memory)
    sm = sa = vec = pim = None
    if m.sm_array is not None:
        r = m.sm_array
        sm = SmArraySpec(
            count=r.count, clock_hz=r.clock_hz, sustained_clock_hz=r.sustained_clock_hz,
            matrix_flops_per_clock_per_sm=dict(r.matrix_flops_per_clock_per_sm),
            vector_flops_per_clock_per_sm=dict(r.vector_flops_per_clock_per_sm),
            mainloop_efficiency=dict(r.mainloop_efficiency), launch_overhead_s=r.launch_overhead_s,
            gemm_tile_overhead_clocks=r.gemm_tile_overhead_clocks,
            l2_bytes=r.l2_bytes, l2_bandwidth_bytes_per_clock=r.l2_bandwidth_bytes_per_clock,
            sfu_ops_per_clock_per_sm=r.sfu_ops_per_clock_per_sm,
            issue_lanes_per_clock_per_sm=r.issue_lanes_per_clock_per_sm,
            instructions_per_element=dict(r.instructions_per_element),
            gemm_tiles=tuple(tuple(t) for t in r.gemm_tiles) if r.gemm_tiles else DEFAULT_GEMM_TILES,
            max_split_k=r.max_split_k, comm_sms=r.comm_sms)
    if m.systolic_array is not None:
        r = m.systolic_array
        sa = SystolicArraySpec(r.rows, r.cols, r.count, r.clock_hz, r.dataflow)
    if m.vector is not None and m.vector.flops_per_s is not None:
        vec = VectorUnitSpec(1, 1.0, dict(m.vector.flops_per_s))   # a datasheet peak: one "lane" at 1 Hz
    elif m.vector is not None:
        vec = VectorUnitSpec(m.vector.lanes, m.vector.clock_hz, dict(m.vector.flops_per_lane_per_clock))
    if m.pim is not None:
        r = m.pim
        pim = PimSpec(r.banks, r.bank_bandwidth_bytes_per_s, r.bank_flops_per_s, r.tier, r.mode)
    return DeviceSpec(name=m.name, memory=memory, default_tier=m.default_tier, source=m.source,
                      sm_array=sm, systolic_array=sa, vector=vec, pim=pim, default_dtype=m.default_dtype)


def device_spec_from_dict(raw: Mapping[str, Any], where: str = "device") -> DeviceSpec:
    """Build a DeviceSpec from a parsed YAML mapping, raising a one-line
    SpecError naming ``where`` and the key on bad input."""
    model = validate(_DeviceIn, raw, where, SpecError)
    spec = _from_model(model)
    if model.energy is not None:
        from sim.energy.model import EnergySpec
        energy = validate(EnergySpec, model.energy, join_location(where, "energy"), SpecError)
        problem = energy.mismatch(spec.tier_names, spec.unit_kinds)
        if problem is not None:
            raise SpecError(f"{join_location(where, 'energy')}.{problem}")
        spec = dataclasses.replace(spec, energy=energy)
    return spec


def device_catalog() -> dict[str, Path]:
    """Catalog names (file stems) of the shipped device specs, sorted."""
    return yaml_catalog("devices")


def read_yaml(path: Path, error: type = SpecError) -> Any:
    """Read a YAML file within sim.schema's limits, turning I/O and syntax
    errors into one-line ``error``s."""
    return load_yaml(path, error)


def merge_overrides(raw: Any, overrides: Mapping[str, Any], where: str) -> Any:
    """Deep-merge ``overrides`` into a parsed spec. In a list of named mappings
    (such as ``memory``), a key selects the item with that ``name``:
    ``{memory: {hbm: {bandwidth_bytes_per_s: 3e12}}}``."""
    if isinstance(raw, list):
        out = [dict(item) if isinstance(item, Mapping) else item for item in raw]
        names = [item.get("name") if isinstance(item, Mapping) else None for item in out]
        for key, value in overrides.items():
            if key not in names:
                raise SpecError(f"{where}.{key}: no item named {key!r}; expected one of {names}")
            index = names.index(key)
            out[index] = merge_overrides(out[index], value, f"{where}.{key}") \
                if isinstance(value, Mapping) else value
        return out
    out = dict(raw or {})
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), (Mapping, list)):
            out[key] = merge_overrides(out[key], value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def load_device_spec(name_or_path: str | os.PathLike, base: Path | None = None,
                     overrides: Mapping[str, Any] | None = None) -> DeviceSpec:
    """Load a device spec by catalog name (``a100_sxm4_80gb``) or by path.

    Relative paths are tried against ``base`` (the scenario's folder) and then
    the working directory. ``overrides`` are merged in before validation
    (see ``merge_overrides``), for what-if studies.
    """
    text = str(name_or_path)
    candidates = [Path(text)] if Path(text).is_absolute() else (
        ([base / text] if base is not None else []) + [Path(text)])
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        path = device_catalog().get(text)
    if path is None:
        raise SpecError(f"device spec {text!r} not found: not a file, and not one of the catalog "
                        f"names {sorted(device_catalog())}")
    raw = load_yaml(path, SpecError) or {}
    if overrides:
        raw = merge_overrides(raw, overrides, "device_overrides")
    spec = device_spec_from_dict(raw, where=str(path))
    return dataclasses.replace(spec, path=str(path))
