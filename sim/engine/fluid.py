"""Bandwidth shared by concurrent transfers: a fluid (flow-level) model.

A transfer of ``size`` bytes crosses one or more resources (a memory tier, a
network link). While transfers overlap, each resource's bandwidth is divided
among them by max-min fairness, recomputed whenever a transfer starts or ends;
between those instants every rate is constant, so each transfer's remaining
bytes fall linearly and its completion time is exact. Two equal transfers on
one resource therefore each take twice as long as one alone.

Only the transfers connected to the one that started or ended (through shared
resources) are re-rated, and each completion is a calendar entry, so a
transfer costs no SimPy event of its own.

A transfer may carry a rate ceiling (``max_rate``): the most it can use
whatever the links offer, such as the bandwidth the thread blocks of an NCCL
collective can drive. A ceiling is a private resource of that capacity
crossed by the transfer alone, so progressive filling freezes the transfer at
its ceiling when no shared resource saturates first.

Reference: D. Bertsekas and R. Gallager, "Data Networks", 2nd ed., Sec. 6.5.2
(max-min fairness and the progressive-filling algorithm).
"""

from __future__ import annotations

import math
from array import array
from typing import Callable, Hashable, Mapping, Sequence

import simpy

from sim.engine.calendar import Environment, cancel


def max_min_rates(flow_resources: Sequence[Sequence[Hashable]],
                  capacity: Mapping[Hashable, float],
                  flow_weights: Sequence[Sequence[float]] | None = None,
                  flow_caps: Sequence[float] | None = None) -> list[float]:
    """Max-min fair rates of flows, each crossing the listed resources.

    Progressive filling: raise every unfrozen flow's rate together; when a
    resource saturates, freeze the flows crossing it at their current rate.
    A flow with weight w on a resource uses w times its rate there (a batch
    of w equal transfers moving in lockstep). A flow's cap (``flow_caps``,
    inf for none) freezes it when the rising rate reaches it. Returns one
    rate per flow, in the input order.
    """
    users: dict[Hashable, list[int]] = {}
    load: dict[Hashable, float] = {}
    for index, resources in enumerate(flow_resources):
        weights = flow_weights[index] if flow_weights is not None else None
        for position, resource in enumerate(resources):
            users.setdefault(resource, []).append(index)
            load[resource] = load.get(resource, 0.0) + (weights[position] if weights else 1.0)
    rates = [0.0] * len(flow_resources)
    frozen = [False] * len(flow_resources)
    left = {r: float(capacity[r]) for r in users}
    remaining = len(flow_resources)
    caps = list(flow_caps) if flow_caps is not None else [math.inf] * len(flow_resources)
    while remaining:
        share = min((left[r] / load[r] for r in users if load[r] > 1e-12), default=math.inf)
        share = min([share] + [c for c, done in zip(caps, frozen) if not done])
        limit = share * (1.0 + 1e-12)
        hit = [i for r in users if load[r] > 1e-12 and left[r] / load[r] <= limit for i in users[r]]
        hit += [i for i, (c, done) in enumerate(zip(caps, frozen)) if not done and c <= limit]
        for index in hit:
            if frozen[index]:
                continue
            frozen[index] = True
            remaining -= 1
            rates[index] = share
            weights = flow_weights[index] if flow_weights is not None else None
            for position, other in enumerate(flow_resources[index]):
                w = weights[position] if weights else 1.0
                left[other] -= share * w
                load[other] -= w
    return rates


class Flow:
    """One transfer in progress.

    ``bytes_end_s`` is when its last byte crossed; ``end_s`` when it completed,
    which is never before ``not_before`` (an op whose compute outlasts its
    memory traffic completes with its compute). ``path`` (a ``FlowPath``) is
    set by VectorFluidNetwork only.
    """

    __slots__ = ("resources", "weights", "remaining", "rate", "mark_s", "entry", "on_done",
                 "end_s", "bytes_end_s", "not_before", "lazy", "drained", "tag",
                 "path", "max_rate")

    def __init__(self, size: float, resources: tuple, on_done: Callable, start_s: float,
                 not_before: float, tag, weights: tuple | None = None):
        self.resources = resources
        self.weights = weights
        self.remaining = size
        self.rate = 0.0
        self.mark_s = start_s
        self.entry = None
        self.on_done = on_done
        self.end_s = None
        self.bytes_end_s = None
        self.not_before = not_before
        self.lazy = False
        self.drained = False
        self.tag = tag
        self.max_rate = math.inf


