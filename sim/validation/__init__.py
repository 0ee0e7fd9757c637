"""``accsim validate``: predictions against the published measurements we collected.

A *point* is one published figure (a GEMM's TFLOP/s, a bus bandwidth, a
training run's throughput) with its source, the command that reproduces
accsim's prediction of it, and its *role*:

- ``calibration``: a spec-file parameter was set from this figure (the
  point then checks that the parameter still reproduces it);
- ``check``: no parameter was set from it; it tests the model.

A *group* is a set of points with one documented tolerance on the mean
absolute percentage error (MAPE) and on the worst point. Groups live one per
module in ``sim/validation/groups/`` (listed in ``GROUP_MODULES``); each module
has ``group() -> Group``. ``run`` evaluates groups, ``render_table`` prints
them, ``render_markdown`` writes docs/validation.md.

Signed error = (predicted - published) / published.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from sim.errors import AccsimError

ROLES = ("calibration", "check")
# Group modules in report order (sim/validation/groups/NAME.py).
GROUP_MODULES = ("gemm_a100", "gemm_h100", "gemm_others", "kernels_h200", "hbm_bandwidth", "attention", "collectives",
                 "end_to_end")


@dataclass(frozen=True)
class Point:
    """One published figure and how accsim predicts it."""

    name: str
    published: float
    unit: str
    source: str
    role: str
    predict: Callable[[], float] = field(repr=False, compare=False)
    command: str = ""
    note: str = ""

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"point {self.name!r}: role must be one of {ROLES}")
        if not (math.isfinite(self.published) and self.published != 0):
            raise ValueError(f"point {self.name!r}: published value must be finite and non-zero")


@dataclass(frozen=True)
class Group:
    """Points judged together: passes when MAPE <= ``mape_tolerance`` and
    every point's |error| <= ``max_tolerance``."""

    name: str
    title: str
    description: str
    points: tuple[Point, ...]
    mape_tolerance: float
    max_tolerance: float


@dataclass(frozen=True)
class PointResult:
    group: str
    name: str
    published: float
    predicted: float
    unit: str
    role: str
    source: str
    command: str
    note: str

    @property
    def error(self) -> float:
        return (self.predicted - self.published) / self.published

    def as_dict(self) -> dict:
        return {"group": self.group, "point": self.name, "published": self.published,
                "predicted": self.predicted, "unit": self.unit, "error": self.error,
                "role": self.role, "source": self.source, "command": self.command, "note": self.note}


@dataclass(frozen=True)
class GroupResult:
    group: Group
    points: tuple[PointResult, ...]

    @property
    def mape(self) -> float:
        return sum(abs(p.error) for p in self.points) / len(self.points) if self.points else 0.0

    @property
    def worst(self) -> float:
        return max((abs(p.error) for p in self.points), default=0.0)

    @property
    def passed(self) -> bool:
        return self.mape <= self.group.mape_tolerance and self.worst <= self.group.max_tolerance

    def as_dict(self) -> dict:
        return {"group": self.group.name, "title": self.group.title, "mape": self.mape,
                "worst_abs_error": self.worst, "mape_tolerance": self.group.mape_tolerance,
                "max_tolerance": self.group.max_tolerance, "passed": self.passed,
                "points": [p.as_dict() for p in self.points]}


def load_groups(only: Iterable[str] | None = None) -> list[Group]:
    """The shipped groups (all, or those named in ``only``)."""
    names = list(GROUP_MODULES)
    if only:
        wanted = list(dict.fromkeys(only))
        unknown = [n for n in wanted if n not in names]
        if unknown:
            raise AccsimError(f"--only: unknown validation group {unknown[0]!r}; expected some of {names}")
        names = wanted
    return [importlib.import_module(f"sim.validation.groups.{n}").group() for n in names]


def run(groups: Sequence[Group], progress: Callable[[int, int, str], None] | None = None) -> list[GroupResult]:
    """Evaluate every point of ``groups`` (in order)."""
    total = sum(len(g.points) for g in groups)
    done = 0
    results = []
    for g in groups:
        points = []
        for p in g.points:
            if progress is not None:
                progress(done, total, f"{g.name}: {p.name}")
            predicted = float(p.predict())
            if not math.isfinite(predicted):
                raise RuntimeError(f"validation point {g.name}/{p.name} predicted {predicted}")
            points.append(PointResult(g.name, p.name, p.published, predicted, p.unit, p.role,
                                      p.source, p.command, p.note))
            done += 1
        results.append(GroupResult(g, tuple(points)))
    if progress is not None:
        progress(done, total, "done")
    return results


def _number(value: float) -> str:
    return f"{value:.4g}"


def render_table(results: Sequence[GroupResult]) -> str:
    """Plain-text report: per group its points and the verdict."""
    lines = []
    for r in results:
        g = r.group
        lines.append(f"{g.name}: {g.title}")
        lines.append(f"  {'point':<46} {'published':>11} {'predicted':>11} {'error':>8}  {'role':<11} unit")
        for p in r.points:
            lines.append(f"  {p.name[:46]:<46} {_number(p.published):>11} {_number(p.predicted):>11} "
                         f"{100 * p.error:>+7.1f}%  {p.role:<11} {p.unit}")
        verdict = "PASS" if r.passed else "FAIL"
        lines.append(f"  MAPE {100 * r.mape:.1f}% (tolerance {100 * g.mape_tolerance:.0f}%), worst "
                     f"{100 * r.worst:.1f}% (tolerance {100 * g.max_tolerance:.0f}%): {verdict}")
        lines.append("")
    return "\n".join(lines)


HAND_WRITTEN = "<!-- Hand-written below this line: accsim validate --markdown keeps it. -->"


def render_markdown(results: Sequence[GroupResult], command: str, kept: str = "") -> str:
    """docs/validation.md: every group with its points, sources and verdicts, then
    ``kept``: the hand-written part of the previous file (from the HAND_WRITTEN
    marker on), so narrative survives regeneration."""
    out = ["# Validation against published figures", "",
           f"Generated by `{command}`; do not edit by hand. Each row is a published figure, "
           "what accsim predicts for it, the signed error (predicted - published) / published, "
           "and its role: **calibration** points set a parameter in a spec file (the row "
           "checks the parameter still reproduces them), **check** points were not used to set "
           "anything. A group passes when its mean absolute error and its worst point are within "
           "the tolerances stated.", ""]
    for r in results:
        g = r.group
        out += [f"## {g.title} (`{g.name}`)", "", g.description.strip(), "",
                "| point | published | accsim | error | role | source | command |",
                "|---|---|---|---|---|---|---|"]
        for p in r.points:
            note = f" ({p.note})" if p.note else ""
            out.append(f"| {p.name}{note} | {_number(p.published)} {p.unit} | {_number(p.predicted)} {p.unit} | "
                       f"{100 * p.error:+.1f}% | {p.role} | {p.source} | `{p.command}` |")
        out += ["", f"MAPE {100 * r.mape:.1f}% (tolerance {100 * g.mape_tolerance:.0f}%), worst point "
                    f"{100 * r.worst:.1f}% (tolerance {100 * g.max_tolerance:.0f}%): "
                    f"**{'pass' if r.passed else 'FAIL'}**.", ""]
    if kept:
        out.append(kept.strip("\n") + "\n")
    return "\n".join(out)


def kept_section(previous: str) -> str:
    """The hand-written tail of a previous docs/validation.md ('' if none)."""
    index = previous.find(HAND_WRITTEN)
    return previous[index:] if index >= 0 else ""
