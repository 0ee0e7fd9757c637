"""Tensor replacement in a scratchpad for a fixed op order: LRU and Belady.

Before each op, the tensors it reads that are not resident are filled from
the lower tier; to make room (for them and for the op's output), resident
tensors the op does not need are evicted, chosen by the policy. Evicting a
tensor that has no copy in the lower tier and is still live (read later, or
live-out) spills it; any other eviction is free. After each op, tensors that
are dead (no later use, not live-out) are dropped; at the end, live-out
tensors still only on chip are written back.

Policies (one class each):

- ``lru``: evict the tensor used least recently.
- ``belady``: evict the tensor whose next use is furthest in the future
  (Belady's MIN, "A study of replacement algorithms for a virtual-storage
  computer", IBM Systems Journal 5(2), 1966: optimal in the number of fills
  for equal-sized items and a fixed access order; with sizes and dirty
  tensors it is the classic heuristic, and the ILP of sim.memory.ilp is the
  optimum). Ties: a clean tensor (free to drop) first, then the larger.

``allocation: address`` places every tensor at a contiguous address range
(first fit); when no hole is large enough although enough bytes are free,
more tensors are evicted in the policy's order. The bytes evicted only for
want of a contiguous hole, and the worst external fragmentation seen
(1 - largest hole / free bytes), are reported.

Every plan is a list of actions (``Action``) before each step; ``replay``
checks a plan (every need resident, capacity never exceeded, a produced
tensor filled only after it was spilled) and counts its traffic, so all
policies, the ILP included, are measured by the same code.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Sequence

from sim.memory.problem import Problem, ScratchpadError

FILL, SPILL, EVICT = "fill", "spill", "evict"


@dataclass(frozen=True)
class Action:
    """``fill`` (lower -> scratchpad), ``spill`` (scratchpad -> lower) or
    ``evict`` (drop a clean copy to make room; no traffic)."""

    kind: str
    tensor: str
    nbytes: int
    compulsory: bool = False


@dataclass
class Plan:
    """A schedule: the op order and the actions before each position; ``final``
    are the write-backs after the last op; ``drops[pos]`` the dead tensors
    dropped after position ``pos``."""

    policy: str
    order: list[int]
    before: list[list[Action]]
    drops: list[list[str]]
    final: list[Action] = field(default_factory=list)
    fragmentation_evicted_bytes: int = 0
    peak_fragmentation: float = 0.0
    optimal: bool | None = None

    def actions(self):
        for acts in self.before:
            yield from acts
        yield from self.final


@dataclass(frozen=True)
class Traffic:
    """Off-chip bytes of a plan, split as COSMA does."""

    fill_bytes: int
    spill_bytes: int
    compulsory_bytes: int
    non_compulsory_bytes: int
    fills: int
    spills: int
    peak_resident_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.fill_bytes + self.spill_bytes


# ---------------------------------------------------------------- policies


class LruPolicy:
    """Evict the least recently used tensor (ties by name)."""

    name = "lru"

    def __init__(self, problem: Problem, order: Sequence[int]):
        self.last_access: dict[str, int] = {}

    def touch(self, name: str, pos: int) -> None:
        self.last_access[name] = pos

    def victim_key(self, name: str, pos: int, dirty: bool, size: int):
        """Smaller keys are evicted first."""
        return (self.last_access.get(name, -1), name)


class BeladyPolicy:
    """Evict the tensor whose next use is furthest away (never: furthest of all);
    ties: no extra write-back before one, larger before smaller, then by name."""

    name = "belady"

    def __init__(self, problem: Problem, order: Sequence[int]):
        self.live_out = {n: t.live_out for n, t in problem.tensors.items()}
        self.uses: dict[str, list[int]] = {}
        for pos, step in enumerate(order):
            for name in problem.steps[step].needs:
                self.uses.setdefault(name, []).append(pos)

    def touch(self, name: str, pos: int) -> None:
        pass

    def next_use(self, name: str, pos: int) -> float:
        uses = self.uses.get(name, [])
        at = bisect.bisect_right(uses, pos)
        return uses[at] if at < len(uses) else float("inf")

    def victim_key(self, name: str, pos: int, dirty: bool, size: int):
        extra_write = dirty and not self.live_out[name]
        return (-self.next_use(name, pos), extra_write, -size, name)


POLICIES = {cls.name: cls for cls in (LruPolicy, BeladyPolicy)}


# ---------------------------------------------------------------- address allocation


class AddressSpace:
    """First-fit allocation of contiguous ranges in [0, capacity)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.ranges: list[tuple[int, int, str]] = []   # (offset, size, name), sorted by offset
        self.where: dict[str, int] = {}

    def holes(self):
        cursor = 0
        for offset, size, _ in self.ranges:
            if offset > cursor:
                yield cursor, offset - cursor
            cursor = offset + size
        if cursor < self.capacity:
            yield cursor, self.capacity - cursor

    def find(self, size: int) -> int | None:
        for offset, length in self.holes():
            if length >= size:
                return offset
        return None

    def largest_hole(self) -> int:
        return max((length for _, length in self.holes()), default=0)

    def place(self, name: str, offset: int, size: int) -> None:
        bisect.insort(self.ranges, (offset, size, name))
        self.where[name] = offset

    def remove(self, name: str) -> None:
        offset = self.where.pop(name)
        for i, item in enumerate(self.ranges):
            if item[0] == offset and item[2] == name:
                del self.ranges[i]
                return