class FluidNetwork:
    """Bandwidth resources (bytes/s) shared by transfers, on one Environment's calendar.

    A transfer alone on its resources whose last byte crosses before its
    ``not_before`` time gets a single calendar entry at ``not_before``; its
    bandwidth is handed back lazily, the moment another transfer arrives on
    one of its resources after its bytes are done.
    """

    def __init__(self, env: Environment, capacities: Mapping[Hashable, float]):
        if not isinstance(env, Environment):
            raise TypeError("a FluidNetwork runs on sim.engine.calendar.Environment (a SimPy "
                            f"Environment with a calendar of callbacks), not {type(env).__name__}")
        self.env = env
        self.capacity: dict[Hashable, float] = {}
        self._users: dict[Hashable, list[Flow]] = {}
        self._multi: dict[Hashable, int] = {}
        self.add_resources(capacities)

    def add_resources(self, capacities: Mapping[Hashable, float]) -> None:
        for resource, capacity in capacities.items():
            self.capacity[resource] = capacity
            self._users.setdefault(resource, [])
            self._multi.setdefault(resource, 0)

    def start(self, size: float, resources: Sequence[Hashable], on_done: Callable[[Flow], None],
              tag: object = None, not_before: float = 0.0,
              weights: Sequence[float] | None = None, max_rate: float = math.inf) -> Flow:
        """Start a transfer; ``on_done(flow)`` runs when its last byte has crossed
        every resource, or at ``not_before`` if that is later. ``weights`` (one
        per resource) make the flow a batch of equal transfers in lockstep: it
        uses weight x its rate on that resource. ``max_rate`` caps its rate."""
        if weights is None and len(resources) == 1 and size > 0 and max_rate == math.inf:
            return self.start_one(size, resources, on_done, tag, not_before)
        return self._start_batch(size, resources, on_done, tag, not_before, weights, max_rate)

    def start_one(self, size: float, resources: tuple, on_done: Callable[[Flow], None], tag: object = None,
                  not_before: float = 0.0) -> Flow:
        """``start`` of a transfer over one resource (``resources``, a 1-tuple),
        unweighted and uncapped, as a device's memory traffic is (once per op:
        the device calls it directly, which skips ``start``'s checks of weights
        and cap; with the units taken in place in ``DeviceRuntime.start``, GPT-3
        175B's event loop 1.93 -> 1.88 CPU s, mean of three)."""
        if size <= 0:
            return self._start_batch(size, resources, on_done, tag, not_before, None, math.inf)
        now = self.env._now
        resource = resources[0]
        flows = self._users[resource]
        flow = Flow(size, resources, on_done, now, not_before, tag)
        flows.append(flow)
        if len(flows) > 1:
            self._rebalance(flow.resources)
            return flow
        # alone on its resource: full bandwidth, one calendar entry
        rate = flow.rate = self.capacity[resource]
        bytes_end = flow.bytes_end_s = now + size / rate
        if bytes_end < not_before:
            flow.lazy = True
            flow.entry = self.env.at(not_before, self._finish, flow)
        else:
            flow.entry = self.env.at(bytes_end, self._finish, flow)
        return flow

    def _start_batch(self, size: float, resources: Sequence[Hashable], on_done: Callable[[Flow], None],
                     tag: object, not_before: float, weights: Sequence[float] | None, max_rate: float) -> Flow:
        """``start`` of any other transfer (several resources, weights, a cap, or no bytes)."""
        now = self.env._now
        resources = tuple(resources)
        if weights is not None and all(w == 1 for w in weights):
            weights = None
        flow = Flow(float(size), resources, on_done, now, not_before, tag,
                    tuple(weights) if weights is not None else None)
        flow.max_rate = max_rate
        if size <= 0 or not resources:
            flow.bytes_end_s = now
            flow.drained = True
            flow.entry = self.env.at(max(now, not_before), self._finish, flow)
            return flow
        for resource in resources:
            self._users[resource].append(flow)
            self._multi[resource] += 1
        self._rebalance(resources)
        return flow

    def move_not_before(self, flow: Flow, not_before: float) -> None:
        """Change when ``flow`` may complete at the earliest (an op's compute
        phase re-timed while its memory traffic runs)."""
        flow.not_before = not_before
        if flow.drained or flow.lazy:  # its calendar entry is at the old not_before
            cancel(flow.entry)
            if flow.lazy and flow.bytes_end_s >= not_before:
                flow.lazy = False
                not_before = flow.bytes_end_s
            flow.entry = self.env.at(not_before, self._finish, flow)

    def transfer(self, size: float, resources: Sequence[Hashable], tag: object = None,
                 weights: Sequence[float] | None = None) -> simpy.Event:
        """As ``start``, for SimPy processes: an event whose value is the end time."""
        event = self.env.event()
        self.start(size, resources, lambda flow: event.succeed(flow.end_s), tag, weights=weights)
        return event

    def _component(self, resources: tuple) -> list[Flow]:
        """Flows connected to ``resources`` through shared resources, in a fixed order."""
        seen_resources = set()
        seen_flows = set()
        order: list[Flow] = []
        stack = list(resources)
        while stack:
            resource = stack.pop()
            if resource in seen_resources:
                continue
            seen_resources.add(resource)
            for flow in self._users[resource]:
                if id(flow) not in seen_flows:
                    seen_flows.add(id(flow))
                    order.append(flow)
                    stack.extend(r for r in flow.resources if r not in seen_resources)
        return order

    def _remove(self, flow: Flow) -> None:
        multi = len(flow.resources) > 1 or flow.weights is not None or flow.max_rate != math.inf
        for resource in flow.resources:
            self._users[resource].remove(flow)
            if multi:
                self._multi[resource] -= 1
        flow.drained = True
        flow.remaining = 0.0

    def _flows_to_rate(self, resources: tuple) -> list[Flow]:
        single = len(resources) == 1 and not self._multi[resources[0]]
        flows = self._users[resources[0]] if single else self._component(resources)
        lazy = [f for f in flows if f.lazy and f.bytes_end_s <= self.env.now]
        if lazy:
            for flow in lazy:
                flow.lazy = False
                self._remove(flow)
            flows = self._users[resources[0]] if single else self._component(resources)
        return flows

    def _rebalance(self, resources: tuple) -> None:
        flows = self._flows_to_rate(resources)
        if not flows:
            return
        if len(resources) == 1 and not self._multi[resources[0]]:
            share = self.capacity[resources[0]] / len(flows)
            rates = [share] * len(flows)
        else:
            rates = max_min_rates([f.resources for f in flows], self.capacity,
                                  [f.weights for f in flows], [f.max_rate for f in flows])
        now = self.env.now
        at = self.env.at
        alone = len(flows) == 1
        for flow, rate in zip(flows, rates):
            if rate == flow.rate and not (flow.lazy and not alone):
                continue
            flow.remaining -= flow.rate * (now - flow.mark_s)
            flow.mark_s = now
            flow.rate = rate
            if flow.entry is not None:
                cancel(flow.entry)
            bytes_end = now + (flow.remaining if flow.remaining > 0 else 0.0) / rate
            flow.bytes_end_s = bytes_end
            flow.lazy = alone and bytes_end < flow.not_before
            flow.entry = at(flow.not_before if flow.lazy else bytes_end, self._finish, flow)

    def _finish(self, flow: Flow) -> None:
        now = self.env._now
        if not flow.drained:
            if not flow.lazy:
                flow.bytes_end_s = now
            flow.lazy = False
            resources = flow.resources
            if len(resources) == 1 and flow.weights is None and flow.max_rate == math.inf:
                others = self._users[resources[0]]
                others.remove(flow)
                flow.drained = True
                flow.remaining = 0.0
                if others:
                    self._rebalance(resources)
            else:
                self._remove(flow)
                self._rebalance(resources)
            if flow.not_before > now:
                flow.entry = self.env.at(flow.not_before, self._finish, flow)
                return
        flow.entry = None  # the entry holds the flow: drop the cycle so refcounting frees both
        flow.end_s = now
        flow.on_done(flow)


