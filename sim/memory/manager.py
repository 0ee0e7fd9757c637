"""A managed scratchpad: plan each device's tensor traffic, then simulate it.

``manage_scratchpad`` runs before simulation (scenario loading): for every
device of the trace that has the scratchpad tier it builds the access
sequence of its compute ops (sim.memory.problem), plans fills, spills and
evictions with the configured policy (sim.memory.replacement, sim.memory.ilp),
checks the plan (``replay``) and rewrites the trace:

- compute ops read and write the scratchpad tier, run in the plan's order;
- every fill is a ``copy`` lower tier -> scratchpad, every spill a ``copy``
  scratchpad -> lower tier, on a DMA stream of their own, so they are real
  transfers on the device's shared memory tiers (sim.engine.fluid) that
  overlap compute when bandwidth allows and cost time when they do not;
- evictions of clean tensors are zero-byte copies that release the space;
- the memory ledger allocates each tensor on the scratchpad when it is
  produced or filled and releases it when it is spilled, evicted or dead,
  so ``memory.arrow`` shows the scratchpad's occupancy.

Dependencies keep the simulated schedule within the scratchpad: a fill or
eviction waits for the last op that used a tensor it displaces, a fill that
needs the space of tensors dead after the previous op waits for that op, and
each DMA op of step p waits for the op of step p - 2 (so the transfers for
op p overlap op p - 1, double buffering, and never more). The ledger is
strict, so a schedule that overflowed would stop the run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from sim.errors import ScenarioError
from sim.memory.config import ScratchpadConfig
from sim.memory.ilp import plan_ilp
from sim.memory.problem import Problem, ScratchpadError, problem_from_ops
from sim.memory.replacement import EVICT, FILL, SPILL, Plan, Traffic, plan_replacement, replay
from sim.schema import validate
from sim.workload.trace import COMM_OPS, Op, Trace, validate_ops


@dataclass(frozen=True)
class DevicePlan:
    """One device's plan, its traffic and the traffic of the compared policies."""

    rank: int
    tier: str
    lower_tier: str
    capacity_bytes: int
    plan: Plan
    traffic: Traffic
    compared: Mapping[str, Traffic]

    def summary(self) -> dict[str, Any]:
        out = {"rank": self.rank, "policy": self.plan.policy, "tier": self.tier,
               "lower_tier": self.lower_tier, "capacity_bytes": self.capacity_bytes,
               **_traffic_dict(self.traffic)}
        if self.plan.optimal is not None:
            out["optimal"] = bool(self.plan.optimal)
        if self.plan.fragmentation_evicted_bytes or self.plan.peak_fragmentation:
            out["fragmentation_evicted_bytes"] = self.plan.fragmentation_evicted_bytes
            out["peak_fragmentation"] = self.plan.peak_fragmentation
        if self.compared:
            out["compared"] = {name: _traffic_dict(t) for name, t in self.compared.items()}
        return out


def _traffic_dict(traffic: Traffic) -> dict[str, int]:
    return {"offchip_bytes": traffic.total_bytes, "fill_bytes": traffic.fill_bytes,
            "spill_bytes": traffic.spill_bytes, "compulsory_bytes": traffic.compulsory_bytes,
            "non_compulsory_bytes": traffic.non_compulsory_bytes, "fills": traffic.fills,
            "spills": traffic.spills, "peak_resident_bytes": traffic.peak_resident_bytes}


@dataclass(frozen=True)
class MemoryPlan:
    """The plans of every managed device, for the run summary."""

    config: ScratchpadConfig
    devices: tuple[DevicePlan, ...]

    def summary(self) -> dict[str, Any]:
        return {"policy": self.config.policy, "allocation": self.config.allocation,
                "devices": [d.summary() for d in self.devices]}


def plan_problem(problem: Problem, config: ScratchpadConfig, policy: str | None = None,
                 where: str = "memory.scratchpad") -> Plan:
    """Plan ``problem`` with ``policy`` (default: the configured one)."""
    policy = policy or config.policy
    if policy == "ilp":
        plan = plan_ilp(problem, config.ilp_max_ops, config.divide_and_conquer, config.reorder,
                        config.ilp_time_limit_s, where)
        fallback = plan_replacement(problem, "belady")
        if not plan.optimal and replay(problem, fallback).total_bytes < replay(problem, plan).total_bytes:
            # A time-limited or windowed ILP is kept only where it beats Belady's plan.
            plan = dataclasses.replace(fallback, policy=plan.policy, optimal=False)
        return plan
    return plan_replacement(problem, policy, allocation=config.allocation)


