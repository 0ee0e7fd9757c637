"""Parsing helpers for ``accsim collective``: message sizes and rank groups."""

from __future__ import annotations

import math

from sim.errors import AccsimError
from sim.units import parse_bytes

MAX_SIZES = 1000     # sizes one command simulates; a range asking for more is a typo, not a study


def parse_sizes(values: list[str]) -> list[int]:
    """``--bytes`` values: plain sizes (``4096``, ``64MiB``) or ranges
    ``LOW:HIGH`` (doubling from LOW up to HIGH inclusive) or ``LOW:HIGH:FACTOR``."""
    sizes: list[int] = []
    for value in values:
        if len(sizes) >= MAX_SIZES:
            raise AccsimError(f"--bytes: at most {MAX_SIZES} sizes")
        parts = value.split(":")
        try:
            if len(parts) == 1:
                sizes.append(parse_bytes(parts[0], "--bytes"))
                continue
            if len(parts) not in (2, 3):
                raise ValueError(f"--bytes: expected SIZE or LOW:HIGH[:FACTOR], got {value!r}")
            low, high = parse_bytes(parts[0], "--bytes"), parse_bytes(parts[1], "--bytes")
            factor = float(parts[2]) if len(parts) == 3 else 2.0
        except ValueError as exc:
            raise AccsimError(str(exc)) from None
        if low <= 0 or high < low or not math.isfinite(factor) or factor <= 1:
            raise AccsimError(f"--bytes {value!r}: expected 0 < LOW <= HIGH and FACTOR > 1")
        count = math.floor(math.log(high / low) / math.log(factor) + 1e-9) + 1
        if len(sizes) + count > MAX_SIZES:
            raise AccsimError(f"--bytes {value!r} asks for {count} sizes; at most {MAX_SIZES} in all "
                              f"(use a larger FACTOR)")
        size = float(low)
        while size <= high * (1 + 1e-12):
            sizes.append(int(round(size)))
            size *= factor
    return sizes


def parse_group(text: str | None, cluster_size: int) -> list[int]:
    """``--group``: ``0,1,2,3``, ranges ``0-7``, strided ``0:64:8`` (start:stop:step),
    or any comma-separated mix; default all ranks. Order is kept (it is the ring order)."""
    if not text:
        return list(range(cluster_size))
    ranks: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if ":" in part:
                fields = [int(x) for x in part.split(":")]
                ranks.extend(range(*fields))
            elif "-" in part:
                low, high = (int(x) for x in part.split("-"))
                ranks.extend(range(low, high + 1))
            else:
                ranks.append(int(part))
        except (TypeError, ValueError):
            raise AccsimError(f"--group {text!r}: expected ranks like 0,1,2 or 0-7 or 0:64:8") from None
    bad = [r for r in ranks if not 0 <= r < cluster_size]
    if bad:
        raise AccsimError(f"--group names rank {bad[0]}, which is not in the cluster "
                          f"(ranks 0..{cluster_size - 1})")
    if len(set(ranks)) != len(ranks):
        raise AccsimError(f"--group {text!r} lists a rank twice")
    return ranks