def max_min_rates_vectorized(flow_of_entry, resource_of_entry, weight_of_entry, capacity,
                             flows: int, caps=None):
    """``max_min_rates`` over entries (flow, resource, weight) with numpy.

    Same progressive filling: each round finds the smallest fair share left
    on any loaded resource (or the smallest cap of an unfrozen flow), freezes
    every flow crossing a resource at that share (and every flow capped at
    it), and takes their usage off the capacities. One round costs a few
    passes over the entries; rounds are at most the number of distinct
    bottleneck levels. The first round needs no live-entry masks (nothing is
    frozen yet), and the capacities left after the last are not computed:
    symmetric runs mostly end in one round (about 3x faster, same values).
    """
    import numpy as np

    rates = np.zeros(flows)
    frozen = np.zeros(flows, dtype=bool)
    left = capacity.astype(float)
    size = len(capacity)
    caps = np.full(flows, np.inf) if caps is None else caps
    live = None     # the first round: every entry is live, no masking
    while flows:
        if live is None:
            load = np.bincount(resource_of_entry, weights=weight_of_entry, minlength=size)
        else:
            load = np.bincount(resource_of_entry[live], weights=weight_of_entry[live], minlength=size)
        loaded = load > 1e-12
        share = np.full(size, np.inf)
        share[loaded] = left[loaded] / load[loaded]
        level = min(share.min(), caps[~frozen].min())
        saturated = share <= level * (1.0 + 1e-12)
        hit = saturated[resource_of_entry]
        if live is not None:
            hit &= live
        newly = caps <= level * (1.0 + 1e-12)
        newly[flow_of_entry[hit]] = True
        newly &= ~frozen
        rates[newly] = level
        frozen |= newly
        if frozen.all():    # (one round, the common case: every flow meets a saturated resource)
            return rates
        used = newly[flow_of_entry]
        left -= np.bincount(resource_of_entry[used], weights=weight_of_entry[used] * level, minlength=size)
        live = ~frozen[flow_of_entry]
    return rates


