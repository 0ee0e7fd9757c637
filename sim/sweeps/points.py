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
from collections import Counter
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional

from pydantic import BeforeValidator, model_validator
from pydantic_core import PydanticCustomError

from sim.errors import ScenarioError
from sim.runtime.scenario import (ScenarioFile, apply_overrides, read_scenario_file,
                                  resolve_scenario_path)
from sim.schema import (MAX_NAME, Float, Int, Name, StrictModel, Text, check_structure, choice,
                        int_range, load_yaml, one_line, validate)
from sim.sweeps import expr
from sim.sweeps.columns import RESERVED

MAX_POINTS = 100_000


def _axis(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME \
            or any(not part.strip() for part in value.split(".")):
        raise PydanticCustomError("accsim", f"expected a dotted scenario key such as parallel.pp, got {value!r}")
    if value in RESERVED:
        raise PydanticCustomError("accsim", f"{value!r} is the name of a results column; it cannot be an axis")
    return value


def _values(value: Any) -> list:
    if not isinstance(value, list) or not value:
        raise PydanticCustomError("accsim", f"expected a non-empty list of values, got {value!r}")
    return value


Axis = Annotated[str, BeforeValidator(_axis)]
Values = Annotated[list[Any], BeforeValidator(_values)]


class RandomParam(StrictModel):
    """One sampled axis: ``{low, high[, type: int]}`` or ``{choices: [...]}``."""

    low: Optional[Float] = None
    high: Optional[Float] = None
    type: choice("float", "int") = "float"
    choices: Optional[Values] = None

    @model_validator(mode="after")
    def _range(self) -> "RandomParam":
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise PydanticCustomError("accsim", "give either choices or low and high, not both")
            return self
        if self.low is None or self.high is None:
            raise PydanticCustomError("accsim", "expected low and high, or choices")
        if self.low > self.high:
            raise PydanticCustomError("accsim", f"low {self.low:g} is above high {self.high:g}")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)
                                   or max(abs(self.low), abs(self.high)) > 2**62):
            raise PydanticCustomError("accsim", "type: int needs integer low and high within int64")
        return self


class RandomBlock(StrictModel):
    n: int_range(1, MAX_POINTS)
    seed: Int = 0
    params: dict[Axis, RandomParam]

    @model_validator(mode="after")
    def _some(self) -> "RandomBlock":
        if not self.params:
            raise PydanticCustomError("accsim", "params: expected at least one axis")
        return self


class Axes(StrictModel):
    """The axes of a sweep: ``grid``, ``zip``, ``random`` and the ``where`` filter."""

    grid: Optional[dict[Axis, Values]] = None
    zip: Optional[dict[Axis, Values]] = None
    random: Optional[RandomBlock] = None
    where: Optional[Text] = None


class SweepFile(Axes):
    """A sweep file (module docstring)."""

    scenario: Text
    name: Optional[Name] = None


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep: the base scenario (mapping and folder) and its points."""

    name: str
    scenario_path: Path
    base: Mapping[str, Any]
    points: tuple[dict, ...]
    filtered: int = 0
    params: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None

    @property
    def sweep_id(self) -> str:
        """SHA-256 prefix of the base scenario and the points: two sweeps with
        the same id run the same design points."""
        text = json.dumps({"base": self.base, "points": list(self.points)}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolved(base: Mapping[str, Any], point: Mapping[str, Any]) -> dict:
    """The base scenario with a point's values set (its keys are ``--set`` keys)."""
    return apply_overrides(dict(base), point)


