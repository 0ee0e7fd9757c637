"""A calendar of future callbacks driven by one pending SimPy timeout.

The hot path of the simulator (an op's compute timer, a transfer's
completion) schedules plain callbacks here instead of creating a SimPy event
each: the calendar keeps them in a heap and keeps exactly one SimPy timeout
armed for the earliest, so a burst of completions at one instant costs one
SimPy event. Entries at the same time run in the order they were scheduled,
which keeps runs deterministic. Callbacks may schedule entries at the
current time; they run in the same pass, and the timeout for the next
instant is armed once, when the pass is over.
"""

from __future__ import annotations

import heapq
import math
from typing import Callable

import simpy


def cancel(entry: list) -> None:
    """Make a scheduled entry (``[time_s, seq, callback, arg, live]``) a no-op."""
    entry[4] = False


class Calendar:
    """Callbacks at simulated times (seconds), on one SimPy Environment.

    Entries are lists ``[time_s, seq, callback, arg, live]`` so that the heap
    compares them in C; ``cancel(entry)`` makes one a no-op.
    """

    def __init__(self, env: simpy.Environment):
        self.env = env
        self._heap: list[list] = []
        self._seq = 0
        self._armed_at = math.inf
        self._token = 0
        self._firing = False
        self.fired = 0

    def at(self, time_s: float, callback: Callable, arg: object = None) -> list:
        """Run ``callback(arg)`` at ``time_s`` (not before now)."""
        now = self.env.now
        if time_s < now:
            time_s = now
        entry = [time_s, self._seq, callback, arg, True]
        self._seq += 1
        heapq.heappush(self._heap, entry)
        if time_s < self._armed_at and not self._firing:
            self._arm(time_s)
        return entry

    def _arm(self, time_s: float) -> None:
        self._armed_at = time_s
        self._token += 1
        timeout = self.env.timeout(time_s - self.env.now, self._token)
        timeout.callbacks.append(self._fire)

    def _fire(self, event: simpy.Event) -> None:
        if event.value != self._token:
            return
        self._armed_at = math.inf
        heap = self._heap
        now = self.env.now
        limit = now + abs(now) * 1e-15
        pop = heapq.heappop
        self._firing = True
        try:
            while heap and heap[0][0] <= limit:
                entry = pop(heap)
                if entry[4]:
                    self.fired += 1
                    entry[2](entry[3])
        finally:
            self._firing = False
        while heap and not heap[0][4]:
            pop(heap)
        if heap:
            self._arm(heap[0][0])
