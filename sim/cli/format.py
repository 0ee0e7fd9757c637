"""Formatting helpers shared by the command modules (progress: sim.progress)."""

from __future__ import annotations

from sim.units import format_bytes  # noqa: F401  (re-exported for command modules)


def format_si(value: float, unit: str) -> str:
    for prefix, factor in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def format_seconds(value: float) -> str:
    for unit, factor in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if abs(value) >= factor:
            return f"{value / factor:.4g} {unit}"
    return f"{value:.3g} s"
