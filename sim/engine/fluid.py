"""Bandwidth shared by concurrent transfers: a fluid (flow-level) model.

A transfer of ``size`` bytes crosses one or more resources (a memory tier, a
network link). While transfers overlap, each resource's bandwidth is divided
among them by max-min fairness, recomputed whenever a transfer starts or ends;
between those instants every rate is constant, so each transfer's remaining
bytes fall linearly and the next completion time is exact. Two equal
transfers on one resource therefore each take twice as long as one alone.

Reference: D. Bertsekas and R. Gallager, "Data Networks", 2nd ed., Sec. 6.5.2
(max-min fairness and the progressive-filling algorithm).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Mapping, Sequence

import simpy


def max_min_rates(flow_resources: Sequence[Sequence[Hashable]],
                  capacity: Mapping[Hashable, float]) -> list[float]:
    """Max-min fair rates of flows, each crossing the listed resources.

    Progressive filling: raise every unfrozen flow's rate together; when a
    resource saturates, freeze the flows crossing it at their current rate.
    Returns one rate per flow, in the input order.
    """
    users: dict[Hashable, list[int]] = {}
    for index, resources in enumerate(flow_resources):
        for resource in resources:
            users.setdefault(resource, []).append(index)
    rates = [0.0] * len(flow_resources)
    frozen = [False] * len(flow_resources)
    left = {r: float(capacity[r]) for r in users}
    count = {r: len(idx) for r, idx in users.items()}
    remaining = len(flow_resources)
    while remaining:
        share = min(left[r] / count[r] for r in users if count[r])
        limit = share * (1.0 + 1e-12)
        saturated = [r for r in users if count[r] and left[r] / count[r] <= limit]
        for resource in saturated:
            for index in users[resource]:
                if frozen[index]:
                    continue
                frozen[index] = True
                remaining -= 1
                rates[index] = share
                for other in flow_resources[index]:
                    left[other] -= share
                    count[other] -= 1
    return rates


@dataclass(eq=False)
class _Flow:
    size: float
    resources: tuple
    event: simpy.Event
    remaining: float = 0.0
    rate: float = 0.0
    finish_s: float = 0.0
    start_s: float = 0.0
    tag: object = field(default=None)


class FluidNetwork:
    """A set of bandwidth resources (bytes/s) shared by transfers, in one SimPy env.

    ``transfer`` returns an event that succeeds, with the completion time as
    its value, when the last byte has crossed every resource of the transfer.
    """

    def __init__(self, env: simpy.Environment, capacities: Mapping[Hashable, float]):
        self.env = env
        self.capacity = dict(capacities)
        self._flows: list[_Flow] = []
        self._updated_s = 0.0
        self._generation = 0
        self.reallocations = 0

    def transfer(self, size: float, resources: Sequence[Hashable], tag: object = None) -> simpy.Event:
        event = self.env.event()
        if size <= 0:
            event.succeed(self.env.now)
            return event
        for resource in resources:
            if resource not in self.capacity:
                raise KeyError(f"unknown bandwidth resource {resource!r}")
        self._advance()
        self._flows.append(_Flow(size=float(size), resources=tuple(resources), event=event,
                                 remaining=float(size), start_s=self.env.now, tag=tag))
        self._reallocate()
        return event

    @property
    def active(self) -> int:
        return len(self._flows)

    def _advance(self) -> None:
        now = self.env.now
        elapsed = now - self._updated_s
        if elapsed > 0:
            for flow in self._flows:
                flow.remaining -= flow.rate * elapsed
        self._updated_s = now

    def _reallocate(self) -> None:
        self.reallocations += 1
        flows = self._flows
        if not flows:
            return
        if len(flows) == 1:
            flow = flows[0]
            flow.rate = min(self.capacity[r] for r in flow.resources)
        else:
            for flow, rate in zip(flows, max_min_rates([f.resources for f in flows], self.capacity)):
                flow.rate = rate
        now = self.env.now
        for flow in flows:
            flow.finish_s = now + max(flow.remaining, 0.0) / flow.rate
        next_finish = min(flow.finish_s for flow in flows)
        self._generation += 1
        wake = self.env.timeout(next_finish - now, self._generation)
        wake.callbacks.append(self._on_wake)

    def _on_wake(self, event: simpy.Event) -> None:
        if event.value != self._generation:
            return
        self._advance()
        now = self.env.now
        tolerance = 1e-12 * max(1.0, now)
        done = [f for f in self._flows if f.finish_s <= now + tolerance]
        self._flows = [f for f in self._flows if f.finish_s > now + tolerance]
        for flow in done:
            flow.event.succeed(now)
        self._reallocate()
