"""Countable hardware units (SMs, systolic arrays, a vector unit, PIM banks)."""

from __future__ import annotations

from collections import deque

import simpy


class UnitPool:
    """``capacity`` identical units taken by kernels, first come first served.

    A kernel asks for the units it can use and is granted what is free (at
    least one), as a GPU's block scheduler fills the SMs left by kernels
    already running; when none is free it waits in FIFO order. ``try_acquire``
    grants without creating an event when units are free and nobody waits,
    which keeps the event count per op small.
    """

    def __init__(self, env: simpy.Environment, name: str, capacity: int):
        if capacity < 1:
            raise ValueError(f"{name}: a unit pool needs at least one unit")
        self.env = env
        self.name = name
        self.capacity = capacity
        self.free = capacity
        self._waiting: deque[tuple[int, simpy.Event]] = deque()

    def try_acquire(self, wanted: int) -> int:
        """Units granted now (0 if the caller must wait with ``request``)."""
        if self.free and not self._waiting:
            granted = min(wanted, self.free)
            self.free -= granted
            return granted
        return 0

    def request(self, wanted: int) -> simpy.Event:
        """An event whose value is the number of units granted, once some are free."""
        event = self.env.event()
        self._waiting.append((wanted, event))
        self._serve()
        return event

    def release(self, count: int) -> None:
        self.free += count
        self._serve()

    def _serve(self) -> None:
        while self._waiting and self.free:
            wanted, event = self._waiting.popleft()
            granted = min(wanted, self.free)
            self.free -= granted
            event.succeed(granted)