def _tiers(spec, config: ScratchpadConfig, where: str) -> tuple[str, str] | None:
    """(scratchpad tier, lower tier) of a device, or None when it has no scratchpad."""
    names = list(spec.tier_names)
    tier = config.tier or next((t.name for t in spec.memory if t.kind == "scratchpad"), None)
    if tier is None or tier not in names:
        return None
    lower = config.lower_tier or (spec.default_tier if spec.default_tier != tier
                                  else next(n for n in names if n != tier) if len(names) > 1 else None)
    if lower is None or lower not in names or lower == tier:
        raise ScenarioError(f"{where}.lower_tier: expected a tier of {spec.name} other than {tier!r} "
                            f"(one of {[n for n in names if n != tier]}), got {lower!r}")
    return tier, lower


def manage_scratchpad(trace: Trace, spec_of_rank: Callable[[int], Any], raw: Any,
                      where: str) -> tuple[Trace, MemoryPlan]:
    """Validate ``memory.scratchpad``, plan every device that has the tier,
    and return the rewritten trace with the plans."""
    where = f"{where}: memory.scratchpad" if where else "memory.scratchpad"
    config = validate(ScratchpadConfig, raw, where, ScenarioError)
    ops = list(trace.ops)
    plans: list[DevicePlan] = []
    for rank in trace.ranks or [0]:
        spec = spec_of_rank(rank)
        tiers = _tiers(spec, config, where)
        if tiers is None:
            continue
        tier, lower = tiers
        for op in ops:
            if op.rank == rank and op.op == "copy" and tier in (op.dst_tier, op.src_tier):
                raise ScenarioError(f"{where}: op {op.id} ({op.name}) copies to or from the managed "
                                    f"tier {tier!r}; a managed scratchpad moves tensors itself: drop "
                                    f"such copies from the trace, or the memory.scratchpad key")
        managed = [op for op in ops if op.rank == rank and op.op not in COMM_OPS and op.op != "copy"]
        if not managed:
            continue
        problem = problem_from_ops(ops, spec.tier(tier).capacity_bytes, managed)
        problem.check_fits(where)
        plan = plan_problem(problem, config, where=where)
        traffic = replay(problem, plan)
        compared = {name: replay(problem, plan_problem(problem, config, name, where))
                    for name in config.compare if name != config.policy}
        plans.append(DevicePlan(rank, tier, lower, problem.capacity_bytes, plan, traffic, compared))
        ops = rewrite(ops, rank, problem, plan, tier, lower)
    if not plans:
        names = sorted({spec_of_rank(r).name for r in trace.ranks or [0]})
        raise ScenarioError(f"{where}: no device of this scenario ({', '.join(names)}) has a "
                            f"scratchpad tier{' named ' + repr(config.tier) if config.tier else ''}")
    try:
        new_trace = validate_ops(ops, trace.path)
    except Exception as exc:
        raise ScratchpadError(f"{where}: the planned order conflicts with the trace's stream order "
                              f"({exc}); set reorder: false") from None
    return new_trace, MemoryPlan(config, tuple(plans))


def rewrite(ops: list[Op], rank: int, problem: Problem, plan: Plan, tier: str, lower: str) -> list[Op]:
    """The trace with ``rank``'s compute ops in plan order on the scratchpad
    and the plan's fills, spills and evictions as copy ops (module docstring)."""
    builder = _Rewriter(ops, rank, problem, plan, tier, lower)
    return builder.run()