class FlowPath:
    """What ``VectorFluidNetwork.start`` needs of a resource list, computed once
    and reused by every flow over it: resource ids (``ids``, a tuple), weights
    (``weights``, a tuple of floats), the rate alone on it (``alone``), the ids
    as a bit mask (``mask``) and whether every weight is 1 on distinct
    resources (``unit``). ``idx`` and ``w`` are the ids and weights as numpy
    arrays, filled in by the network once it has imported numpy (None before).
    ``overlaps`` remembers, per other path, whether the two share a resource
    (``VectorFluidNetwork._overlaps``); None for a path made for one flow."""

    __slots__ = ("ids", "weights", "alone", "mask", "unit", "idx", "w", "overlaps")

    def __init__(self, ids: tuple, weights: tuple, capacity: list):
        self.ids = ids
        self.weights = weights
        # capacity over weight, as numpy divides (a weight of 0 leaves the resource unlimited)
        self.alone = min((capacity[i] / x if x else math.inf for i, x in zip(ids, weights)),
                         default=math.inf)
        mask = 0
        for i in ids:
            mask |= 1 << i
        self.mask = mask
        self.unit = all(x == 1.0 for x in weights) and len(set(ids)) == len(ids)
        self.idx = None
        self.w = None
        self.overlaps: dict[FlowPath, bool] | None = {}


