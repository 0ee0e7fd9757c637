"""Device specifications: what a chip has, as frozen dataclasses read from YAML.

A device spec file (``topologies/devices/NAME.yaml``) has a ``name``, a
``source`` citing where its figures come from, a list of ``memory`` tiers and
any of the unit kinds ``sm_array``, ``systolic_array``, ``vector`` and ``pim``.
The schema is documented in docs/architecture.md ("Device specs").

Units in names: ``_bytes`` bytes, ``_per_s`` per second, ``_hz`` cycles per second.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from sim.errors import SpecError
from sim.paths import topologies_dir
from sim.units import parse_bytes

DTYPE_BYTES: Mapping[str, int] = {
    "fp64": 8, "fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1,
}
MEMORY_KINDS = ("scratchpad", "hbm", "ddr", "host")
DATAFLOWS = ("os", "ws", "is")
PIM_MODES = ("blocked", "concurrent")


@dataclass(frozen=True)
class MemoryTierSpec:
    """One memory tier: capacity and the bandwidth all its transfers share."""

    name: str
    kind: str
    capacity_bytes: int
    bandwidth_bytes_per_s: float


@dataclass(frozen=True)
class SmArraySpec:
    """A GPU's streaming multiprocessors.

    ``matrix_flops_per_s`` is the dense tensor-core peak of the whole array per
    dtype (as datasheets quote it); ``vector_flops_per_s`` the CUDA-core peak
    used by non-matrix kernels. Each SM has 1/count of either.
    ``comm_sms``: SMs a communication kernel occupies while a collective runs
    (NCCL runs one thread block per channel), taken from the same pool as
    compute kernels so that overlapped communication slows compute. GEMMs are
    cut into ``tile_m`` x ``tile_n`` output tiles (one thread block each),
    scheduled in waves over the SMs a kernel holds.
    ``matrix_efficiency``: the fraction of the matrix peak a GEMM sustains on
    the SMs it holds, beyond tile and wave quantization (1.0: the datasheet
    peak). It is a calibration against a published end-to-end figure, cited
    in the device file; peaks, MFU and HFU stay relative to the datasheet.
    """

    count: int
    matrix_flops_per_s: Mapping[str, float]
    vector_flops_per_s: Mapping[str, float]
    tile_m: int = 128
    tile_n: int = 128
    comm_sms: int = 0
    matrix_efficiency: float = 1.0

    def matrix_per_sm(self, dtype: str) -> float:
        """Datasheet matrix peak of one SM (FLOP/s)."""
        return self.matrix_flops_per_s[dtype] / self.count

    def sustained_matrix_per_sm(self, dtype: str) -> float:
        """Matrix FLOP/s one SM sustains in a GEMM: the peak x ``matrix_efficiency``."""
        return self.matrix_per_sm(dtype) * self.matrix_efficiency

    def vector_per_sm(self, dtype: str) -> float:
        return self.vector_flops_per_s[dtype] / self.count


@dataclass(frozen=True)
class SystolicArraySpec:
    """``count`` systolic arrays (MXUs) of ``rows`` x ``cols`` MAC units."""

    rows: int
    cols: int
    count: int
    clock_hz: float
    dataflow: str = "ws"


@dataclass(frozen=True)
class VectorUnitSpec:
    """The vector/scalar unit that runs ops which do not map to a matrix unit."""

    flops_per_s: Mapping[str, float]


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

    def unit_peak_flops_per_s(self, unit: str, dtype: str | None = None) -> float:
        """Peak FLOP/s of a whole unit kind (all SMs, all arrays) for ``dtype``
        (the unit's best dtype when it lists no figure for this one)."""
        dtype = dtype or self.default_dtype
        if unit == "sm_array":
            table = self.sm_array.matrix_flops_per_s
            return table.get(dtype, max(table.values()))
        if unit == "systolic_array":
            sa = self.systolic_array
            return 2.0 * sa.rows * sa.cols * sa.count * sa.clock_hz
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


def _number(value: Any, where: str, positive: bool = True) -> float:
    if isinstance(value, bool):
        raise SpecError(f"{where}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"{where}: expected a number, got {value!r}") from None
    if not math.isfinite(number) or (positive and number <= 0) or number < 0:
        raise SpecError(f"{where}: expected a {'positive' if positive else 'non-negative'} "
                        f"number, got {value!r}")
    return number


def _integer(value: Any, where: str) -> int:
    number = _number(value, where)
    if number != int(number):
        raise SpecError(f"{where}: expected a positive integer, got {value!r}")
    return int(number)


def _fraction(value: Any, where: str) -> float:
    number = _number(value, where)
    if number > 1:
        raise SpecError(f"{where}: expected a fraction in (0, 1], got {value!r}")
    return number


def _dtype_map(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, Mapping) or not value:
        raise SpecError(f"{where}: expected a mapping of dtype to FLOP/s, got {value!r}")
    out = {}
    for dtype, flops in value.items():
        if dtype not in DTYPE_BYTES:
            raise SpecError(f"{where}.{dtype}: unknown dtype; expected one of {sorted(DTYPE_BYTES)}")
        out[str(dtype)] = _number(flops, f"{where}.{dtype}")
    return out


def _check_keys(raw: Any, cls: type, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where}: expected a mapping, got {type(raw).__name__}")
    allowed = {f.name for f in dataclasses.fields(cls)} | {"source", "note"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown field {unknown[0]!r}; expected some of {sorted(allowed)}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in raw]
    if missing:
        raise SpecError(f"{where}: missing field {missing[0]!r}")
    return raw


def _memory_tier(raw: Any, where: str) -> MemoryTierSpec:
    raw = _check_keys(raw, MemoryTierSpec, where)
    if raw["kind"] not in MEMORY_KINDS:
        raise SpecError(f"{where}.kind: expected one of {MEMORY_KINDS}, got {raw['kind']!r}")
    try:
        capacity = parse_bytes(raw["capacity_bytes"], f"{where}.capacity_bytes")
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    if capacity <= 0:
        raise SpecError(f"{where}.capacity_bytes: expected a positive size, got {raw['capacity_bytes']!r}")
    return MemoryTierSpec(
        name=str(raw["name"]), kind=raw["kind"], capacity_bytes=capacity,
        bandwidth_bytes_per_s=_number(raw["bandwidth_bytes_per_s"], f"{where}.bandwidth_bytes_per_s"))


def device_spec_from_dict(raw: Mapping[str, Any], where: str = "device") -> DeviceSpec:
    """Build a DeviceSpec from a parsed YAML mapping, raising SpecError on bad input."""
    raw = _check_keys(raw, DeviceSpec, where)
    memory_raw = raw["memory"]
    if not isinstance(memory_raw, list) or not memory_raw:
        raise SpecError(f"{where}.memory: expected a non-empty list of tiers")
    memory = tuple(_memory_tier(t, f"{where}.memory[{i}]") for i, t in enumerate(memory_raw))
    names = [t.name for t in memory]
    if len(set(names)) != len(names):
        raise SpecError(f"{where}.memory: tier names must be unique, got {names}")
    default_tier = str(raw["default_tier"])
    if default_tier not in names:
        raise SpecError(f"{where}.default_tier: {default_tier!r} is not one of the tiers {names}")

    sm = sa = vec = pim = None
    if raw.get("sm_array") is not None:
        r = _check_keys(raw["sm_array"], SmArraySpec, f"{where}.sm_array")
        sm = SmArraySpec(
            count=_integer(r["count"], f"{where}.sm_array.count"),
            matrix_flops_per_s=_dtype_map(r["matrix_flops_per_s"], f"{where}.sm_array.matrix_flops_per_s"),
            vector_flops_per_s=_dtype_map(r["vector_flops_per_s"], f"{where}.sm_array.vector_flops_per_s"),
            tile_m=_integer(r.get("tile_m", 128), f"{where}.sm_array.tile_m"),
            tile_n=_integer(r.get("tile_n", 128), f"{where}.sm_array.tile_n"),
            comm_sms=int(_number(r.get("comm_sms", 0), f"{where}.sm_array.comm_sms", positive=False)),
            matrix_efficiency=_fraction(r.get("matrix_efficiency", 1.0), f"{where}.sm_array.matrix_efficiency"))
    if raw.get("systolic_array") is not None:
        r = _check_keys(raw["systolic_array"], SystolicArraySpec, f"{where}.systolic_array")
        dataflow = str(r.get("dataflow", "ws")).lower()
        if dataflow not in DATAFLOWS:
            raise SpecError(f"{where}.systolic_array.dataflow: expected one of {DATAFLOWS}, got {dataflow!r}")
        sa = SystolicArraySpec(
            rows=_integer(r["rows"], f"{where}.systolic_array.rows"),
            cols=_integer(r["cols"], f"{where}.systolic_array.cols"),
            count=_integer(r["count"], f"{where}.systolic_array.count"),
            clock_hz=_number(r["clock_hz"], f"{where}.systolic_array.clock_hz"),
            dataflow=dataflow)
    if raw.get("vector") is not None:
        r = _check_keys(raw["vector"], VectorUnitSpec, f"{where}.vector")
        vec = VectorUnitSpec(flops_per_s=_dtype_map(r["flops_per_s"], f"{where}.vector.flops_per_s"))
    if raw.get("pim") is not None:
        r = _check_keys(raw["pim"], PimSpec, f"{where}.pim")
        mode = str(r.get("mode", "blocked"))
        if mode not in PIM_MODES:
            raise SpecError(f"{where}.pim.mode: expected one of {PIM_MODES}, got {mode!r}")
        if r["tier"] not in names:
            raise SpecError(f"{where}.pim.tier: {r['tier']!r} is not one of the tiers {names}")
        pim = PimSpec(
            banks=_integer(r["banks"], f"{where}.pim.banks"),
            bank_bandwidth_bytes_per_s=_number(r["bank_bandwidth_bytes_per_s"],
                                               f"{where}.pim.bank_bandwidth_bytes_per_s"),
            bank_flops_per_s=_number(r["bank_flops_per_s"], f"{where}.pim.bank_flops_per_s"),
            tier=str(r["tier"]), mode=mode)
    if sm is None and sa is None and vec is None:
        raise SpecError(f"{where}: a device needs at least one of sm_array, systolic_array, vector")
    if sa is not None and vec is None:
        raise SpecError(f"{where}: a device with a systolic_array needs a vector unit for non-matrix ops")
    default_dtype = str(raw.get("default_dtype", "bf16"))
    if default_dtype not in DTYPE_BYTES:
        raise SpecError(f"{where}.default_dtype: unknown dtype {default_dtype!r}")
    return DeviceSpec(name=str(raw["name"]), memory=memory, default_tier=default_tier,
                      source=str(raw.get("source", "")), sm_array=sm, systolic_array=sa,
                      vector=vec, pim=pim, default_dtype=default_dtype)


def device_catalog() -> dict[str, Path]:
    """Catalog names (file stems) of the shipped device specs, sorted."""
    folder = topologies_dir() / "devices"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def read_yaml(path: Path, error: type = SpecError) -> Any:
    """Read a YAML file, turning I/O and syntax errors into one-line ``error``s."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise error(f"{path}{line}: invalid YAML ({getattr(exc, 'problem', exc)})") from None


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
    raw = read_yaml(path) or {}
    if overrides:
        raw = merge_overrides(raw, overrides, "device_overrides")
    spec = device_spec_from_dict(raw, where=str(path))
    return dataclasses.replace(spec, path=str(path))
