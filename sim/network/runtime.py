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

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Sequence

from sim.engine.calendar import Environment
from sim.engine.fluid import FluidNetwork, VectorFluidNetwork
from sim.network.collectives import (BUILDERS, BUSBW_FACTOR, NCCL_NAMES, CollectiveError, Schedule, Step,
                                     algorithms_for, build_schedule, check_group, normalize_algorithm,
                                     normalize_op, normalize_protocol)
from sim.network.routing import Router
from sim.network.topology import Cluster

@dataclass(frozen=True)
class StepPattern:
    """A step routed on the topology: the links it loads and how heavily.

    The step moves as one batch whose unit is its largest transfer
    (``bytes_per_transfer``); a link's weight is the bytes the step puts on
    it over that unit (the number of transfers crossing it when all are the
    same size). ``max_rate`` caps the unit's rate."""

    links: tuple[tuple[str, str], ...]
    weights: tuple[float, ...]
    latency_s: float
    bytes_per_transfer: float
    alone_rate: float
    arrays: object = None
    max_rate: float = math.inf


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
        self._plans: dict[int, tuple[Schedule, tuple[StepPlan, ...]]] = {}
        self._routed: dict[tuple, tuple] = {}
        self._path_ids: dict[tuple, object] = {}
        self._link_names: list = []      # the fluid network's resources by id
        self._geometries: dict[tuple[int, ...], object] = {}
        self._rank_links: dict[int, object] = {}     # nccl.RankLinks by rank (see nccl.geometry)

    def pattern(self, step: Step) -> StepPattern:
        """Route a step's transfers (cached per step object).

        Steps of different sizes over the same pairs with the same relative
        sizes (the same collective on other byte counts) load the same links
        with the same weights: that part is cached per pairs and shares."""
        cached = self._patterns.get(id(step))
        if cached is not None and cached[0] is step:
            return cached[1]
        size = max((nbytes for _, _, nbytes in step.transfers), default=0.0)
        shares = tuple((src, dst, nbytes / size if size > 0 else 1.0) for src, dst, nbytes in step.transfers)
        key = (shares, step.latency_s is None)
        routed = self._routed.get(key)
        if routed is None:
            routed = self._routed[key] = self._route(shares, step.latency_s is None)
        links, weights, latency, alone, arrays = routed
        if step.latency_s is not None:
            latency = step.latency_s
        pattern = StepPattern(links, weights, latency, size, min(alone, step.max_rate), arrays, step.max_rate)
        self._patterns[id(step)] = (step, pattern)
        return pattern

    def _route(self, shares: tuple, with_latency: bool) -> tuple:
        """(links, weights, largest path latency, rate alone, fluid arrays) of
        transfers ``(src, dst, share of the largest)``: a link's weight sums
        the shares crossing it, in transfer order; links in order of first use."""
        pairs = [(src, dst) for src, dst, _ in shares]
        paths = [self._path(src, dst) for src, dst in pairs]
        latency = max((self.router.latency_s(links) for links in paths), default=0.0) if with_latency else 0.0
        if isinstance(self.fluid, VectorFluidNetwork) and sum(map(len, paths)) > 64:
            links, weights, arrays = self._load_vector(pairs, paths, [share for _, _, share in shares])
            return links, weights, latency, arrays.alone, arrays      # the same divisions as below
        load: dict = {}
        for links_of, (_, _, share) in zip(paths, shares):
            for link in links_of:
                load[link] = load.get(link, 0) + share
        links = tuple(load)
        weights = tuple(float(load[link]) for link in links)
        arrays = self.fluid.arrays(links, weights) if isinstance(self.fluid, VectorFluidNetwork) else None
        capacity = self.fluid.capacity
        alone = min((capacity[l] / w for l, w in zip(links, weights)), default=math.inf)
        return links, weights, latency, alone, arrays

    def _load_vector(self, pairs: list, paths: list, shares: list) -> tuple:
        """The loop of ``_route`` with numpy, for long paths: per-link sums of
        the shares in the same order (``bincount`` adds its inputs in turn).
        Returns links, weights and what ``fluid.arrays(links, weights)`` gives."""
        fluid = self.fluid
        np = fluid.numpy()
        ids = fluid._ids
        link_ids = []
        for pair, links_of in zip(pairs, paths):
            found = self._path_ids.get(pair)
            if found is None:
                found = self._path_ids[pair] = np.fromiter(map(ids.__getitem__, links_of), dtype=np.int64,
                                                           count=len(links_of))
            link_ids.append(found)
        flat = np.concatenate(link_ids)
        load = np.bincount(flat, weights=np.repeat(np.asarray(shares, dtype=float), [len(p) for p in paths]))
        used, first = np.unique(flat, return_index=True)
        used = used[np.argsort(first, kind="stable")]
        weights = load[used]
        names = self._link_names
        if len(names) != len(ids):
            names[:] = list(ids)
        arrays = fluid.arrays_of(used, weights)
        return tuple(map(names.__getitem__, arrays.ids)), tuple(weights.tolist()), arrays

    def _path(self, src: int | str, dst: int | str):
        """Directed links from a rank or node name to another."""
        ranks = self.cluster.ranks
        return self.router.path(ranks[src] if isinstance(src, int) else src,
                                ranks[dst] if isinstance(dst, int) else dst)

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
                 candidates: Sequence[str] | None = None, protocol: str | None = None) -> Schedule:
        """Build the schedule; ``auto`` picks, among ``candidates`` (default: every
        alpha-beta algorithm implementing ``op``), the one with the least predicted
        time; ``nccl`` picks as NCCL's tuner does (sim/network/nccl.py), and the
        NCCL family takes a ``protocol`` (LL, LL128, Simple; default: the tuner's).
        ``algorithm`` may also be written ``ALGORITHM/PROTOCOL``."""
        if "/" in algorithm and protocol is None:
            algorithm, protocol = algorithm.split("/", 1)
        op, algorithm = normalize_op(op), normalize_algorithm(algorithm)
        protocol = normalize_protocol(protocol)
        for rank in ranks:
            if not 0 <= rank < self.cluster.size:
                raise CollectiveError(f"group names rank {rank}, but {self.cluster.name} has ranks "
                                      f"0..{self.cluster.size - 1}")
        if algorithm in NCCL_NAMES:
            return self._nccl_schedule(op, algorithm, ranks, nbytes, protocol)
        if protocol is not None:
            raise CollectiveError(f"--protocol applies to the NCCL family ({', '.join(NCCL_NAMES)}), "
                                  f"not to {algorithm}")
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

    # the NCCL schedules whose transfers join ranks of the group only, as rings, trees and
    # send/receive do (NVLS and CollNet name switches)
    MIRRORED = ("nccl_ring", "nccl_tree", "nccl_p2p", "nccl_hierarchical")

    def mirror(self, schedule: Schedule, ranks: Sequence[int]) -> Schedule | None:
        """``schedule`` (built by ``schedule`` on its own ranks) on ``ranks``: its
        ``i``-th rank read as ``ranks[i]``, when that is exactly the schedule
        ``schedule(op, its algorithm, ranks, its bytes, protocol=its protocol)``
        builds; else None (then build it). Generated traces run each collective
        on a group and its mirror groups, copies of it on other machines
        (GPT-3 175B: 63 collectives on 2,240 groups); relabelling rather than
        building them took 0.035 CPU s (6%) off its set-up.

        Exact when the two groups look alike to NCCL's model: a rank's role in
        a ring, tree or send/receive schedule comes from the geometry alone (the
        machines' members in ring order, bandwidths, link types, NICs, whether
        NVSwitches are there) and from which ranks share a machine or a local
        GPU index (PXN relays), so when the geometries match rank for rank
        and pairs of ranks share local indices alike (``_alike``), the tuner, the
        execution and the builders compute the same numbers and the same
        transfers in the same order, between the corresponding ranks. Other
        algorithms (NVLS, CollNet: their transfers name switches) and the
        alpha-beta family are left to ``schedule``."""
        own, ranks = schedule.ranks, tuple(ranks)
        if (schedule.algorithm not in self.MIRRORED or len(ranks) != len(own) or len(set(ranks)) != len(ranks)
                or not all(0 <= rank < self.cluster.size for rank in ranks)):
            return None
        relabel = dict(zip(own, ranks))
        try:
            alike = self._alike(self.geometry(own), self.geometry(ranks), relabel)
        except CollectiveError:     # (schedule reports it)
            return None
        if not alike:
            return None
        steps = []
        for step in schedule.steps:
            if not all(src in relabel and dst in relabel for src, dst, _ in step.transfers):
                return None
            steps.append(dataclasses.replace(step, transfers=tuple(
                (relabel[src], relabel[dst], nbytes) for src, dst, nbytes in step.transfers)))
        return dataclasses.replace(schedule, ranks=ranks, steps=tuple(steps))

    def _alike(self, geom, other, relabel: dict[int, int]) -> bool:
        """Whether geometry ``other`` is ``geom`` with its ranks relabelled
        (``relabel``): the same machines' members in the same order, local GPU
        indices shared alike, and every other figure equal (the NVSwitch of each
        machine by presence only: rings, trees and send/receive do not name
        it)."""
        return (len(geom.nodes) == len(other.nodes)
                and all(tuple(map(relabel.__getitem__, a)) == b for a, b in zip(geom.nodes, other.nodes))
                and self._same_pairs(geom.ranks, relabel)
                and (geom.arch, geom.cpu, geom.intra_class, geom.intra_type, geom.net_type, geom.intra_bw,
                     geom.nic_bw, geom.rails, geom.nvls, geom.collnet)
                == (other.arch, other.cpu, other.intra_class, other.intra_type, other.net_type, other.intra_bw,
                    other.nic_bw, other.rails, other.nvls, other.collnet)
                and [bool(s) for s in geom.nvswitch] == [bool(s) for s in other.nvswitch])

    def _same_pairs(self, ranks: Sequence[int], relabel: dict[int, int]) -> bool:
        """Whether two of ``ranks`` share a local GPU index exactly when their
        relabelled ranks do (what PXN relays compare: nccl_schedules.legs)."""
        links = self._rank_links
        forth: dict[int, int] = {}
        back: dict[int, int] = {}
        for rank in ranks:
            mine, theirs = links[rank].local, links[relabel[rank]].local
            if forth.setdefault(mine, theirs) != theirs or back.setdefault(theirs, mine) != mine:
                return False
        return True

    def geometry(self, ranks: Sequence[int]):
        """NCCL's view of the communicator of ``ranks`` (cached)."""
        from sim.network.nccl import geometry
        key = tuple(ranks)
        found = self._geometries.get(key)
        if found is None:
            found = self._geometries[key] = geometry(self.cluster, key, self._rank_links)
        return found

    def _nccl_schedule(self, op: str, algorithm: str, ranks: Sequence[int], nbytes: float,
                       protocol: str | None) -> Schedule:
        from sim.network import nccl, nccl_schedules
        ranks = check_group(ranks, nbytes)
        p2p = op in ("alltoall", "sendrecv", "scatter", "gather")
        if len(ranks) == 1 or nbytes == 0:
            return Schedule(op, "nccl_p2p" if p2p else algorithm, ranks, float(nbytes), (), protocol or "", 0)
        geom = self.geometry(ranks)
        if math.isinf(geom.intra_bw) or (geom.n_nodes > 1 and math.isinf(geom.nic_bw)):
            # an ideal interconnect (ideal:N): the transfers cross its links in no time
            plain = "ring" if (op, "ring") in BUILDERS else "mst"
            return dataclasses.replace(build_schedule(op, plain, ranks, nbytes, self.cluster.machine),
                                       algorithm=algorithm)
        if p2p:
            if algorithm not in ("nccl", "nccl_p2p", "nccl_hierarchical"):
                raise CollectiveError(f"NCCL runs {op} as send/receive: use nccl, nccl_p2p or "
                                      f"nccl_hierarchical, not {algorithm}")
            if protocol not in (None, "Simple"):
                raise CollectiveError(f"NCCL's send/receive ({op}) runs the Simple protocol, not {protocol}")
            return nccl_schedules.p2p_schedule(self.cluster, geom, op, ranks, nbytes,
                                               hierarchical=algorithm == "nccl_hierarchical")
        if algorithm in ("nccl_p2p", "nccl_hierarchical"):
            raise CollectiveError(f"{algorithm} runs all-to-all, scatter, gather and sendrecv, not {op}")
        protocols = (protocol,) if protocol else nccl.PROTOCOLS
        algorithms = nccl.NCCL_FAMILY if algorithm == "nccl" else (algorithm,)
        if algorithm != "nccl":
            for proto in protocols:
                if not nccl.enabled(geom, op, algorithm, proto) and (protocol is not None or not any(
                        nccl.enabled(geom, op, algorithm, p) for p in protocols)):
                    nccl.execution(geom, op, algorithm, proto, nbytes)      # raises the explanation
        chosen, proto = nccl.choose(geom, op, nbytes, algorithms, protocols)
        ex = nccl.execution(geom, op, chosen, proto, nbytes)
        return nccl_schedules.BUILDERS[chosen](self.cluster, geom, op, ex, ranks, nbytes)

    def plan(self, schedule: Schedule) -> tuple["StepPlan", ...]:
        """The schedule's steps routed and priced for execution (cached per
        schedule object): see ``StepPlan``."""
        cached = self._plans.get(id(schedule))
        if cached is not None and cached[0] is schedule:
            return cached[1]
        plan = tuple(StepPlan.of(step, self.pattern(step), self.gamma_s_per_byte) for step in schedule.steps)
        self._plans[id(schedule)] = (schedule, plan)
        return plan

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