# ---------------------------------------------------------------- simulation


class _State:
    """Resident tensors, their dirtiness, which tensors have a lower-tier copy."""

    def __init__(self, problem: Problem, order: Sequence[int], address: bool):
        self.problem = problem
        self.resident: dict[str, bool] = {}        # name -> dirty
        self.lower: set[str] = {n for n, t in problem.tensors.items() if t.external}
        self.filled: set[str] = set()
        self.used = 0
        self.space = AddressSpace(problem.capacity_bytes) if address else None
        self.last = problem.last_use(order)

    def live(self, name: str, pos: int) -> bool:
        tensor = self.problem.tensors[name]
        return tensor.live_out or self.last.get(name, -1) > pos


def plan_replacement(problem: Problem, policy: str, order: Sequence[int] | None = None,
                     allocation: str = "capacity") -> Plan:
    """Plan fills, spills and evictions for ``order`` (default: trace order)
    with replacement ``policy`` (``lru`` or ``belady``)."""
    order = list(range(len(problem.steps))) if order is None else list(order)
    chooser = POLICIES[policy](problem, order)
    state = _State(problem, order, allocation == "address")
    plan = Plan(policy, order, [], [])
    for pos, step_index in enumerate(order):
        step = problem.steps[step_index]
        protect = set(step.needs)
        actions: list[Action] = []
        incoming = [t for t in step.reads if t not in state.resident]
        if step.output and step.output not in state.resident:
            incoming.append(step.output)
        _make_room(state, plan, chooser, incoming, protect, pos, actions)
        for name in incoming:
            if name != step.output:
                first = name not in state.filled
                state.filled.add(name)
                actions.append(Action(FILL, name, problem.size(name),
                                      compulsory=first and problem.tensors[name].external))
        for name in sorted(incoming, key=lambda n: (-problem.size(n), n)):
            _admit(state, name, dirty=name == step.output)
        for name in step.needs:
            chooser.touch(name, pos)
        plan.before.append(actions)
        dead = [n for n in state.resident if not state.live(n, pos)]
        for name in dead:
            _drop(state, name)
        plan.drops.append(dead)
    for name, dirty in list(state.resident.items()):
        if dirty and problem.tensors[name].live_out:
            plan.final.append(Action(SPILL, name, problem.size(name), compulsory=True))
    return plan


def _admit(state: _State, name: str, dirty: bool) -> None:
    size = state.problem.size(name)
    if state.space is not None:
        offset = state.space.find(size)
        state.space.place(name, offset, size)
    state.resident[name] = dirty
    state.used += size


def _drop(state: _State, name: str) -> None:
    state.used -= state.problem.size(name)
    del state.resident[name]
    if state.space is not None:
        state.space.remove(name)


def _fits(state: _State, sizes: list[int]) -> bool:
    """Whether tensors of ``sizes`` can be admitted now (all of them)."""
    if state.used + sum(sizes) > state.problem.capacity_bytes:
        return False
    if state.space is None:
        return True
    trial = AddressSpace(state.space.capacity)
    trial.ranges = list(state.space.ranges)
    for k, size in enumerate(sorted(sizes, reverse=True)):
        offset = trial.find(size)
        if offset is None:
            return False
        trial.place(f"\0{k}", offset, size)
    return True


