"""Parsing of human-written quantities: ``64MiB``, ``1.5GB``, ``2e9``.

Binary prefixes (KiB, MiB, GiB, TiB) are powers of 1024; decimal prefixes
(KB, MB, GB, TB) powers of 1000, following IEC 80000-13.
"""

from __future__ import annotations

import re

_BYTE_UNITS = {
    "": 1, "b": 1,
    "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "pb": 1e15,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_bytes(value: int | float | str, what: str = "size") -> int:
    """Return a byte count from an int, a float or a string such as ``64MiB``.

    Raises ValueError naming ``what`` when the text is not a non-negative size.
    """
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a byte size, got {value!r}")
    if isinstance(value, (int, float)):
        number, factor = float(value), 1
    else:
        match = _QUANTITY.match(str(value))
        if not match or match.group(2).lower() not in _BYTE_UNITS:
            raise ValueError(
                f"{what}: expected a byte size such as 4096, 64MiB or 1GB, got {value!r}")
        number, factor = float(match.group(1)), _BYTE_UNITS[match.group(2).lower()]
    result = number * factor
    if result < 0 or result != result:
        raise ValueError(f"{what}: expected a non-negative byte size, got {value!r}")
    return int(round(result))


def format_bytes(n: float) -> str:
    """Format a byte count with a binary prefix, e.g. ``64.0 MiB``."""
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n:.0f} B"