@dataclass(frozen=True, slots=True)
class StepPlan:
    """A step as ``_CollectiveRun`` executes it, worked out once per step:
    ``wait_s`` (latency x repeat; None when its latency is 0), ``size`` (bytes
    x repeat of its batch; None when it moves no bytes on any link) and
    ``reduce_s`` (gamma x reduced bytes x repeat; None when there is no
    reduction time), with the same float arithmetic as doing it at each step
    (the products were a sixth of a collective's Python work)."""

    step: Step
    pattern: StepPattern
    wait_s: float | None
    size: float | None
    reduce_s: float | None

    @staticmethod
    def of(step: Step, pattern: StepPattern, gamma_s_per_byte: float) -> "StepPlan":
        moves = pattern.bytes_per_transfer > 0 and pattern.links
        reduces = gamma_s_per_byte and step.reduce_bytes
        return StepPlan(step, pattern, pattern.latency_s * step.repeat if pattern.latency_s > 0 else None,
                        pattern.bytes_per_transfer * step.repeat if moves else None,
                        gamma_s_per_byte * step.reduce_bytes * step.repeat if reduces else None)


class _CollectiveRun:
    """The state of one collective in flight: which step, and when it began.

    A step runs as: its latency wait (a calendar entry), its batch of bytes
    (a flow), its reduction wait (a calendar entry); a phase that takes no
    time is skipped in place, and steps that take no time at all follow one
    another in a loop."""

    __slots__ = ("net", "schedule", "plan", "on_done", "op_id", "label", "index", "start_s", "step_start_s")

    def __init__(self, net: NetworkRuntime, schedule: Schedule, on_done, op_id: int, label: str):
        self.net = net
        self.schedule = schedule
        cached = net._plans.get(id(schedule))     # (NetworkRuntime.plan's cache, without the call)
        self.plan = cached[1] if cached is not None and cached[0] is schedule else net.plan(schedule)
        self.on_done = on_done
        self.op_id = op_id
        self.label = label
        self.index = 0
        self.start_s = net.env._now
        self.step_start_s = self.start_s

    def next_step(self, _arg=None) -> None:
        env = self.net.env
        plan = self.plan
        index = self.index
        while index < len(plan):
            step = plan[index]
            now = self.step_start_s = env._now
            if step.wait_s is not None:     # then its bytes, else what follows them (_reduce)
                env.at(now + step.wait_s, self._reduce if step.size is None else self._move_bytes)
                return
            if step.size is not None:
                self._move_bytes()
                return
            if step.reduce_s is not None:
                env.at(now + step.reduce_s, self._step_done)
                return
            if self.net.record:     # a step that takes no time
                self._record(step)
            index = self.index = index + 1
        self.on_done(self.start_s, env._now)

    def _move_bytes(self, _arg=None) -> None:
        """The step's bytes move (after its latency, if any): a flow that calls
        ``_reduce`` when they have arrived. (A step that moves none goes from its
        latency to ``_reduce`` directly: most collectives open with a step of
        latency alone, NCCL's base latency.)"""
        step = self.plan[self.index]
        pattern = step.pattern
        if pattern.arrays is not None:      # a VectorFluidNetwork: the step's path is at hand
            self.net.fluid.start_path(step.size, pattern.links, pattern.weights, pattern.arrays, self._reduce,
                                      pattern.max_rate)
        else:
            self.net.fluid.start(step.size, pattern.links, self._reduce, weights=pattern.weights,
                                 max_rate=pattern.max_rate)

    def _reduce(self, _arg=None) -> None:
        """The step's bytes have arrived: its reduction, else it is over."""
        step = self.plan[self.index]
        if step.reduce_s is not None:
            env = self.net.env
            env.at(env._now + step.reduce_s, self._step_done)
            return
        if self.net.record:
            self._record(step)
        self.index += 1
        self.next_step()

    def _step_done(self, _arg=None) -> None:
        if self.net.record:
            self._record(self.plan[self.index])
        self.index += 1
        self.next_step()

    def _record(self, step: StepPlan) -> None:
        """A row per link ``step`` loaded, now that it is over (when the network records)."""
        net = self.net
        pattern = step.pattern
        per_link = pattern.bytes_per_transfer * step.step.repeat
        end = net.env._now
        context = (None, None, None, f"step {self.index}", f"{self.schedule.op}/{self.schedule.algorithm}")
        label = f"{self.label}: {step.step.label}"
        for link, weight in zip(pattern.links, pattern.weights):
            net.rows.append(("network", f"{link[0]}->{link[1]}", self.op_id, label,
                             "comm", self.step_start_s, end, 0.0, per_link * weight, 0,
                             max(1, round(weight)),
                             context))