def point_id(base: Mapping[str, Any], point: Mapping[str, Any]) -> str:
    """Stable id: SHA-256 of the resolved scenario as canonical JSON, 16 hex digits."""
    text = json.dumps(resolved(base, point), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _grid(raw: Mapping[str, list] | None) -> list[dict]:
    if not raw:
        return []
    keys = list(raw)
    return [dict(zip(keys, values)) for values in itertools.product(*(raw[k] for k in keys))]


def _zip(raw: Mapping[str, list] | None, where: str) -> list[dict]:
    if not raw:
        return []
    lengths = {key: len(values) for key, values in raw.items()}
    if len(set(lengths.values())) != 1:
        raise ScenarioError(one_line(f"{where}: zip: every key needs a list, all of the same length; "
                                     f"got lengths {lengths}"))
    keys = list(raw)
    return [dict(zip(keys, values)) for values in zip(*(raw[k] for k in keys))]


def _random(block: RandomBlock | None) -> list[dict]:
    if block is None:
        return []
    rng = random.Random(block.seed)
    points = []
    for _ in range(block.n):
        point = {}
        for key, spec in block.params.items():
            if spec.choices is not None:
                point[key] = rng.choice(spec.choices)
            elif spec.type == "int":
                point[key] = rng.randint(int(spec.low), int(spec.high))
            else:
                point[key] = rng.uniform(spec.low, spec.high)
        points.append(point)
    return points


def _count(axes: Axes, where: str) -> int:
    """How many points the axes make, computed before making them."""
    sizes = []
    if axes.grid:
        sizes.append(math.prod(len(v) for v in axes.grid.values()))
    if axes.zip:
        sizes.append(min(len(v) for v in axes.zip.values()))
    if axes.random:
        sizes.append(axes.random.n)
    if not sizes:
        raise ScenarioError(f"{where}: give at least one of grid, zip, random")
    total = math.prod(sizes)
    if total > MAX_POINTS:
        raise ScenarioError(f"{where}: the axes make {total:,} points; at most {MAX_POINTS:,} per sweep "
                            f"(split it, or sample with random:)")
    return total


def expand_points(raw: Mapping[str, Any], where: str = "sweep") -> tuple[list[dict], int]:
    """The sweep's points (after ``where``) and how many were filtered out."""
    check_structure(raw, where)
    axes = validate(Axes, {k: raw[k] for k in Axes.model_fields if k in raw}, where)
    _count(axes, where)
    keys = [list(part) for part in (axes.grid or {}, axes.zip or {},
                                    axes.random.params if axes.random else {})]
    repeated = [k for k, n in Counter(k for part in keys for k in part).items() if n > 1]
    if repeated:
        raise ScenarioError(f"{where}: axis {repeated[0]!r} appears in more than one of grid, zip, random")
    parts = [p for p in (_grid(axes.grid), _zip(axes.zip, where), _random(axes.random)) if p]
    points = [dict(itertools.chain.from_iterable(p.items() for p in combo))
              for combo in itertools.product(*parts)]
    if not axes.where:
        return points, 0
    try:
        expression = expr.parse(axes.where, {k for part in keys for k in part})
    except expr.ExpressionError as exc:
        raise ScenarioError(one_line(f"{where}: where: {exc}")) from None
    kept = []
    for point in points:
        try:
            if expression.evaluate(point):
                kept.append(point)
        except expr.ExpressionError as exc:
            raise ScenarioError(one_line(f"{where}: where: {exc} at the point {point}")) from None
    return kept, len(points) - len(kept)


def _short(point: Mapping[str, Any], limit: int = 120) -> str:
    text = json.dumps(point, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_sweep(source: str | Path | Mapping[str, Any], base_dir: Path | None = None) -> SweepSpec:
    """Read a sweep file (or mapping), expand its points, and check every
    point's scenario has the scenario file's shape (so a typo in an axis
    fails here, not on the workers)."""
    if isinstance(source, Mapping):
        raw, where, folder = dict(source), "sweep", base_dir or Path.cwd()
        check_structure(raw, where)
    else:
        path = Path(source)
        if not path.is_file():
            raise ScenarioError(f"{path}: sweep file not found")
        raw, where, folder = load_yaml(path, ScenarioError) or {}, str(path), path.parent
        if not isinstance(raw, dict):
            raise ScenarioError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    doc = validate(SweepFile, raw, where)
    candidates = [folder / doc.scenario, resolve_scenario_path(doc.scenario)]
    scenario_path = next((p for p in candidates if p.is_file()), None)
    if scenario_path is None:
        raise ScenarioError(one_line(f"{where}: scenario: {doc.scenario!r} not found beside the sweep "
                                     f"file, in the working directory, or among the shipped scenarios"))
    base = read_scenario_file(scenario_path)
    points, filtered = expand_points(raw, where)
    for point in points:
        scenario = resolved(base, point)
        if "serving" in scenario:        # an LLM serving scenario: its own schema (sim.serving.config)
            from sim.serving.config import check_serving_structure
            check_serving_structure(scenario, f"{where} (at the point {_short(point)})")
        else:
            validate(ScenarioFile, scenario, f"{where} (at the point {_short(point)})")
    params = tuple(dict.fromkeys(k for p in points for k in p))
    name = doc.name or (Path(str(source)).stem if not isinstance(source, Mapping) else "sweep")
    return SweepSpec(name, scenario_path.resolve(), base, tuple(points), filtered, params,
                     doc.random.seed if doc.random else None)
