"""The simulation environment: SimPy's, plus a calendar of plain callbacks.

The hot path of the simulator (an op's compute timer, a transfer's
completion, a collective's next step) needs "call f(x) at time t", nothing
more. A SimPy event for each costs an Event object, its callback list and
the dispatch through it; here such callbacks live in a second heap of the
same Environment, and ``step`` takes whichever of the two heads comes first.
Both heaps order by (time, priority, event id) with ids from SimPy's own
counter and calendar entries at NORMAL priority, so a callback scheduled
with ``at`` runs exactly where a SimPy event scheduled at that moment would:
processes, timeouts and ``run(until=...)`` keep their semantics, and runs
stay deterministic.

SimPy documents subclassing ``Environment`` and overriding ``step`` as the
way to change how time advances (``simpy.rt.RealtimeEnvironment`` does so).
The per-op hot paths in sim.engine read ``env._now``, the attribute behind
SimPy's ``now`` property, to skip a property call per read.
"""

from __future__ import annotations

from heapq import heappop, heappush
from typing import Any, Callable

import simpy
from simpy.core import EmptySchedule, Infinity, StopSimulation
from simpy.events import NORMAL


def cancel(entry: list) -> None:
    """Make a scheduled calendar entry (``[time_s, eid, callback, arg]``) a no-op."""
    entry[2] = None


class Environment(simpy.Environment):
    """A SimPy Environment that also runs ``callback(arg)`` at given times.

    ``at`` returns the entry (a list ``[time_s, eid, callback, arg]``, so the
    heap compares entries in C); ``cancel(entry)`` makes it a no-op.
    ``fired`` counts the callbacks run.
    """

    def __init__(self, initial_time: float = 0.0):
        super().__init__(initial_time)
        self._calendar: list[list] = []
        self.fired = 0

    def at(self, time_s: float, callback: Callable[[Any], None], arg: Any = None) -> list:
        """Run ``callback(arg)`` at ``time_s`` (now if that has passed)."""
        if time_s < self._now:
            time_s = self._now
        entry = [time_s, next(self._eid), callback, arg]
        heappush(self._calendar, entry)
        return entry

    def _drop_cancelled(self) -> None:
        calendar = self._calendar
        while calendar and calendar[0][2] is None:
            heappop(calendar)

    def peek(self) -> float:
        """Time of the next SimPy event or calendar callback (``Infinity`` if none)."""
        self._drop_cancelled()
        head = self._calendar[0][0] if self._calendar else Infinity
        return min(head, super().peek())

    def step(self) -> None:
        """Process the next SimPy event or run the next calendar callback."""
        calendar = self._calendar
        if calendar:
            entry = calendar[0]
            queue = self._queue
            if not queue or entry[0] < queue[0][0] or (
                    entry[0] == queue[0][0] and (NORMAL, entry[1]) < queue[0][1:3]):
                heappop(calendar)
                callback = entry[2]
                if callback is not None:  # else cancelled: dropped without moving time
                    self._now = entry[0]
                    self.fired += 1
                    callback(entry[3])
                return
        elif not self._queue:
            raise EmptySchedule()
        super().step()

    def run(self, until: Any = None) -> Any:
        """SimPy's ``run``; with no ``until``, calendar callbacks due while no
        SimPy event is pending run from this loop rather than through ``step``
        (the same entries in the same order: ``step`` would pick the calendar's
        head too). A simulation whose events are all callbacks spends about a
        tenth of its loop in that call and SimPy's loop around it."""
        if until is not None:
            return super().run(until)
        calendar = self._calendar
        queue = self._queue
        fired = 0
        try:
            while True:
                if calendar and not queue:
                    entry = heappop(calendar)
                    callback = entry[2]
                    if callback is not None:  # else cancelled: dropped without moving time
                        self._now = entry[0]
                        fired += 1
                        callback(entry[3])
                else:
                    self.step()
        except StopSimulation as exc:
            return exc.args[0]
        except EmptySchedule:
            return None
        finally:
            self.fired += fired

    def scheduled(self) -> int:
        """SimPy events and calendar entries scheduled so far (their ids are 0, 1, ...)."""
        return next(self._eid)