def _make_room(state: _State, plan: Plan, chooser, incoming: list[str], protect: set[str],
               pos: int, actions: list[Action]) -> None:
    problem = state.problem
    sizes = [problem.size(n) for n in incoming]
    while not _fits(state, sizes):
        candidates = [n for n in state.resident if n not in protect]
        if not candidates:
            step = problem.steps[plan.order[pos]]
            raise ScratchpadError(
                f"op {step.op_id} ({step.name}): its tensors fit in the scratchpad's "
                f"{problem.capacity_bytes} bytes but not at contiguous addresses beside each other; "
                f"use allocation: capacity")
        capacity_short = state.used + sum(sizes) > problem.capacity_bytes
        if state.space is not None and not capacity_short:
            free = problem.capacity_bytes - state.used
            if free > 0:
                plan.peak_fragmentation = max(plan.peak_fragmentation,
                                              1.0 - state.space.largest_hole() / free)
        victim = min(candidates, key=lambda n: chooser.victim_key(
            n, pos, state.resident[n], problem.size(n)))
        dirty = state.resident[victim]
        size = problem.size(victim)
        if not capacity_short:
            plan.fragmentation_evicted_bytes += size
        if dirty and state.live(victim, pos):
            actions.append(Action(SPILL, victim, size, compulsory=problem.tensors[victim].live_out))
            state.lower.add(victim)
        else:
            actions.append(Action(EVICT, victim, 0))
        _drop(state, victim)


def replay(problem: Problem, plan: Plan) -> Traffic:
    """Check ``plan`` against ``problem`` and count its traffic.

    Raises ScratchpadError if an op runs without a tensor it needs, the
    scratchpad overflows, a tensor is filled that has no lower-tier copy, or
    a live-out tensor never reaches the lower tier.
    """
    resident: dict[str, bool] = {}
    lower = {n for n, t in problem.tensors.items() if t.external}
    produced: set[str] = set()
    filled: set[str] = set()
    fill_bytes = spill_bytes = compulsory = fills = spills = peak = 0
    used = 0

    def fail(message: str) -> ScratchpadError:
        return ScratchpadError(f"scratchpad plan ({plan.policy}): {message}")

    def apply(action: Action) -> None:
        nonlocal fill_bytes, spill_bytes, compulsory, fills, spills, used
        name = action.tensor
        size = problem.size(name)
        tensor = problem.tensors[name]
        if (name in resident) == (action.kind == FILL):
            state = "resident" if action.kind == FILL else "not resident"
            raise fail(f"{action.kind} of {name!r}, which is {state}")
        if action.kind == FILL:
            if name not in lower:
                raise fail(f"fill of {name!r}, which has no copy in the lower tier")
            if tensor.external and name not in filled:
                compulsory += size
            filled.add(name)
            resident[name] = False
            used += size
            fill_bytes += size
            fills += 1
            return
        if action.kind == SPILL:
            if not resident[name]:
                raise fail(f"spill of {name!r}, which already has a lower-tier copy")
            lower.add(name)
            spill_bytes += size
            spills += 1
            if tensor.live_out:
                compulsory += size
        del resident[name]
        used -= size

    for pos, step_index in enumerate(plan.order):
        step = problem.steps[step_index]
        for action in plan.before[pos]:
            apply(action)
        if step.output:
            if step.output not in resident:
                resident[step.output] = True
                used += problem.size(step.output)
            produced.add(step.output)
        for name in step.needs:
            if name not in resident:
                raise fail(f"op {step.op_id} ({step.name}) runs without {name!r} resident")
        if used > problem.capacity_bytes:
            raise fail(f"{used} bytes resident at op {step.op_id} ({step.name}), over the "
                       f"capacity of {problem.capacity_bytes}")
        peak = max(peak, used)
        for name in plan.drops[pos]:
            if name in resident:
                used -= problem.size(name)
                del resident[name]
    for action in plan.final:
        apply(action)
    for name in produced:
        if problem.tensors[name].live_out and name not in lower:
            raise fail(f"live-out tensor {name!r} never reaches the lower tier")
    return Traffic(fill_bytes, spill_bytes, compulsory, fill_bytes + spill_bytes - compulsory,
                   fills, spills, peak)
