"""Collectives running on a topology: links as shared resources in SimPy.

Every direction of every link is a resource of a FluidNetwork with capacity
bandwidth x efficiency. A schedule step's transfers start together and the
step ends when the last one has arrived; one step costs, alone,

    max path latency + (bytes per transfer) / (rate of its most constrained transfer)
    + reduction time (gamma x bytes reduced),

which is the alpha-beta model of each algorithm when links are uniform and
unshared. The transfers of a step are costed as one batch moving in
lockstep: on each link it uses, the batch weighs as many shares as it has
transfers there (weighted max-min against all other traffic). A step
repeated r times with the same pattern (a ring's shifts) is costed once: its
latency r x alpha, then one batch of r x bytes, so a 1,024-rank ring costs a
handful of events while contention with other traffic is still seen.
Latency is taken before the bytes move (time to first byte), which changes
nothing alone and little under contention; the approximations are discussed
in docs/architecture.md.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

from sim.engine.calendar import Environment
from sim.engine.fluid import FluidNetwork, VectorFluidNetwork
from sim.network.collectives import (BUSBW_FACTOR, NCCL_ALGORITHMS, CollectiveError, Schedule, Step,
                                     algorithms_for, build_schedule, normalize_algorithm,
                                     normalize_op)
from sim.network.routing import Router
from sim.network.topology import Cluster

@dataclass(frozen=True)
class StepPattern:
    """A step routed on the topology: the links it loads and how heavily."""

    links: tuple[tuple[str, str], ...]
    weights: tuple[float, ...]
    latency_s: float
    bytes_per_transfer: float
    alone_rate: float
    arrays: object = None


class NetworkRuntime:
    """The links of one cluster as shared bandwidth, and collective execution."""

    def __init__(self, env: Environment, cluster: Cluster, fluid: FluidNetwork | None = None,
                 ecmp: bool = False, gamma_s_per_byte: float = 0.0, record: bool = True):
        self.env = env
        self.cluster = cluster
        self.router = Router(cluster, ecmp or cluster.ecmp)
        self.fluid = fluid or VectorFluidNetwork(env, {})
        capacities = {}
        for a, b in cluster.graph.edges():
            capacities[(a, b)] = self.router.capacity((a, b))
            capacities[(b, a)] = capacities[(a, b)]
        self.fluid.add_resources(capacities)
        self.gamma_s_per_byte = gamma_s_per_byte
        self.record = record
        self.rows: list[tuple] = []
        self._patterns: dict[int, tuple[Step, StepPattern]] = {}

    def pattern(self, step: Step) -> StepPattern:
        """Route a step's transfers (cached per step object)."""
        cached = self._patterns.get(id(step))
        if cached is not None and cached[0] is step:
            return cached[1]
        load: Counter = Counter()
        latency = 0.0
        size = 0.0
        for src, dst, nbytes in step.transfers:
            links = self.router.rank_path(src, dst)
            load.update(links)
            latency = max(latency, self.router.latency_s(links))
            size = max(size, nbytes)
        links = tuple(load)
        weights = tuple(float(load[link]) for link in links)
        capacity = self.fluid.capacity
        alone = min((capacity[l] / w for l, w in zip(links, weights)), default=float("inf"))
        arrays = self.fluid.arrays(links, weights) if isinstance(self.fluid, VectorFluidNetwork) else None
        pattern = StepPattern(links, weights, latency, size, alone, arrays)
        self._patterns[id(step)] = (step, pattern)
        return pattern

    def predicted_time_s(self, schedule: Schedule) -> float:
        """The schedule's time on an otherwise idle network, ignoring sharing
        between the transfers of different steps (the alpha-beta estimate
        ``auto`` chooses with, as NCCL's tuner does)."""
        total = 0.0
        for step in schedule.steps:
            pattern = self.pattern(step)
            per = pattern.latency_s + self.gamma_s_per_byte * step.reduce_bytes
            if pattern.bytes_per_transfer > 0 and pattern.links:
                per += pattern.bytes_per_transfer / pattern.alone_rate
            total += step.repeat * per
        return total

    def schedule(self, op: str, algorithm: str, ranks: Sequence[int], nbytes: float,
                 candidates: Sequence[str] | None = None) -> Schedule:
        """Build the schedule; ``auto`` picks, among ``candidates`` (default: every
        algorithm implementing ``op``), the one with the least predicted time."""
        op, algorithm = normalize_op(op), normalize_algorithm(algorithm)
        if algorithm == "nccl":
            algorithm = "auto"
            candidates = [a for a in NCCL_ALGORITHMS if a in algorithms_for(op)] or algorithms_for(op)
        for rank in ranks:
            if not 0 <= rank < self.cluster.size:
                raise CollectiveError(f"group names rank {rank}, but {self.cluster.name} has ranks "
                                      f"0..{self.cluster.size - 1}")
        if algorithm != "auto":
            return build_schedule(op, algorithm, ranks, nbytes, self.cluster.machine)
        best = None
        for candidate in (candidates or algorithms_for(op)):
            try:
                schedule = build_schedule(op, candidate, ranks, nbytes, self.cluster.machine)
            except CollectiveError:
                continue
            if candidate == "hierarchical" and len({self.cluster.machine(r) for r in ranks}) == 1:
                continue
            predicted = self.predicted_time_s(schedule)
            if best is None or predicted < best[0] * (1 - 1e-9):
                best = (predicted, schedule)
        if best is None:
            raise CollectiveError(f"no algorithm implements {op} on this group")
        return best[1]

    def start(self, schedule: Schedule, on_done: Callable[[float, float], None], op_id: int = -1,
              name: str = "") -> None:
        """Execute the schedule from now; ``on_done(start_s, end_s)`` runs when it ends.

        Driven by calendar callbacks rather than a SimPy process: a step is a
        latency wait, a weighted flow, and a reduction wait, each scheduled
        when the previous one ends.
        """
        _CollectiveRun(self, schedule, on_done, op_id, name or f"{schedule.op}/{schedule.algorithm}").next_step()

    def run(self, schedule: Schedule, op_id: int = -1, name: str = ""):
        """SimPy process body: execute the schedule; returns (start_s, end_s)."""
        event = self.env.event()
        self.start(schedule, lambda start, end: event.succeed((start, end)), op_id, name)
        return (yield event)


