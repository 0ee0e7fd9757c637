"""Parsing of human-written quantities: ``64MiB``, ``1.5GB``, ``3TB/s``, ``500ns``, ``1.41GHz``.

Binary prefixes (KiB, MiB, GiB, TiB) are powers of 1024; decimal prefixes
(KB, MB, GB, TB) powers of 1000, following IEC 80000-13. Rates take the same
prefixes before ``/s`` (``50GB/s`` is 50e9 bytes per second) and also the
network convention in bits (``400Gb/s``, ``400Gbps``: 50e9 bytes per second).

Hand-written rather than a units library (pint): the grammar is five suffix
tables, and a parse here costs ~1 us against pint's ~50 us per quantity, which
matters when sweeps validate thousands of scenarios.
"""

from __future__ import annotations

import math
import re

# Byte counts are bounded so that no size can overflow int64 columns or ask
# for an absurd allocation: 2^62 bytes (4 EiB) is beyond any machine.
MAX_BYTES = 2**62

_BYTE_UNITS = {
    "": 1, "b": 1,
    "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "pb": 1e15,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
}
_DECIMAL = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "p": 1e15, "e": 1e18}
# seconds = number * multiplier / divisor (dividing by 1e9 rounds exactly where 1e-9 would not)
_TIME_UNITS = {"s": (1.0, 1.0), "ms": (1.0, 1e3), "us": (1.0, 1e6), "µs": (1.0, 1e6),
               "ns": (1.0, 1e9), "ps": (1.0, 1e12), "min": (60.0, 1.0), "h": (3600.0, 1.0)}
_QUANTITY = re.compile(r"^\s*([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-zµ/]*)\s*$")


def _fail(what: str, message: str) -> ValueError:
    """A ValueError whose text is ``what: message`` (just ``message`` without ``what``)."""
    return ValueError(f"{what}: {message}" if what else message)


def _split(value: int | float | str, what: str, example: str) -> tuple[float, str]:
    """(number, unit text) of a quantity; plain numbers have unit ''."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _fail(what, f"expected a quantity such as {example}, got {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        match = _QUANTITY.match(value)
        if not match:
            raise _fail(what, f"expected a quantity such as {example}, got {value!r}")
        number, unit = float(match.group(1)), match.group(2)
    if not math.isfinite(number):
        raise _fail(what, f"expected a finite quantity such as {example}, got {value!r}")
    return number, unit


def parse_bytes(value: int | float | str, what: str = "size") -> int:
    """Return a byte count from an int, a float or a string such as ``64MiB``.

    Raises ValueError naming ``what`` when the text is not a non-negative,
    finite size below 2^62 bytes.
    """
    example = "4096, 64MiB or 1GB"
    number, unit = _split(value, what, example)
    factor = _BYTE_UNITS.get(unit.lower())
    if factor is None:
        raise _fail(what, f"expected a byte size such as {example}, got {value!r}")
    result = number * factor
    if result < 0:
        raise _fail(what, f"expected a non-negative byte size, got {value!r}")
    if result > MAX_BYTES:
        raise _fail(what, f"{value!r} is larger than the largest size accepted (2^62 bytes)")
    return int(round(result))


def parse_rate(value: int | float | str, what: str = "bandwidth") -> float:
    """Bytes per second from a number or ``50GB/s``, ``1.5TiB/s``, ``400Gb/s``,
    ``400Gbps`` (bits). Must be positive and finite."""
    example = "50e9, 50GB/s or 400Gb/s"
    number, unit = _split(value, what, example)
    text = unit
    bits = False
    if text.endswith("ps") and not text.endswith("/s"):   # 400Gbps, 100Mbps
        text = text[:-2] + "/s"
    if text:
        if not text.endswith("/s"):
            raise _fail(what, f"expected a rate such as {example}, got {value!r}")
        text = text[:-2]
        if text.endswith("b") and not text.endswith(("B", "iB")):
            bits, text = True, text[:-1]
        elif text.endswith("B"):
            text = text[:-1]
        binary = text.lower().endswith("i")
        prefix = text[:-1] if binary else text
        if binary:
            factor = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}.get(prefix.lower())
        else:
            factor = _DECIMAL.get(prefix.lower()) if prefix in ("", "k", "K", "M", "G", "T", "P") else None
        if factor is None:
            raise _fail(what, f"expected a rate such as {example}, got {value!r}")
        number *= factor / 8.0 if bits else factor
    if number <= 0:
        raise _fail(what, f"expected a positive rate, got {value!r}")
    return number


def parse_seconds(value: int | float | str, what: str = "time", allow_zero: bool = True) -> float:
    """Seconds from a number or ``500ns``, ``1.5us``, ``2ms``, ``3s``, ``5min``."""
    example = "1e-6, 500ns, 2ms or 3s"
    number, unit = _split(value, what, example)
    factor = _TIME_UNITS.get(unit) if unit else (1.0, 1.0)
    if factor is None:
        raise _fail(what, f"expected a time such as {example}, got {value!r}")
    result = number * factor[0] / factor[1]
    if result < 0 or (result == 0 and not allow_zero):
        raise _fail(what, f"expected a {'non-negative' if allow_zero else 'positive'} time, "
                         f"got {value!r}")
    return result


def parse_frequency(value: int | float | str, what: str = "clock") -> float:
    """Hertz from a number or ``1.41GHz``, ``900MHz``. Must be positive."""
    example = "1.41e9, 1410MHz or 1.41GHz"
    number, unit = _split(value, what, example)
    if unit:
        prefix = unit[:-2] if unit.lower().endswith("hz") else None
        factor = _DECIMAL.get(prefix.lower()) if prefix is not None and prefix in ("", "k", "K", "M", "G") else None
        if factor is None:
            raise _fail(what, f"expected a frequency such as {example}, got {value!r}")
        number *= factor
    if number <= 0:
        raise _fail(what, f"expected a positive frequency, got {value!r}")
    return number


def format_bytes(n: float) -> str:
    """Format a byte count with a binary prefix, e.g. ``64.0 MiB``."""
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n:.0f} B"
