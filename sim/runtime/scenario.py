"""Scenarios: a YAML file naming a device, a trace and options.

Schema (docs/architecture.md, "Scenario files")::

    name: quickstart                 # optional, defaults to the file stem
    description: ...                 # optional
    device: npu_pim                  # catalog name or path to a device spec
    device_name: npu0                # optional instance name in outputs
    device_overrides:                # optional what-if changes to the device spec
      pim: {mode: blocked}
      memory: {hbm: {bandwidth_bytes_per_s: 2.4e12}}   # list items by name
    trace: ../traces/x.jsonl         # path, relative to this file or the cwd
    memory:
      resident_bytes: {hbm: 8GiB}    # optional, allocated before the first op

``--set key.path=value`` overrides any key before validation; the value is
parsed as YAML (``--set memory.resident_bytes.hbm=4GiB``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from sim.errors import ScenarioError
from sim.hardware.specs import DeviceSpec, load_device_spec, read_yaml
from sim.units import parse_bytes
from sim.workload.trace import Trace, load_trace

TOP_LEVEL_KEYS = ("name", "description", "device", "device_name", "device_overrides", "trace",
                  "memory")


@dataclass(frozen=True)
class Scenario:
    """A resolved scenario: device spec and trace loaded and validated."""

    name: str
    device: DeviceSpec
    device_name: str
    trace: Trace
    resident_bytes: Mapping[str, int] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    path: str = ""


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """Return a copy of ``raw`` with each ``key.path=value`` applied."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ScenarioError(f"--set {item!r}: expected key.path=value")
        key, text = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ScenarioError(f"--set {item!r}: empty key")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ScenarioError(f"--set {item!r}: {part!r} is not a mapping in the scenario")
            node = child
        node[parts[-1]] = value
    return out


def _resolve(path_text: str, base: Path | None) -> Path:
    path = Path(path_text)
    if path.is_absolute():
        return path
    if base is not None and (base / path).exists():
        return base / path
    return path


def scenario_from_dict(raw: Mapping[str, Any], base: Path | None = None, where: str = "scenario",
                       default_name: str = "scenario") -> Scenario:
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{where}: expected a mapping at the top level")
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ScenarioError(f"{where}: unknown key {unknown[0]!r}; expected some of {list(TOP_LEVEL_KEYS)}")
    for key in ("device", "trace"):
        if not raw.get(key):
            raise ScenarioError(f"{where}: missing required key {key!r}")
    device_overrides = raw.get("device_overrides") or {}
    if not isinstance(device_overrides, Mapping):
        raise ScenarioError(f"{where}: device_overrides: expected a mapping")
    device = load_device_spec(str(raw["device"]), base, device_overrides)
    trace = load_trace(_resolve(str(raw["trace"]), base))
    memory = raw.get("memory") or {}
    if not isinstance(memory, Mapping):
        raise ScenarioError(f"{where}: memory: expected a mapping")
    resident: dict[str, int] = {}
    for tier, size in (memory.get("resident_bytes") or {}).items():
        if tier not in device.tier_names:
            raise ScenarioError(f"{where}: memory.resident_bytes.{tier}: not a tier of {device.name}; "
                                f"expected one of {list(device.tier_names)}")
        try:
            resident[tier] = parse_bytes(size, f"{where}: memory.resident_bytes.{tier}")
        except ValueError as exc:
            raise ScenarioError(str(exc)) from None
    return Scenario(name=str(raw.get("name") or default_name), device=device,
                    device_name=str(raw.get("device_name") or "dev0"), trace=trace,
                    resident_bytes=resident, raw=dict(raw), path=where)


def load_scenario(path: str | Path, overrides: Sequence[str] = ()) -> Scenario:
    """Read a scenario YAML, apply ``--set`` overrides, and resolve it."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"{path}: scenario file not found")
    raw = read_yaml(path, ScenarioError) or {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top level")
    raw = apply_overrides(raw, overrides)
    return scenario_from_dict(raw, base=path.parent, where=str(path), default_name=path.stem)
