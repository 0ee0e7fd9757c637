"""Sweep files: a base scenario and the axes to vary.

```yaml
scenario: scenarios/pipeline_ideal.yaml   # relative to this file, or the working directory
grid:                                     # cartesian product
  parallel.microbatches: [4, 8, 16]
  parallel.schedule: [gpipe, 1f1b]
zip:                                      # paired lists, one point per position
  parallel.pp: [2, 4]
  parallel.dp: [2, 1]
random:                                   # n samples from ranges, reproducible by seed
  n: 10
  seed: 0
  params:
    parallel.microbatches: {low: 4, high: 64, type: int}
    device_overrides.memory.hbm.bandwidth_bytes_per_s: {low: 1.5e12, high: 3e12}
    parallel.schedule: {choices: [gpipe, 1f1b]}
where: "parallel.pp * parallel.dp <= 8"   # optional filter, over the point's values
```

Axis keys are dotted scenario paths, exactly as ``--set`` takes them. The
points are the cartesian product of the grid points, the zip rows and the
random samples (each part that is present). A point's id is a hash of the
resolved scenario mapping, so the same design point has the same id in any
sweep.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping

from sim.errors import ScenarioError, check_keys
from sim.hardware.specs import read_yaml
from sim.runtime.scenario import apply_overrides

SWEEP_KEYS = ("scenario", "grid", "zip", "random", "where", "name")


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep: the base scenario (mapping and folder) and its points."""

    name: str
    scenario_path: Path
    base: Mapping[str, Any]
    points: tuple[dict, ...]
    filtered: int = 0
    params: tuple[str, ...] = field(default_factory=tuple)


def point_overrides(point: Mapping[str, Any]) -> list[str]:
    """``--set`` strings for a point (values in JSON, which YAML parses back)."""
    return [f"{key}={json.dumps(value)}" for key, value in point.items()]


def resolved(base: Mapping[str, Any], point: Mapping[str, Any]) -> dict:
    return apply_overrides(dict(base), point_overrides(point))


def point_id(base: Mapping[str, Any], point: Mapping[str, Any]) -> str:
    """Stable id: SHA-256 of the resolved scenario as canonical JSON, 16 hex digits."""
    text = json.dumps(resolved(base, point), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _grid(raw: Any, where: str) -> list[dict]:
    if raw is None:
        return []
    if not isinstance(raw, Mapping) or not raw:
        raise ScenarioError(f"{where}: expected a mapping of dotted keys to lists of values")
    keys = list(raw)
    for key in keys:
        if not isinstance(raw[key], list) or not raw[key]:
            raise ScenarioError(f"{where}.{key}: expected a non-empty list of values")
    return [dict(zip(keys, values)) for values in itertools.product(*(raw[k] for k in keys))]


def _zip(raw: Any, where: str) -> list[dict]:
    if raw is None:
        return []
    if not isinstance(raw, Mapping) or not raw:
        raise ScenarioError(f"{where}: expected a mapping of dotted keys to lists of values")
    lengths = {key: len(values) if isinstance(values, list) else -1 for key, values in raw.items()}
    if len(set(lengths.values())) != 1 or -1 in lengths.values():
        raise ScenarioError(f"{where}: every key needs a list, all of the same length; got lengths {lengths}")
    keys = list(raw)
    return [dict(zip(keys, values)) for values in zip(*(raw[k] for k in keys))]


def _random(raw: Any, where: str) -> list[dict]:
    if raw is None:
        return []
    if not isinstance(raw, Mapping) or "n" not in raw or "params" not in raw:
        raise ScenarioError(f"{where}: expected n, seed and params")
    rng = random.Random(int(raw.get("seed", 0)))
    points = []
    for _ in range(int(raw["n"])):
        point = {}
        for key, spec in raw["params"].items():
            if not isinstance(spec, Mapping):
                raise ScenarioError(f"{where}.params.{key}: expected low/high or choices")
            if "choices" in spec:
                point[key] = rng.choice(list(spec["choices"]))
            else:
                low, high = float(spec["low"]), float(spec["high"])
                if spec.get("type") == "int":
                    point[key] = rng.randint(int(low), int(high))
                else:
                    point[key] = rng.uniform(low, high)
        points.append(point)
    return points


def _namespace(point: Mapping[str, Any]) -> dict:
    """Dotted keys as nested attributes, for ``where`` expressions."""
    root: dict = {}
    for key, value in point.items():
        node = root
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def wrap(node):
        return SimpleNamespace(**{k: wrap(v) for k, v in node.items()}) if isinstance(node, dict) else node
    return {k: wrap(v) for k, v in root.items()}


def _passes(where_expr: str, point: Mapping[str, Any], where: str) -> bool:
    names = {"min": min, "max": max, "abs": abs, "len": len, **_namespace(point)}
    try:
        return bool(eval(where_expr, {"__builtins__": {}}, names))  # noqa: S307 (a user's own filter)
    except Exception as exc:  # noqa: BLE001
        raise ScenarioError(f"{where}: where {where_expr!r} failed on {dict(point)}: {exc}") from None


def expand_points(raw: Mapping[str, Any], where: str = "sweep") -> tuple[list[dict], int]:
    """The sweep's points (after ``where``) and how many were filtered out."""
    parts = [p for p in (_grid(raw.get("grid"), f"{where}: grid"), _zip(raw.get("zip"), f"{where}: zip"),
                         _random(raw.get("random"), f"{where}: random")) if p]
    if not parts:
        raise ScenarioError(f"{where}: give at least one of grid, zip, random")
    points = [dict(itertools.chain.from_iterable(p.items() for p in combo))
              for combo in itertools.product(*parts)]
    if raw.get("where"):
        kept = [p for p in points if _passes(str(raw["where"]), p, where)]
        return kept, len(points) - len(kept)
    return points, 0


def load_sweep(source: str | Path | Mapping[str, Any], base_dir: Path | None = None) -> SweepSpec:
    """Read a sweep file (or mapping) and expand its points."""
    if isinstance(source, Mapping):
        raw, where, folder = dict(source), "sweep", base_dir or Path.cwd()
    else:
        path = Path(source)
        if not path.is_file():
            raise ScenarioError(f"{path}: sweep file not found")
        raw, where, folder = read_yaml(path, ScenarioError) or {}, str(path), path.parent
    check_keys(raw, SWEEP_KEYS, where)
    if not raw.get("scenario"):
        raise ScenarioError(f"{where}: missing required key 'scenario'")
    candidates = [folder / str(raw["scenario"]), Path(str(raw["scenario"]))]
    scenario_path = next((p for p in candidates if p.is_file()), None)
    if scenario_path is None:
        raise ScenarioError(f"{where}: scenario {raw['scenario']!r} not found beside the sweep file or "
                            f"in the working directory")
    base = read_yaml(scenario_path, ScenarioError) or {}
    points, filtered = expand_points(raw, where)
    params = tuple(dict.fromkeys(k for p in points for k in p))
    return SweepSpec(str(raw.get("name") or (Path(str(source)).stem if not isinstance(source, Mapping) else "sweep")),
                     scenario_path.resolve(), base, tuple(points), filtered, params)
