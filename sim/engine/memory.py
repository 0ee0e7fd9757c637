"""Capacity accounting of memory tiers, per tensor allocation."""

from __future__ import annotations

from sim.errors import CapacityError
from sim.units import format_bytes


class MemoryLedger:
    """Bytes allocated per tier of one device, with the peak and a history.

    ``history`` holds (time_s, tier, used_bytes) after every change, for the
    memory counters of reports. With ``strict=False`` an allocation beyond
    capacity is recorded (the peak exceeds the capacity) instead of raised.
    """

    def __init__(self, device: str, capacities: dict[str, int], strict: bool = True):
        self.device = device
        self.strict = strict
        self.capacity = dict(capacities)
        self.used = {tier: 0 for tier in capacities}
        self.peak = {tier: 0 for tier in capacities}
        self.tensors: dict[str, tuple[str, int]] = {}
        self.history: list[tuple[float, str, int]] = []

    def allocate(self, tensor: str, tier: str, nbytes: int, now_s: float, context: str = "") -> None:
        free = self.capacity[tier] - self.used[tier]
        if nbytes > free and self.strict:
            where = f" for {context}" if context else ""
            raise CapacityError(
                f"out of memory on device {self.device}, tier {tier}{where}: requested "
                f"{nbytes} bytes ({format_bytes(nbytes)}), free {free} bytes ({format_bytes(free)}) "
                f"of {self.capacity[tier]} bytes")
        if tensor in self.tensors:
            self.release(tensor, now_s)
        self.tensors[tensor] = (tier, nbytes)
        self.used[tier] += nbytes
        self.peak[tier] = max(self.peak[tier], self.used[tier])
        self.history.append((now_s, tier, self.used[tier]))

    def release(self, tensor: str, now_s: float) -> None:
        tier, nbytes = self.tensors.pop(tensor)
        self.used[tier] -= nbytes
        self.history.append((now_s, tier, self.used[tier]))