class _Rewriter:
    """Emits the rewritten op list for one device (see ``rewrite``)."""

    def __init__(self, ops, rank, problem, plan, tier, lower):
        self.ops, self.rank, self.problem, self.plan = ops, rank, problem, plan
        self.tier, self.lower = tier, lower
        self.next_id = max(op.id for op in ops) + 1
        self.dma_stream = max(op.stream for op in ops) + 1
        self.managed_ids = [problem.steps[i].op_id for i in range(len(problem.steps))]
        self.by_id = {op.id: op for op in ops}
        self.names = set(problem.tensors)
        self.last_user: dict[str, int] = {}      # tensor -> op id of the last op that needed it
        self.source: dict[str, int] = {}         # tensor -> op id that made its lower-tier copy
        self.filled_by: dict[str, int] = {}      # tensor -> op id of its latest fill
        self.dma: list[Op] = []

    def _copy(self, name: str, kind: str, nbytes: int, deps: set[int], tensor: str) -> Op:
        src, dst = (self.lower, self.tier) if kind == FILL else (self.tier, self.lower)
        op = Op(id=self.next_id, name=f"{kind} {tensor}", op="copy", flops=0.0,
                bytes_read=float(nbytes), bytes_written=float(nbytes), deps=tuple(sorted(deps)),
                stream=self.dma_stream, src_tier=src, dst_tier=dst, rank=self.rank,
                tensor=tensor if kind == FILL else None,
                frees=(tensor,) if kind != FILL else (), phase=f"scratchpad {kind}")
        self.next_id += 1
        return op

    def _pre_step(self, pos: int, ids: list[int]) -> tuple[list[Op], set[int]]:
        """DMA ops before position ``pos`` and the deps they give its op."""
        problem, plan = self.problem, self.plan
        out: list[Op] = []
        used = self._resident_bytes
        pending = sum(problem.size(n) for n in plan.drops[pos - 1]) if pos else 0
        used += pending
        waits = {ids[pos - 2]} if pos >= 2 else set()
        for action in plan.before[pos]:
            name = action.tensor
            size = problem.size(name)
            if action.kind in (SPILL, EVICT):
                deps = set(waits)
                if name in self.last_user:
                    deps.add(self.last_user[name])
                nbytes = size if action.kind == SPILL else 0
                op = self._copy(name, action.kind, nbytes, deps, name)
                if action.kind == SPILL:
                    self.source[name] = op.id
                used -= size
                self._resident_bytes -= size
            else:
                deps = set(waits)
                if used + size > problem.capacity_bytes and pos:
                    deps.add(ids[pos - 1])
                    used -= pending
                    pending = 0
                if name in self.source:
                    deps.add(self.source[name])
                step_op = self.by_id[problem.steps[plan.order[pos]].op_id]
                if name == f"op{step_op.id}.in":
                    deps.update(d for d in step_op.deps if d in self.by_id)
                op = self._copy(name, FILL, size, deps, name)
                self.filled_by[name] = op.id
                used += size
                self._resident_bytes += size
            out.append(op)
        return out, {op.id for op in out}

    def run(self) -> list[Op]:
        problem, plan = self.problem, self.plan
        ids = [problem.steps[i].op_id for i in plan.order]
        self._resident_bytes = 0
        new_ops: dict[int, list[Op]] = {}
        for pos, step_index in enumerate(plan.order):
            step = problem.steps[step_index]
            original = self.by_id[step.op_id]
            if pos:
                self._resident_bytes -= sum(problem.size(n) for n in plan.drops[pos - 1])
            dma, dma_ids = self._pre_step(pos, ids)
            deps = set(original.deps) | dma_ids
            deps.update(self.filled_by[n] for n in step.reads if n in self.filled_by)
            if pos:
                deps.add(ids[pos - 1])
            if step.output:
                self._resident_bytes += problem.size(step.output)
            frees = tuple(f for f in original.frees if f not in self.names) + tuple(plan.drops[pos])
            output = step.output
            size = problem.size(output) if output else None
            new_ops[pos] = dma + [original.replace(
                deps=tuple(sorted(deps)), tier=self.tier, dst_tier=None,
                tensor=output, alloc_bytes=float(size) if output else None, frees=frees)]
            for name in step.needs:
                self.last_user[name] = step.op_id
            if output:
                self.source.pop(output, None)
        tail = []
        for action in plan.final:
            deps = {self.last_user[action.tensor]} if action.tensor in self.last_user else set()
            tail.append(self._copy(action.tensor, SPILL, action.nbytes, deps, action.tensor))
        slots = iter(range(len(plan.order)))
        managed = set(self.managed_ids)
        out: list[Op] = []
        for op in self.ops:
            if op.id in managed:
                out.extend(new_ops[next(slots)])
            else:
                out.append(op)
        return out + tail
