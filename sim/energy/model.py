"""The energy model: dynamic energy per FLOP and per byte, static power.

Energy of an op (exactly, no other term)::

    E_op = flops x e_flop(unit, dtype) + sum over tiers (bytes on tier x e_byte(tier))

and of a transfer over network links: bytes x e_byte(link kind) per link
crossed. A device also draws static (idle and leakage) power for the whole
run::

    E_static = P_static x makespan

Units in the spec: picojoules (``_pj``) per FLOP or per byte, watts (``_w``)
for power; results in joules (``_j``).

The figures per device live in its spec's ``energy`` section
(topologies/devices/*.yaml), per link type in the link type's ``energy``
section (topologies/links/*.yaml), each with its source (docs/energy.md
lists them all). Reference
points for the orders of magnitude (M. Horowitz, "Computing's energy
problem (and what we can do about it)", ISSCC 2014, 45 nm, 0.9 V): 16-bit
floating-point multiply 1.1 pJ and add 0.4 pJ, 32-bit FP multiply 3.7 pJ and
add 0.9 pJ; reading 64 bits from an 8 KB SRAM 10 pJ (~1.25 pJ/byte) and
from DRAM 1.3-2.6 nJ (~20-40 pJ/bit, 160-320 pJ/byte).
"""

from __future__ import annotations

from typing import Literal, Mapping, Optional

from pydantic import Field

from sim.hardware.dtypes import DTYPE_BYTES, DtypeName
from sim.schema import NonNegativeFloat, PositiveFloat, StrictModel

PJ = 1e-12
UNIT_KINDS = ("sm_array", "systolic_array", "vector", "pim")


class EnergySpec(StrictModel):
    """A device's energy figures (all optional; a missing figure is 0 J, and
    reports say which figures a device lacks).

    ``flop_pj``: unit kind -> dtype -> pJ per FLOP (a MAC is 2 FLOPs);
    ``byte_pj``: memory tier name -> pJ per byte moved on that tier;
    ``static_w``: static power of the whole device (W);
    ``power_limit_w``: the board power limit (W) the SM clock is lowered to
    hold (sim.energy.governor; absent: the clock is never lowered);
    ``source``: where the figures come from.
    """

    flop_pj: dict[Literal["sm_array", "systolic_array", "vector", "pim"],
                  dict[DtypeName, NonNegativeFloat]] = Field(default_factory=dict)
    byte_pj: dict[str, NonNegativeFloat] = Field(default_factory=dict)
    static_w: NonNegativeFloat = 0.0
    power_limit_w: Optional[PositiveFloat] = None
    source: str = ""

    def e_flop_pj(self, unit: str, dtype: str) -> float:
        """pJ per FLOP of ``unit`` in ``dtype``; a dtype the table lacks is priced
        as the nearest wider one it lists (more bits never cost less)."""
        table = self.flop_pj.get(unit) or {}
        if dtype in table:
            return table[dtype]
        width = DTYPE_BYTES.get(dtype, 2)
        wider = sorted((DTYPE_BYTES.get(d, 99), d) for d in table if DTYPE_BYTES.get(d, 99) >= width)
        if wider:
            return table[wider[0][1]]
        return max(table.values(), default=0.0)

    def e_byte_pj(self, tier: str) -> float:
        return self.byte_pj.get(tier, 0.0)

    def mismatch(self, tiers: tuple[str, ...], units: tuple[str, ...]) -> str | None:
        """What in these figures names a tier or unit kind the device lacks
        (``key: message``), or None."""
        for tier in self.byte_pj:
            if tier not in tiers:
                return f"byte_pj.{tier}: the device has no memory tier {tier!r}; expected some of {list(tiers)}"
        for unit in self.flop_pj:
            if unit not in units:
                return f"flop_pj.{unit}: the device has no {unit}; expected some of {list(units)}"
        return None


class LinkEnergySpec(StrictModel):
    """A link type's energy (the ``energy`` section of ``topologies/links/NAME.yaml``):
    ``byte_pj`` picojoules per byte carried over one link of the type in one
    direction (both ends' transmit and receive circuits, and optics where the
    link has them); ``source`` where the figure comes from."""

    byte_pj: NonNegativeFloat
    source: str = ""


def op_energy_j(flops: float, e_flop_pj: float, bytes_by_tier: Mapping[str, float],
                e_byte_pj: Mapping[str, float]) -> float:
    """E = flops x e_flop + sum(bytes x e_byte), in joules."""
    dynamic_pj = flops * e_flop_pj
    for tier, nbytes in bytes_by_tier.items():
        dynamic_pj += nbytes * e_byte_pj.get(tier, 0.0)
    return dynamic_pj * PJ


def static_energy_j(static_w: float, makespan_s: float) -> float:
    """E_static = P_static x makespan."""
    return static_w * makespan_s