class _CollectiveRun:
    """The state of one collective in flight: which step, and when it began."""

    __slots__ = ("net", "schedule", "on_done", "op_id", "label", "index", "start_s", "step_start_s",
                 "pattern")

    def __init__(self, net: NetworkRuntime, schedule: Schedule, on_done, op_id: int, label: str):
        self.net = net
        self.schedule = schedule
        self.on_done = on_done
        self.op_id = op_id
        self.label = label
        self.index = 0
        self.start_s = net.env.now
        self.step_start_s = self.start_s
        self.pattern = None

    def next_step(self, _arg=None) -> None:
        net = self.net
        if self.index == len(self.schedule.steps):
            self.on_done(self.start_s, net.env.now)
            return
        step = self.schedule.steps[self.index]
        pattern = self.pattern = net.pattern(step)
        self.step_start_s = net.env.now
        if pattern.latency_s > 0:
            net.env.at(net.env.now + pattern.latency_s * step.repeat, self._move_bytes)
        else:
            self._move_bytes()

    def _move_bytes(self, _arg=None) -> None:
        net = self.net
        step = self.schedule.steps[self.index]
        pattern = self.pattern
        if pattern.bytes_per_transfer > 0 and pattern.links:
            net.fluid.start(pattern.bytes_per_transfer * step.repeat, pattern.links, self._reduce,
                            weights=pattern.weights,
                            **({"arrays": pattern.arrays} if pattern.arrays is not None else {}))
        else:
            self._reduce()

    def _reduce(self, _arg=None) -> None:
        net = self.net
        step = self.schedule.steps[self.index]
        if net.gamma_s_per_byte and step.reduce_bytes:
            net.env.at(net.env.now + net.gamma_s_per_byte * step.reduce_bytes * step.repeat,
                                  self._step_done)
        else:
            self._step_done()

    def _step_done(self, _arg=None) -> None:
        net = self.net
        step = self.schedule.steps[self.index]
        if net.record:
            pattern = self.pattern
            per_link = pattern.bytes_per_transfer * step.repeat
            end = net.env.now
            context = (None, None, None, f"step {self.index}",
                       f"{self.schedule.op}/{self.schedule.algorithm}")
            for link, weight in zip(pattern.links, pattern.weights):
                net.rows.append(("network", f"{link[0]}->{link[1]}", self.op_id, f"{self.label}: {step.label}",
                                 "comm", self.step_start_s, end, 0.0, per_link * weight, 0, int(weight),
                                 context))
        self.index += 1
        self.next_step()


@dataclass(frozen=True)
class CollectiveResult:
    op: str
    algorithm: str
    ranks: int
    nbytes: float
    time_s: float
    steps: int
    events: int

    @property
    def algbw_bytes_per_s(self) -> float:
        return self.nbytes / self.time_s if self.time_s > 0 else float("inf")

    @property
    def busbw_bytes_per_s(self) -> float:
        return self.algbw_bytes_per_s * BUSBW_FACTOR[self.op](self.ranks)

    def as_dict(self) -> dict:
        return {"op": self.op, "algorithm": self.algorithm, "ranks": self.ranks,
                "bytes": self.nbytes, "time_s": self.time_s,
                "algbw_bytes_per_s": self.algbw_bytes_per_s,
                "busbw_bytes_per_s": self.busbw_bytes_per_s, "steps": self.steps,
                "events": self.events}


def simulate_collectives(cluster: Cluster, requests: Sequence[tuple[str, str, Sequence[int], float]],
                         gamma_s_per_byte: float = 0.0, ecmp: bool = False, record: bool = False,
                         on_network: Callable[[NetworkRuntime], None] | None = None,
                         candidates: Sequence[str] | None = None) -> list[CollectiveResult]:
    """Run collectives (op, algorithm, ranks, bytes) concurrently from time 0
    on an otherwise idle cluster; one result per request."""
    env = Environment()
    network = NetworkRuntime(env, cluster, ecmp=ecmp, gamma_s_per_byte=gamma_s_per_byte, record=record)
    schedules = [network.schedule(op, algo, ranks, nbytes, candidates)
                 for op, algo, ranks, nbytes in requests]
    processes = [env.process(network.run(s, op_id=i)) for i, s in enumerate(schedules)]
    env.run()
    events = env.scheduled()
    if on_network is not None:
        on_network(network)
    return [CollectiveResult(s.op, s.algorithm, len(s.ranks), s.nbytes, p.value[1] - p.value[0],
                             sum(step.repeat for step in s.steps), events)
            for s, p in zip(schedules, processes)]


def simulate_collective(cluster: Cluster, op: str, algorithm: str, nbytes: float,
                        ranks: Sequence[int] | None = None, gamma_s_per_byte: float = 0.0,
                        ecmp: bool = False, candidates: Sequence[str] | None = None
                        ) -> CollectiveResult:
    """One collective alone on the cluster (all ranks by default)."""
    ranks = list(range(cluster.size)) if ranks is None else list(ranks)
    return simulate_collectives(cluster, [(op, algorithm, ranks, nbytes)], gamma_s_per_byte, ecmp,
                                candidates=candidates)[0]
