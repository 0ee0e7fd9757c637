"""Formatting and progress helpers shared by the command modules."""

from __future__ import annotations

import sys

from sim.units import format_bytes  # noqa: F401  (re-exported for command modules)


def progress_printer(stream=sys.stderr):
    """Progress of long runs on stderr: a line rewritten in place on a terminal,
    one line per 10% otherwise."""
    tty = stream.isatty()
    state = {"decile": 0}

    def report(done: int, total: int) -> None:
        if total < 20000:
            return
        if tty:
            stream.write(f"\r  simulated {done}/{total} ops ({100.0 * done / total:.0f}%)")
            if done >= total:
                stream.write("\n")
        else:
            decile = int(10 * done / total)
            if decile <= state["decile"]:
                return
            state["decile"] = decile
            stream.write(f"  simulated {done}/{total} ops ({10 * decile}%)\n")
        stream.flush()
    return report


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