@dataclass(frozen=True)
class CollectiveResult:
    op: str
    algorithm: str
    ranks: int
    nbytes: float
    time_s: float
    steps: int
    events: int
    protocol: str = ""
    channels: int = 0

    @property
    def algbw_bytes_per_s(self) -> float:
        return self.nbytes / self.time_s if self.time_s > 0 else float("inf")

    @property
    def busbw_bytes_per_s(self) -> float:
        return self.algbw_bytes_per_s * BUSBW_FACTOR[self.op](self.ranks)

    def as_dict(self) -> dict:
        """JSON-ready fields; a bandwidth that is infinite (no time taken) is null."""
        def finite(value: float) -> float | None:
            return value if math.isfinite(value) else None
        return {"op": self.op, "algorithm": self.algorithm, "protocol": self.protocol,
                "channels": self.channels, "ranks": self.ranks, "bytes": self.nbytes,
                "time_s": self.time_s, "algbw_bytes_per_s": finite(self.algbw_bytes_per_s),
                "busbw_bytes_per_s": finite(self.busbw_bytes_per_s), "steps": self.steps,
                "events": self.events}


def simulate_collectives(cluster: Cluster, requests: Sequence[tuple[str, str, Sequence[int], float]],
                         gamma_s_per_byte: float = 0.0, ecmp: bool = False, record: bool = False,
                         on_network: Callable[[NetworkRuntime], None] | None = None,
                         candidates: Sequence[str] | None = None,
                         protocol: str | None = None) -> list[CollectiveResult]:
    """Run collectives (op, algorithm, ranks, bytes) concurrently from time 0
    on an otherwise idle cluster; one result per request. ``protocol`` applies
    to the NCCL family's requests."""
    env = Environment()
    network = NetworkRuntime(env, cluster, ecmp=ecmp, gamma_s_per_byte=gamma_s_per_byte, record=record)
    schedules = [network.schedule(op, algo, ranks, nbytes, candidates,
                                  protocol if normalize_algorithm(algo.split("/")[0]) in NCCL_NAMES else None)
                 for op, algo, ranks, nbytes in requests]
    processes = [env.process(network.run(s, op_id=i)) for i, s in enumerate(schedules)]
    env.run()
    events = env.scheduled()
    if on_network is not None:
        on_network(network)
    return [CollectiveResult(s.op, s.algorithm, len(s.ranks), s.nbytes, p.value[1] - p.value[0],
                             sum(step.repeat for step in s.steps), events, s.protocol, s.channels)
            for s, p in zip(schedules, processes)]


def simulate_collective(cluster: Cluster, op: str, algorithm: str, nbytes: float,
                        ranks: Sequence[int] | None = None, gamma_s_per_byte: float = 0.0,
                        ecmp: bool = False, candidates: Sequence[str] | None = None,
                        protocol: str | None = None) -> CollectiveResult:
    """One collective alone on the cluster (all ranks by default)."""
    ranks = list(range(cluster.size)) if ranks is None else list(ranks)
    return simulate_collectives(cluster, [(op, algorithm, ranks, nbytes)], gamma_s_per_byte, ecmp,
                                candidates=candidates, protocol=protocol)[0]