class VectorFluidNetwork(FluidNetwork):
    """A FluidNetwork for many multi-resource flows (network links).

    Resources get integer ids; a flow's resources and weights are a
    ``FlowPath``. A flow whose every resource carries no other flow runs at
    its bottleneck rate without touching the others (the common case for
    intra-node traffic); otherwise the max-min rates of all active flows are
    recomputed with ``max_min_rates_vectorized`` and only flows whose rate
    changed are re-scheduled. ``not_before`` is not supported here.

    The recomputation runs once per simulated instant, however many flows
    start or end at it (a calendar entry at the current time, run after the
    callbacks already due then): rates set at an instant and replaced at the
    same instant move no bytes, so the result is the one the last of those
    recomputations would give, at the cost of one. Symmetric full-fidelity
    runs start hundreds of equal collectives at one instant; recomputing at
    each start made their cost grow with the square of the flows.

    numpy is imported on first need (a recomputation, or ``COUNT_FROM``
    flows active at once): until then capacities and flow counts are Python
    containers, so a run whose flows never share a resource (one collective
    inside one node) does not pay numpy's import, about a quarter of
    ``accsim collective``'s start-up.
    """

    COUNT_FROM = 16
    ONE_ROUND = True    # the first round of max-min from the flow counts when it settles every rate

    def __init__(self, env: Environment, capacities: Mapping[Hashable, float]):
        self._ids: dict[Hashable, int] = {}
        self._caps: list[float] = []     # capacity by resource id
        self._np = None                  # numpy, once imported (see numpy())
        self._cap = None                 # _caps as a numpy array, from then on
        # flows per resource: an array.array (fast item access, for short paths) and,
        # once numpy is imported, a numpy view of the same memory (fancy indexing, for long ones)
        self._count = array("q")
        self._count_view = None
        self._active: dict[Flow, None] = {}     # in order of arrival (an ordered set)
        # whether a flow shares a resource: with few flows active, bit masks of their
        # resources are compared; from COUNT_FROM on, flows per resource are counted
        self._counting = False
        self._weighted = 0      # active flows with a weight other than 1 (see _one_round)
        self._pending = None
        super().__init__(env, {})
        self.add_resources(capacities)

    def numpy(self):
        """numpy, imported on first call; from then on capacities and flow
        counts have numpy views and every active flow's path its arrays."""
        np = self._np
        if np is None:
            import numpy as np

            self._np = np
            self._cap = np.array(self._caps, dtype=float)
            self._count_view = np.frombuffer(self._count, dtype=np.int64)
            for flow in self._active:
                self._fill(flow.path)
        return np

    def add_resources(self, capacities: Mapping[Hashable, float]) -> None:
        ids = self._ids
        caps = self._caps
        new = 0
        for resource, capacity in capacities.items():
            self.capacity[resource] = capacity
            index = ids.get(resource)
            if index is None:
                ids[resource] = len(caps)
                caps.append(float(capacity))
                new += 1
            else:
                caps[index] = float(capacity)
        np = self._np
        if new:
            self._count_view = None      # release the buffer, so the array may grow
            self._count.extend(0 for _ in range(new))
            if np is not None:
                self._count_view = np.frombuffer(self._count, dtype=np.int64)
        if np is not None and capacities:
            self._cap = np.array(caps, dtype=float)

    def arrays(self, resources: Sequence[Hashable], weights: Sequence[float] | None) -> FlowPath:
        """What ``start`` needs of a resource list, for reuse (its ``arrays``)."""
        ids = tuple(map(self._ids.__getitem__, resources))
        path = FlowPath(ids, (1.0,) * len(ids) if weights is None else tuple(map(float, weights)), self._caps)
        if self._np is not None:
            self._fill(path)
        return path

    def arrays_of(self, idx, w) -> FlowPath:
        """As ``arrays``, of resource ids ``idx`` (an int64 array) with weights
        ``w`` (a float array): for callers that built them with ``numpy()``."""
        self.numpy()
        path = FlowPath(tuple(idx.tolist()), tuple(w.tolist()), self._caps)
        path.idx, path.w = idx, w
        return path

    def _fill(self, path: FlowPath) -> None:
        if path.idx is None:
            np = self._np
            path.idx = np.array(path.ids, dtype=np.int64)
            path.w = np.array(path.weights, dtype=float)

    def start(self, size: float, resources: Sequence[Hashable], on_done: Callable[[Flow], None],
              tag: object = None, not_before: float = 0.0,
              weights: Sequence[float] | None = None, arrays: FlowPath | None = None,
              max_rate: float = math.inf) -> Flow:
        resources = tuple(resources)
        weights = tuple(weights) if weights is not None else None
        if size <= 0 or not resources:
            now = self.env._now
            flow = Flow(float(size), resources, on_done, now, 0.0, tag, weights)
            flow.max_rate = max_rate
            flow.bytes_end_s = now
            flow.drained = True
            flow.entry = self.env.at(now, self._finish, flow)
            return flow
        if arrays is None:
            arrays = self.arrays(resources, weights)
            arrays.overlaps = None     # made for this flow: not remembered by the others
        return self.start_path(size, resources, weights, arrays, on_done, max_rate, tag)

    def start_one(self, size: float, resources: tuple, on_done: Callable[[Flow], None], tag: object = None,
                  not_before: float = 0.0) -> Flow:
        """As ``start`` (FluidNetwork's fast path for one resource does not apply here)."""
        return self.start(size, resources, on_done, tag, not_before)

    def start_path(self, size: float, resources: tuple, weights: tuple | None, path: FlowPath,
                   on_done: Callable[[Flow], None], max_rate: float = math.inf, tag: object = None) -> Flow:
        """``start`` of a flow of ``size`` > 0 bytes over a non-empty tuple of
        ``resources`` whose ``FlowPath`` (``arrays``) is at hand, arguments by
        position: a collective's step (sim.network.runtime) starts one per
        step, without the conversions and checks ``start`` makes on any input
        (under cProfile, on GPT-3 175B's loop, the function's own time went from
        0.41 to 0.36 s, 116k calls)."""
        now = self.env._now
        flow = Flow(float(size), resources, on_done, now, 0.0, tag, weights)
        flow.max_rate = max_rate
        active = self._active
        if not self._counting and len(active) >= self.COUNT_FROM:
            self._start_counting()
        if path.idx is None and self._np is not None:
            self._fill(path)
        flow.path = path
        if not path.unit:
            self._weighted += 1
        if self._counting:
            shared = self._take(path, 1)
        else:   # (no call when nothing else is active: most flows of a folded run)
            shared = self._overlaps(path) if active else False
        active[flow] = None
        if shared:
            self._rebalance_soon()
            return flow
        # alone on its resources: its bottleneck rate (as _set_rate, for a flow that moved nothing yet)
        rate = flow.rate = path.alone if path.alone < max_rate else max_rate
        end = flow.bytes_end_s = now if rate == math.inf else now + flow.remaining / rate
        flow.entry = self.env.at(end, self._finish, flow)
        return flow

    def _overlaps(self, path: FlowPath) -> bool:
        """Whether an active flow shares a resource with ``path`` (while few flows
        are active): their bit masks meet. On a large cluster a mask has tens of
        thousands of bits and an AND costs a few tenths of a microsecond, so the
        answer is remembered per pair of paths reused from flow to flow (a
        collective's steps keep theirs: ``NetworkRuntime.pattern``)."""
        overlaps = path.overlaps
        if overlaps is None:
            mask = path.mask
            for other in self._active:
                if other.path.mask & mask:
                    return True
            return False
        for other in self._active:
            other_path = other.path
            hit = overlaps.get(other_path)
            if hit is None:
                hit = other_path.mask & path.mask != 0
                if other_path.overlaps is not None:
                    overlaps[other_path] = hit
            if hit:
                return True
        return False

    def _start_counting(self) -> None:
        """Count flows per resource from now on (numpy's views need it imported)."""
        self._counting = True
        self.numpy()
        for other in self._active:
            self._take(other.path, 1)

    def _take(self, path: FlowPath, step: int) -> bool:
        """Add ``step`` to the flow count of each resource of ``path``; whether any
        of them carries another flow (after adding one, or after removing one)."""
        ids = path.ids
        if len(ids) > 16:   # numpy pays off on long paths (rings, mirrored groups)
            view = self._count_view
            idx = path.idx
            before = view[idx]
            view[idx] = before + step
            # shared after adding one: some count was >= 1 before; after removing one: >= 2
            return bool(before.max() > (0 if step > 0 else 1))
        count = self._count
        shared = False
        threshold = 1 if step > 0 else 0
        for i in ids:
            value = count[i] + step
            count[i] = value
            if value > threshold:
                shared = True
        return shared

    def _set_rate(self, flow: Flow, rate: float, now: float) -> None:
        flow.remaining -= flow.rate * (now - flow.mark_s)
        flow.mark_s = now
        flow.rate = rate
        if flow.entry is not None:
            cancel(flow.entry)
        if rate == math.inf:
            end = now
        else:
            end = now + (flow.remaining if flow.remaining > 0 else 0.0) / rate
        flow.bytes_end_s = end
        flow.entry = self.env.at(end, self._finish, flow)

    def _rebalance_soon(self) -> None:
        """Recompute every rate once, after the callbacks already due at this instant."""
        if self._pending is None:
            self._pending = self.env.at(self.env._now, self._rebalance_all)

    def _rebalance_all(self, _arg=None) -> None:
        self._pending = None
        if not self._active:
            return
        flows = list(self._active)
        now = self.env._now
        if self.ONE_ROUND and self._counting and not self._weighted:
            level = self._one_round(flows)
            if level is not None:
                for flow in flows:
                    if level != flow.rate:
                        self._set_rate(flow, level, now)
                return
        np = self.numpy()
        lengths = np.fromiter((len(f.path.ids) for f in flows), dtype=np.int64, count=len(flows))
        flow_of_entry = np.repeat(np.arange(len(flows)), lengths)
        idx = np.concatenate([f.path.idx for f in flows])
        w = np.concatenate([f.path.w for f in flows])
        caps = np.fromiter((f.max_rate for f in flows), dtype=float, count=len(flows))
        if len(self._cap) <= 4 * len(idx):
            # few resources: index them directly (per-resource arithmetic is the same either way)
            rates = max_min_rates_vectorized(flow_of_entry, idx, w, self._cap, len(flows), caps)
        else:
            used, compact = np.unique(idx, return_inverse=True)
            rates = max_min_rates_vectorized(flow_of_entry, compact, w, self._cap[used], len(flows), caps)
        for flow, rate in zip(flows, rates.tolist()):
            if rate != flow.rate:
                self._set_rate(flow, rate, now)

    def _one_round(self, flows: list[Flow]) -> float | None:
        """The common rate of ``flows`` when the first round of progressive filling
        freezes them all (every flow crosses a resource that saturates first, or
        is capped at that share), else None. Only while every active flow has
        weight 1 on distinct resources: a resource's load is then its flow count,
        kept up to date as flows come and go, so the round costs a pass over the
        resources and a bit-mask AND per flow rather than passes over every
        (flow, resource) entry. Same arithmetic as ``max_min_rates_vectorized``'s
        first round (capacity over a load that is a whole number either way)."""
        np = self.numpy()
        load = self._count_view
        loaded = load > 0
        share = np.full(len(self._cap), np.inf)
        share[loaded] = self._cap[loaded] / load[loaded]
        level = min(share.min(), min(flow.max_rate for flow in flows))
        limit = level * (1.0 + 1e-12)
        saturated = share <= limit
        mask = int.from_bytes(np.packbits(saturated, bitorder="little").tobytes(), "little")
        for flow in flows:
            if not flow.path.mask & mask and not flow.max_rate <= limit:
                return None
        return float(level)

    def _finish(self, flow: Flow) -> None:
        now = self.env._now
        if not flow.drained:
            flow.bytes_end_s = now
            flow.drained = True
            flow.remaining = 0.0
            active = self._active
            del active[flow]
            if not flow.path.unit:
                self._weighted -= 1
            if self._counting:
                shared = self._take(flow.path, -1)
                if not active:      # every count is back to zero
                    self._counting = False
            else:
                shared = self._overlaps(flow.path) if active else False
            if shared:
                self._rebalance_soon()
        flow.entry = None
        flow.end_s = now
        flow.on_done(flow)
