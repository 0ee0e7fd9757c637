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
    ``try_acquire`` grants at once or returns 0; ``wait`` registers a callback
    for when units free up; ``request`` is the same as a SimPy event.
    """

    def __init__(self, env: simpy.Environment, name: str, capacity: int):
        if capacity < 1:
            raise ValueError(f"{name}: a unit pool needs at least one unit")
        self.env = env
        self.name = name
        self.capacity = capacity
        self.free = capacity
        self._waiting: deque[tuple[int, Callable[[int], None]]] = deque()

    def try_acquire(self, wanted: int) -> int:
        """Units granted now (0 if the caller must wait)."""
        if self.free and not self._waiting:
            granted = wanted if wanted < self.free else self.free
            self.free -= granted
            return granted
        return 0

    def wait(self, wanted: int, callback: Callable[[int], None]) -> None:
        """Call ``callback(granted)`` once units are free, in FIFO order."""
        self._waiting.append((wanted, callback))
        self._serve()

    def request(self, wanted: int) -> simpy.Event:
        """An event whose value is the number of units granted."""
        event = self.env.event()
        self.wait(wanted, event.succeed)
        return event

    def release(self, count: int) -> None:
        self.free += count
        if self._waiting:
            self._serve()

    def _serve(self) -> None:
        while self._waiting and self.free:
            wanted, callback = self._waiting.popleft()
            granted = min(wanted, self.free)
            self.free -= granted
            callback(granted)
