"""The ``memory.scratchpad`` key of a scenario (validated with sim.schema).

::

    memory:
      scratchpad:
        policy: belady            # lru | belady | ilp
        tier: scratchpad          # default: the device's tier of kind scratchpad
        lower_tier: hbm           # default: the device's default tier (else its first other tier)
        allocation: capacity      # capacity (bytes only) | address (contiguous ranges, first fit)
        compare: [lru]            # also plan these policies and report their traffic
        ilp_max_ops: 16           # policy ilp: largest graph solved as one ILP
        divide_and_conquer: false # policy ilp: above ilp_max_ops, solve windows in turn
        reorder: true             # policy ilp: optimise the op order too (COSMA); false: trace order
        ilp_time_limit_s: 60      # per ILP solve; the best schedule found so far is kept
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sim.schema import Bool, PositiveFloat, PositiveInt, StrictModel

POLICY_NAMES = ("lru", "belady", "ilp")
Policy = Literal["lru", "belady", "ilp"]


class ScratchpadConfig(StrictModel):
    """How a device's scratchpad is managed (see the module docstring)."""

    policy: Policy = "belady"
    tier: str | None = None
    lower_tier: str | None = None
    allocation: Literal["capacity", "address"] = "capacity"
    compare: tuple[Policy, ...] = ()
    ilp_max_ops: PositiveInt = 16
    divide_and_conquer: Bool = False
    reorder: Bool = True
    ilp_time_limit_s: PositiveFloat = Field(default=60.0)
