"""Countable hardware units (SMs, systolic arrays, a vector unit, PIM banks)."""

from __future__ import annotations

from collections import deque
from typing import Callable

import simpy


class UnitPool:
    """``capacity`` identical units taken by kernels, first come first served.

    A kernel asks for the units it can use and is granted what is free (at
    least one), as a GPU's block scheduler fills the SMs left by kernels
    already running; when none is free it waits in FIFO order.
    ``try_acquire`` grants at once or returns 0; ``acquire`` calls
    ``callback(arg, granted)`` now or once units free up; ``request`` is the
    same as a SimPy event. Units left free after a release have nobody
    waiting for them (a running kernel granted fewer than it wanted may take
    them: sim.engine.device).
    """

    def __init__(self, env: simpy.Environment, name: str, capacity: int):
        if capacity < 1:
            raise ValueError(f"{name}: a unit pool needs at least one unit")
        self.env = env
        self.name = name
        self.capacity = capacity
        self.free = capacity
        # callers queued for units, in order (DeviceRuntime.start reads it: units free and nobody
        # queued, it takes them as try_acquire would, without the call)
        self.waiting: deque[tuple[int, Callable[[object, int], None], object]] = deque()

    def try_acquire(self, wanted: int) -> int:
        """Units granted now (0 if the caller must wait)."""
        if self.free and not self.waiting:
            granted = wanted if wanted < self.free else self.free
            self.free -= granted
            return granted
        return 0

    def acquire(self, wanted: int, callback: Callable[[object, int], None], arg: object = None) -> None:
        """Call ``callback(arg, granted)`` as soon as units are free, in FIFO order
        (at once when some are free and nobody waits)."""
        free = self.free
        if free and not self.waiting:
            granted = wanted if wanted < free else free
            self.free = free - granted
            callback(arg, granted)
        else:
            self.waiting.append((wanted, callback, arg))

    def request(self, wanted: int) -> simpy.Event:
        """An event whose value is the number of units granted."""
        event = self.env.event()
        self.acquire(wanted, lambda _, granted: event.succeed(granted))
        return event

    def release(self, count: int) -> None:
        """Return ``count`` units and grant them to the callers waiting, in order."""
        self.free += count
        waiting = self.waiting
        while waiting and self.free:
            wanted, callback, arg = waiting.popleft()
            granted = wanted if wanted < self.free else self.free
            self.free -= granted
            callback(arg, granted)
