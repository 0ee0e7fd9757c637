"""The simulation driver: one SimPy Environment (sim.engine.calendar) per run.

An op starts when all its predecessors have finished: the ops it lists in
``deps`` and the op before it on its (rank, stream). The driver counts
unfinished predecessors per op and starts an op the moment its count reaches
zero, from the completion callback of the last one: a compute or memory op on
its rank's device (sim.engine.device), a collective on the network
(sim.network.runtime), both driven by callbacks on the environment's calendar.
A collective's communication kernel takes SMs on each simulated member as
that member becomes ready (``Simulation._plan_comm_kernels``).
Each op's start, end and units held are written into ``OpTimes`` columns
indexed by the op's position in the trace. Time is simulated seconds (float64). Nothing
here reads the wall clock except to report ``wall_s``, and every collection
that orders events is ordered (lists, insertion-ordered dicts, a heap with
sequence numbers), so the same inputs produce byte-identical Arrow files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from array import array
from itertools import compress
from operator import attrgetter
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from sim.engine.calendar import Environment
from sim.engine.device import HOST_UNIT, UNIT_NAMES, BoundOp, DeviceRuntime, OpTimes, bind_op
from sim.engine.fluid import FluidNetwork, VectorFluidNetwork
from sim.engine.recorder import OpRows, TimelineBuilder
from sim.errors import ScenarioError, TraceError
from sim.network.collectives import CollectiveError, Schedule
from sim.reports.network import link_units
from sim.reports.tables import bubbles_table, memory_table, string_codes, utilization_table
from sim.reports.writer import write_run
from sim.runtime.heap import collector_paused, heap_frozen, return_free_memory
from sim.runtime.scenario import Scenario, load_scenario, load_scenario_dict
from sim.workload.trace import COMM_OPS, MATRIX_OPS, Op

ProgressFn = Callable[[int, int], None]


@dataclass(repr=False)
class Result:
    """What a run produces: the Arrow tables, the summary, and the provenance
    (accsim version, resolved scenario, overrides) that outputs carry."""

    timeline: pa.Table
    bubbles: pa.Table
    utilization: pa.Table
    memory: pa.Table
    summary: dict[str, Any]
    extra_tables: dict[str, pa.Table] = field(default_factory=dict)

    def tables(self) -> dict[str, pa.Table]:
        return {"timeline": self.timeline, "bubbles": self.bubbles,
                "utilization": self.utilization, "memory": self.memory, **self.extra_tables}

    @property
    def provenance(self) -> dict[str, Any]:
        return self.summary.get("provenance", {})

    def write(self, out_dir: str | os.PathLike, overwrite: bool = False, format: str = "arrow",
              extras: Sequence[Callable[[Path], None]] = ()) -> Path:
        """Write every table as ``NAME.arrow`` (``format="parquet"``: ``NAME.parquet``)
        and ``summary.json`` into ``out_dir``, whole or not at all. A non-empty
        ``out_dir`` is refused unless ``overwrite`` (which replaces a run's own
        files only). ``extras`` write more files into the directory before it
        appears (the CLI's ``--perfetto`` and ``--write-trace``)."""
        metadata = {"accsim.version": self.provenance.get("accsim_version", ""),
                    "accsim.provenance": json.dumps(self.provenance, sort_keys=True, default=str)}
        return write_run(out_dir, self.tables(), self.summary, overwrite=overwrite, fmt=format,
                         metadata=metadata, extras=extras)

    def __repr__(self) -> str:
        s = self.summary
        time_s = s.get("iteration_time_s", s.get("makespan_s"))
        return (f"<Result {s.get('scenario')!r}: {time_s!r} s simulated, {s.get('ops')} ops on "
                f"{s.get('devices')} devices; tables {', '.join(f'{k} ({t.num_rows} rows)' for k, t in self.tables().items())}>")


def _combine(schedules: Sequence[Schedule]) -> Schedule:
    """One schedule whose steps carry the transfers of all the given (symmetric)
    schedules, so that copies running at the same time are costed together."""
    first = schedules[0]
    if len(schedules) == 1:
        return first
    steps = [dataclasses.replace(parts[0], transfers=tuple(t for part in parts for t in part.transfers))
             for parts in zip(*(s.steps for s in schedules))]
    return dataclasses.replace(first, steps=tuple(steps))


def _successor_edges(src: np.ndarray, dst: np.ndarray, compute: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The precedence edges ordered by source, each op's successors that are
    collectives first (their kernels launch first: ``_plan_comm_kernels``),
    otherwise in the trace's edge order (a stable sort keeps it). An edge
    repeated next to itself is kept once: an op waits for its last
    predecessor, however many edges tie them (a collective after another on
    the stream of each of its members gives one edge per member: 58% of the
    edges of the GPT 1T run), and counting each again changed nothing but
    the time spent."""
    order = np.argsort(src * 2 + compute[dst], kind="stable")
    src, dst = src[order], dst[order]
    keep = np.ones(len(src), dtype=bool)
    keep[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
    return src[keep], dst[keep]


def _successor_tuples(src: np.ndarray, dst: np.ndarray, count: int) -> list[tuple[int, ...]]:
    """Each op's successors as a tuple (``dst`` of its edges, in edge order), from
    edges ordered by source (``_successor_edges``). A tuple, not a list: 16 bytes
    fewer an op, as fast to walk; one int object per op shared by the tuples (an
    edge's own int was 28 of its 36 bytes). Made per number of successors k: the
    ops with k successors own k consecutive edges each, which ``zip`` cuts into
    tuples in C (a slice and a tuple per op from Python took GPT-3 175B 0.10 CPU s,
    this 0.065)."""
    per_op = np.bincount(src, minlength=count)
    per_edge = per_op[src]
    ints = np.array(range(count), dtype=object)
    out = np.empty(count, dtype=object)
    for k in np.unique(per_op).tolist():
        if k:
            at = np.flatnonzero(per_op == k)
            flat = ints[dst[per_edge == k]].tolist()
            out[at] = np.fromiter(zip(*[iter(flat)] * k), dtype=object, count=len(at))
    successors = out.tolist()
    for index in np.flatnonzero(per_op == 0).tolist():
        successors[index] = ()
    return successors


class Simulation:
    """Replays a validated trace on one device, or on the ranks of a cluster."""

    def __init__(self, scenario: Scenario, progress: ProgressFn | None = None,
                 progress_every: int = 10000, keep_op_state: bool = True):
        """``keep_op_state``: keep the per-op state (bound ops, units granted,
        memory ends) after the run for inspection; ``sim.run`` passes False, so
        it is dropped once the timeline is built (``_release_rows``)."""
        self.scenario = scenario
        self.keep_op_state = keep_op_state
        self.env = Environment()
        trace = scenario.trace
        ops = self._ops = trace.ops     # (the hot paths look ops up by position)
        cluster = scenario.cluster
        self.network = None
        if cluster is not None:
            from sim.network.runtime import NetworkRuntime
            self.network = NetworkRuntime(self.env, cluster,
                                          VectorFluidNetwork(self.env, {}),
                                          record=scenario.record_links)
        self.devices: dict[int, DeviceRuntime] = {}
        self.bound: list[BoundOp | Schedule] = []  # by position; filled once the devices exist (shared: see _bind_all)
        self.times = OpTimes(len(ops))
        for rank in trace.ranks or [0]:
            if cluster is not None and not 0 <= rank < cluster.size:
                raise TraceError(f"{trace.path}: ops run on rank {rank}, but {cluster.name} has ranks "
                                 f"0..{cluster.size - 1}")
            name = cluster.ranks[rank] if cluster is not None else scenario.device_name
            memory = FluidNetwork(self.env, {})
            self.devices[rank] = DeviceRuntime(self.env, name, scenario.device_for(rank), ops, self.bound,
                                               self.times, self._on_done, memory,
                                               strict_memory=not scenario.continue_on_oom)
        self._schedules: dict[tuple, Schedule] = {}
        self._schedules_by_identity: dict[tuple, tuple[tuple, Schedule]] = {}
        self._schedule_ids: set[int] = set()    # of the schedules in _schedules
        self._templates: dict[tuple, BoundOp] = {}
        self._starters: list[Callable[[int, Any], None]] = []
        compute = self._bind_all(ops)
        src, dst = _successor_edges(*trace.edge_indices(), compute)
        self.successors: list[tuple[int, ...]] = _successor_tuples(src, dst, len(ops))
        waiting = np.bincount(dst, minlength=len(ops))
        self._sources = np.flatnonzero(waiting == 0).tolist()    # the ops that wait for none
        self.waiting = waiting.tolist()
        self._kernels_of: dict[int, tuple[tuple, tuple[DeviceRuntime, ...]]] = {}   # see _comm_kernels
        self._plan_comm_kernels(src, dst, compute)
        self.start_s: Mapping[int, float] = {}  # by op id, once the run is over
        self.end_s: Mapping[int, float] = {}
        self.comm_done = array("q")   # the collectives in the order they finished
        self._simulated_members: dict[tuple[int, ...], tuple[DeviceRuntime, ...]] = {}
        self.completed = 0
        self.progress = progress
        self.progress_every = max(1, progress_every)

    def _bind_all(self, ops: Sequence[Op]) -> np.ndarray:
        """Bind every op (``self.bound``) and pick what starts it (``self._starters``:
        its device's ``start``, or ``_start_collective``); returns whether each op
        is a compute op (a bool array). One loop with its look-ups in locals: it
        is most of the set-up of a generated trace, whose ops repeat a few shapes:
        ops of one shape (with a ``duration_s``) share one binding per device spec,
        whose ``op`` is None (the devices look ops up by position), where a
        binding per op was ~100 bytes an op (56 MB on GPT 1T)."""
        bound, starters = self.bound, self._starters
        is_compute = bytearray(len(ops))
        specs = {rank: device.spec for rank, device in self.devices.items()}
        start_on = {rank: device.start for rank, device in self.devices.items()}
        start_collective = self._start_collective   # one bound method, not one per collective
        templates = self._templates
        path = self.scenario.trace.path
        for index, op in enumerate(ops):
            if op.op in COMM_OPS:
                bound.append(self._bind_collective(op))
                starters.append(start_collective)
                continue
            spec = specs[op.rank]
            if op.duration_s is None:   # priced from its shape
                bound.append(bind_op(op, spec, path))
            else:   # bind_op reads no other field of such an op: one binding serves them all
                key = (spec.name, op.op, op.unit, op.tier, op.src_tier, op.dst_tier, op.dtype, op.duration_s)
                template = templates.get(key)
                if template is None:
                    template = templates[key] = dataclasses.replace(bind_op(op, spec, path), op=None)
                bound.append(template)
            starters.append(start_on[op.rank])
            is_compute[index] = 1
        return np.frombuffer(is_compute, dtype=bool)

    def _bind_collective(self, op: Op) -> Schedule:
        if self.network is None:
            raise TraceError(f"{self.scenario.trace.path}: op {op.id} ({op.name}) is a {op.op}; "
                             f"collectives need a cluster in the scenario")
        cache = self._schedules
        # generated traces share one mirror_groups tuple among many ops: look it up by identity
        # first (hashing hundreds of rank tuples per op was a tenth of the set-up); the tuple
        # stays referenced by the cache, so its id is not reused
        quick = (op.op, op.algorithm, op.group, id(op.mirror_groups), op.bytes_read)
        hit = self._schedules_by_identity.get(quick)
        if hit is not None and hit[0] is op.mirror_groups:
            return hit[1]
        key = (op.op, op.algorithm, op.group, op.mirror_groups, op.bytes_read)
        schedule = cache.get(key)
        if schedule is None:
            try:
                # auto picks the algorithm on the op's own group; its mirrors use the same one
                # (the primary's schedule relabelled where that is what building gives: NetworkRuntime.mirror)
                network = self.network
                primary = network.schedule(op.op, op.algorithm or "auto", op.group, op.bytes_read)
                schedule = _combine([primary] + [network.mirror(primary, group) or network.schedule(
                    op.op, primary.algorithm, group, op.bytes_read, protocol=primary.protocol or None)
                                                 for group in op.mirror_groups])
            except CollectiveError as exc:
                raise TraceError(f"{self.scenario.trace.path}: op {op.id} ({op.name}): {exc}") from None
            if id(schedule) in self._schedule_ids:  # one schedule object per key (_kernels_and_devices)
                schedule = dataclasses.replace(schedule)
            self._schedule_ids.add(id(schedule))
            cache[key] = schedule
        self._schedules_by_identity[quick] = (op.mirror_groups, schedule)
        return schedule

    def _plan_comm_kernels(self, src: np.ndarray, dst: np.ndarray, compute: np.ndarray) -> None:
        """Where and when each collective's communication kernel takes SMs.

        NCCL runs one thread block per channel, and its blocks do not share an
        SM with compute kernels (S. Jeaugey, NVIDIA/nccl#689 and #181). A
        kernel's blocks stay resident until they exit, so NCCL's kernel holds its
        channels' SMs on each member GPU from its launch on that GPU's stream
        until the collective ends, waiting there for peers that are late. Hence:

        - The kernel on rank r launches when the collective's predecessors *on
          r* have finished (r's stream predecessor, deps produced on r,
          collectives r took part in), not when the last member is ready; the
          data moves once every member is there. Taking every member's SMs when
          the last one became ready made rank 0's grant depend on its peers'
          timing, so full fidelity (which simulates the peers) and folded (which
          assumes they behave as rank 0) disagreed by 15% on ZeRO-3 with TP.
        - Kernels made ready at one instant: the communication kernels take
          their SMs first (an op's successors list its collectives first), then
          compute kernels take what is left. A compute grid's blocks turn over
          wave by wave and NCCL's stay, so within one wave the NCCL kernel holds
          its channels whatever the launch order; the trace's list order cannot
          decide it (a full-fidelity trace lists a collective shared by several
          replicas where the last one issues it).
        - A member whose readiness the trace does not record (a point-to-point
          receiver; a predecessor on no member rank counts for every member)
          launches when the collective starts.

        Only collectives with a simulated member ready before the others need
        tracking (full fidelity; folded ones have one simulated member): for
        them ``_kernels[op] = {rank: [predecessor edges left, device, SMs]}``,
        ``_launches[pred] = {collective: ranks its end readies}`` and
        ``_at_start[op]``; every other collective launches on all its members
        when it starts. The device (``DeviceRuntime.launch_comm_kernel``)
        grants what is free and the rest as SMs free up; ``_held[op]`` lists the
        devices where a kernel runs. ``src``/``dst``: the precedence edges;
        ``compute``: whether each op is a compute op (from ``_bind_all``)."""
        ops = self.scenario.trace.ops
        self._kernels: dict[int, dict[int, list]] = {}
        self._launches: dict[int, dict[int, tuple[int, ...]]] = {}     # (few ops have any)
        self._at_start: dict[int, tuple[int, ...]] = {}
        self._held: dict[int, list] = {}
        members: dict[int, tuple[tuple[int, DeviceRuntime, int], ...]] = {}
        # a kernel runs on a simulated member only: a group with one (folded runs) needs no tracking;
        # worked out per schedule (each serves one group: _kernels_and_devices), once per distinct
        # schedule (by identity, in the order of first use), then spread to the collectives with numpy
        # (where a dictionary look-up per collective was: on GPT-3 175B under cProfile this function's
        # own time went from 0.09 to 0.04 s)
        devices, bound = self.devices, self.bound
        collectives = np.flatnonzero(~compute)
        ids = np.fromiter(map(id, map(bound.__getitem__, collectives.tolist())), dtype=np.int64,
                          count=len(collectives))
        _, first, codes = np.unique(ids, return_index=True, return_inverse=True)
        several = np.zeros(len(first), dtype=bool)
        for code in np.argsort(first, kind="stable").tolist():
            index = int(collectives[first[code]])
            if sum(rank in devices for rank in ops[index].group) > 1:
                several[code] = len(self._comm_kernels(index)) > 1
        for index in collectives[several[codes]].tolist():
            members[index] = self._comm_kernels(index)
        if not members:
            return
        edges: dict[int, list[tuple[int, tuple[int, ...]]]] = {}
        tracked = np.zeros(len(ops), dtype=bool)
        tracked[np.fromiter(members, dtype=np.int64, count=len(members))] = True
        into = tracked[dst]
        # the members a predecessor readies: those of its group (collectives) or its own rank,
        # else all; generated traces repeat a few (group or rank, members) pairs: each is worked out once
        readied: dict[tuple, tuple[int, ...]] = {}
        for a, b in zip(src[into].tolist(), dst[into].tolist()):
            pred = ops[a]
            kernels = members[b]
            # (a send is on its sender's stream only; its arrival readies the receiver)
            by_group = pred.op in COMM_OPS and pred.group and (pred.op != "sendrecv" or pred.id in ops[b].deps)
            key = (pred.group if by_group else pred.rank, id(kernels))
            ranks = readied.get(key)
            if ranks is None:
                every = tuple(r for r, _, _ in kernels)
                if by_group:
                    own = set(pred.group)
                    ranks = tuple(r for r in every if r in own) or every
                else:
                    ranks = (pred.rank,) if pred.rank in every else every
                readied[key] = ranks
            edges.setdefault(b, []).append((a, ranks))
        for b, incoming in edges.items():
            first = incoming[0][1]
            if all(ranks == first for _, ranks in incoming):
                continue  # every member is ready when the collective starts (each is readied by all or none)
            counts = {rank: 0 for rank, _, _ in members[b]}
            for _, ranks in incoming:
                for rank in ranks:
                    counts[rank] += 1
            self._kernels[b] = {rank: [counts[rank], device, sms] for rank, device, sms in members[b]}
            self._at_start[b] = tuple(rank for rank, count in counts.items() if not count)
            for a, ranks in incoming:
                launches = self._launches.get(a)
                if launches is None:
                    launches = self._launches[a] = {}
                launches[b] = ranks

    def _comm_kernels(self, index: int) -> tuple[tuple[int, DeviceRuntime, int], ...]:
        """(rank, device, SMs) of collective ``index``'s kernel on each simulated member:
        one SM per channel (the schedule's channels, else the device's ``comm_sms``);
        none for a collective that takes no time."""
        return self._kernels_and_devices(index)[0]

    def _kernels_and_devices(self, index: int) -> tuple[tuple, tuple[DeviceRuntime, ...]]:
        """``_comm_kernels(index)`` and the devices they run on, worked out once per
        schedule: a schedule serves one group (``_bind_collective``'s cache keys
        hold it; the cache keeps the schedule, so its id stays its own)."""
        schedule = self.bound[index]
        found = self._kernels_of.get(id(schedule))
        if found is None:
            kernels = ()
            if self.network.predicted_time_s(schedule) > 0:
                for rank in self._ops[index].group:
                    device = self.devices.get(rank)
                    sm = device.spec.sm_array if device is not None else None
                    sms = (schedule.channels or sm.comm_sms) if sm is not None else 0
                    if sms:
                        kernels += ((rank, device, sms),)
            found = self._kernels_of[id(schedule)] = (kernels, tuple(device for _, device, _ in kernels))
        return found

    def _launch(self, index: int, ranks: tuple[int, ...]) -> None:
        """A predecessor of collective ``index`` finished on each of ``ranks``; where it
        was the last, the kernel launches there (see ``_plan_comm_kernels``)."""
        kernels = self._kernels[index]
        for rank in ranks:
            kernel = kernels[rank]
            left = kernel[0] - 1
            kernel[0] = left
            if not left:
                device = kernel[1]
                device.launch_comm_kernel(index, kernel[2])
                self._held.setdefault(index, []).append(device)

    def _start_collective(self, index: int, bound: Schedule) -> None:
        op = self._ops[index]
        if op.tensor:  # the output buffer, on every simulated member (e.g. gathered parameters)
            for rank in op.group:
                device = self.devices.get(rank)
                if device is not None:
                    size = op.bytes_written if op.alloc_bytes is None else op.alloc_bytes
                    device.ledger.allocate(op.tensor, device.spec.default_tier, int(size), self.env.now,
                                           context=f"op {op.id} ({op.name}), tensor {op.tensor}")
        found = self._kernels_of.get(id(bound))     # (_kernels_and_devices, without the call)
        kernels, held = found if found is not None else self._kernels_and_devices(index)
        if index in self._kernels:      # members launch theirs as they become ready
            at_start = self._at_start[index]
            held = self._held.pop(index, [])
            for rank, device, sms in kernels:
                if rank in at_start:
                    device.launch_comm_kernel(index, sms)
                    held.append(device)
        else:   # every member launches now (the common case)
            for _, device, sms in kernels:
                device.launch_comm_kernel(index, sms)
        self.network.start(bound, partial(self._comm_done, index, held), op.id, op.name)

    def _comm_done(self, index: int, held: Sequence[DeviceRuntime], start: float, end: float) -> None:
        for device in held:
            device.end_comm_kernel(index)
        op = self._ops[index]
        self.times.start_s[index] = start
        self.times.end_s[index] = end
        self.comm_done.append(index)    # its timeline rows are made from it in _comm_rows
        if op.frees:
            for device in self._members(op.group):
                for tensor in op.frees:
                    device.ledger.release(tensor, end)
        self._on_done(index)

    def _members(self, group: tuple[int, ...]) -> tuple[DeviceRuntime, ...]:
        """The members of ``group`` simulated here, in group order."""
        devices = self._simulated_members.get(group)
        if devices is None:
            devices = self._simulated_members[group] = tuple(
                device for device in map(self.devices.get, group) if device is not None)
        return devices

    def _comm_rows(self, builder: TimelineBuilder) -> None:
        """A ``comm`` row per simulated member of each finished collective, in
        the order they finished (detail: the schedule's ``op/algorithm``),
        given to ``builder`` as arrays (a Python tuple per row for the whole run
        was about 300 bytes a row, held from the event loop to the tables).

        The collectives are read in trace order (the order they lie in memory;
        in the order they finished, scattered, each read took four times
        longer), and each distinct group and schedule is looked at once."""
        ops, bound = self.scenario.trace.ops, self.bound
        done = np.frombuffer(self.comm_done, dtype=np.int64)
        order = np.argsort(done, kind="stable")
        in_trace_order = done[order].tolist()
        collectives = list(map(ops.__getitem__, in_trace_order))
        group_of, group_at = _distinct(collectives, attrgetter("group"), order)
        schedule_of, schedule_at = _distinct(list(map(bound.__getitem__, in_trace_order)), None, order)
        bytes_read = np.empty(len(done))
        bytes_read[order] = np.fromiter(map(attrgetter("bytes_read"), collectives), dtype=np.float64,
                                        count=len(collectives))
        device_code = {device: code for code, device in enumerate(self.devices.values())}
        members = [[device_code[d] for d in self._members(group)] for group in group_of]
        per_group = np.array([len(m) for m in members], dtype=np.int64)
        table = np.zeros((len(members), max(map(len, members), default=0)), dtype=np.int32)
        for code, devices in enumerate(members):
            table[code, :len(devices)] = devices
        per_op = per_group[group_at]
        row_op = np.repeat(np.arange(len(done)), per_op)
        first_row = np.cumsum(per_op) - per_op
        details = {f"{schedule.op}/{schedule.algorithm}": None for schedule in schedule_of}
        detail_code = {name: code for code, name in enumerate(details)}
        detail_of = np.array([detail_code[f"{s.op}/{s.algorithm}"] for s in schedule_of], dtype=np.int32)
        position = done[row_op]
        builder.add_stream(OpRows(
            position=position,
            device=(table[group_at[row_op], np.arange(len(row_op)) - first_row[row_op]],
                    [d.name for d in self.devices.values()]),
            unit=(np.zeros(len(row_op), dtype=np.int32), ["comm"]),
            category=(np.zeros(len(row_op), dtype=np.int32), ["comm"]),
            start_s=np.frombuffer(self.times.start_s, dtype=np.float64)[position],
            end_s=np.frombuffer(self.times.end_s, dtype=np.float64)[position],
            flops=np.zeros(len(row_op)),
            bytes=bytes_read[row_op],
            units_held=np.array([len(g) for g in group_of], dtype=np.int64)[group_at[row_op]],
            detail=(detail_of[schedule_at[row_op]], list(details))))

    def _on_done(self, index: int) -> None:
        """Op ``index`` has finished: each successor waits for one op fewer, and
        starts when it waits for none (the op's end launches collectives'
        kernels first where ``_launches`` says so). Runs once per op: the ops
        finished are counted only for a progress callback, and the lists the
        loop reads are taken into locals once."""
        if self.progress is not None:
            self.completed += 1
            if self.completed % self.progress_every == 0:
                self.progress(self.completed, len(self.bound))
        waiting = self.waiting
        launches = self._launches.get(index)
        if launches is None:    # (nearly every op)
            starters, bound = self._starters, self.bound
            for nxt in self.successors[index]:
                left = waiting[nxt] - 1
                waiting[nxt] = left
                if not left:
                    starters[nxt](nxt, bound[nxt])
            return
        for nxt in self.successors[index]:
            if nxt in launches:  # a collective's kernel launches on members
                self._launch(nxt, launches[nxt])
            left = waiting[nxt] - 1
            waiting[nxt] = left
            if not left:
                self._starters[nxt](nxt, self.bound[nxt])

    def run(self) -> Result:
        wall_start = time.perf_counter()
        for device in self.devices.values():
            for tier, nbytes in self.scenario.resident_bytes.items():
                device.ledger.allocate(f"resident:{tier}", tier, nbytes, 0.0, "scenario resident_bytes")
        for rank, device in self.devices.items():
            for tensor, (tier, nbytes) in self.scenario.resident_tensors_for(rank).items():
                device.ledger.allocate(tensor, tier, nbytes, 0.0, f"{tensor} of rank {rank}")
        if self.progress is not None:
            self.progress(0, len(self.bound))
        ready = self._sources
        # at one instant communication kernels launch first (see _plan_comm_kernels)
        for index in sorted(ready, key=lambda i: isinstance(self.bound[i], BoundOp)):
            self._starters[index](index, self.bound[index])
        self.env.run()
        wall_s = time.perf_counter() - wall_start
        self._release_schedule()
        never_ran = int(np.isnan(np.frombuffer(self.times.end_s, dtype=np.float64)).sum())  # (NaN: no end)
        if never_ran:
            raise RuntimeError(f"{never_ran} ops never ran: the run deadlocked")
        if self.progress is not None:
            self.progress(len(self.bound), len(self.bound))
        self.start_s = self.scenario.trace.by_id(self.times.start_s)
        self.end_s = self.scenario.trace.by_id(self.times.end_s)
        stage = getattr(self.progress, "stage", None)
        with stage("building the timeline, bubble and utilization tables") if stage else nullcontext():
            return self._result(wall_s)

    def _release_schedule(self) -> None:
        """Drop what only the event loop needs (per-op successor lists, starters,
        counts, kernel launches) before the result tables are built: on a
        million-op run the successor lists alone are a few hundred MB."""
        self.successors = []
        self._starters = []
        self.waiting = []
        self._launches = []

    def _release_rows(self) -> None:
        """Drop what only the timeline's rows were made of (the bound-op list,
        memory ends, units granted, the finished lists) once the timeline is
        built, before the other tables: a few tens of MB on GPT 1T (the members
        of each group simulated here, a cache of the loop, about 20 MB)."""
        self.bound.clear()             # the devices share this list
        self.times.mem_end_s = []
        self.times.granted = []
        self.comm_done = array("q")
        self._simulated_members = {}
        for device in self.devices.values():
            device.finished = []

    def _blockers(self) -> tuple[Sequence[float], Sequence[int]]:
        """Per op (trace position): when it became ready, and the position of the
        predecessor that finished last (-1 for none), as ``array('d')`` and
        ``array('q')`` (8 bytes an op, not lists of Python objects)."""
        trace = self.scenario.trace
        ops = trace.ops
        src, dst = trace.edge_indices()
        ends = np.frombuffer(self.times.end_s, dtype=np.float64)
        ready = np.zeros(len(ops))
        # edges a million at a time (maxima do not depend on the order: the same result, and a
        # few arrays of a million edges alive rather than of every edge)
        chunks = [slice(first, first + (1 << 20)) for first in range(0, len(src), 1 << 20)]
        for part in chunks:
            np.maximum.at(ready, dst[part], ends[src[part]])
        # the predecessor that finished last, the last edge in trace order on ties: of the edges whose
        # source ended when the destination became ready (times are >= 0, so every op with predecessors
        # has one), the greatest edge index (was a lexsort of every edge: a few hundred MB on 4.7M edges)
        last_edge = np.full(len(ops), -1, dtype=np.int64)
        for part in chunks:
            tied = np.flatnonzero(ends[src[part]] == ready[dst[part]]) + part.start
            np.maximum.at(last_edge, dst[tied], tied)
        has = last_edge >= 0
        blocker = np.full(len(ops), -1, dtype=np.int64)   # an op without predecessors has none (-1)
        blocker[has] = src[last_edge[has]]
        return array("d", ready.tobytes()), array("q", blocker.tobytes())

    def _result(self, wall_s: float) -> Result:
        builder = TimelineBuilder(self.scenario.trace.ops)
        units_of = {device.name: device.record_timeline(builder) for device in self.devices.values()}
        self._comm_rows(builder)
        if self.network is not None:
            builder.add_row_tuples(self.network.rows)
        timeline = builder.table()
        del builder
        if not self.keep_op_state:
            self._release_rows()
            return_free_memory()
        makespan = max(self.times.end_s, default=0.0)
        ready, blocker = self._blockers()
        if not self.keep_op_state:
            self.scenario.trace.release_edges()     # their last use in a run
        compute_units = [(d.name, UNIT_NAMES[k]) for d in self.devices.values() for k in d.spec.unit_kinds]
        bubbles = bubbles_table(timeline, makespan, ready, blocker, self.scenario.trace,
                                self.times.start_s, compute_units, self.scenario.pipeline)
        del ready, blocker
        if not self.keep_op_state:
            return_free_memory()
        units = []
        for d in self.devices.values():
            units += [(d.name, UNIT_NAMES[k], "compute", d.spec.unit_peak_flops_per_s(k), None)
                      for k in d.spec.unit_kinds]
            units += [(d.name, t.name, "memory", None, t.bandwidth_bytes_per_s) for t in d.spec.memory]
            if HOST_UNIT in units_of[d.name]:
                units.append((d.name, HOST_UNIT, "host", None, None))
            if self.network is not None:
                units.append((d.name, "comm", "comm", None, None))
        if self.network is not None and self.network.record:
            units += link_units(self.network)
        utilization = utilization_table(timeline, makespan, units)
        memory = memory_table([d.ledger for d in self.devices.values()])
        summary = self._summary(makespan, wall_s, bubbles)
        return Result(timeline, bubbles, utilization, memory, summary)

    def _summary(self, makespan: float, wall_s: float, bubbles: pa.Table) -> dict[str, Any]:
        from sim.reports.arrays import to_numpy
        scenario = self.scenario
        ops = scenario.trace.ops
        # the same sums in the same order as generator expressions over the ops, without one
        flops = list(map(attrgetter("flops"), ops))
        total_flops = sum(flops)
        matrix_flops = sum(compress(flops, map(frozenset(MATRIX_OPS).__contains__, map(attrgetter("op"), ops))))
        peak = sum(d.spec.matrix_peak_flops_per_s() for d in self.devices.values())
        # per cause, the durations added in row order (np.bincount adds its weights one after another)
        codes, causes = string_codes(bubbles["cause"])
        sums = np.bincount(codes, weights=to_numpy(bubbles["duration_s"]), minlength=len(causes)).tolist()
        counts = np.bincount(codes, minlength=len(causes)).tolist()
        bubble_s = {cause: sums[i] for i, cause in enumerate(causes) if counts[i]}
        events = self.env.scheduled()
        first = next(iter(self.devices.values()))
        summary = {
            "scenario": scenario.name,
            "device": first.spec.name,
            "devices": len(self.devices),
            "ops": len(ops),
            "makespan_s": makespan,
            "total_flops": total_flops,
            "matrix_flops": matrix_flops,
            "peak_flops_per_s": peak,
            "achieved_flops_per_s": total_flops / makespan if makespan > 0 else 0.0,
            "mfu": total_flops / (makespan * peak) if makespan > 0 and peak > 0 else 0.0,
            "events": events,
            "calendar_callbacks": self.env.fired,
            "wall_s": wall_s,
            "ops_per_wall_s": len(ops) / wall_s if wall_s > 0 else 0.0,
            "peak_memory_bytes": {d.name: dict(d.ledger.peak) for d in self.devices.values()},
            "capacity_bytes": {d.name: dict(d.ledger.capacity) for d in self.devices.values()},
            "bubble_s_by_cause": dict(sorted(bubble_s.items())),
            "bubble_aggregation": {"bubble_s_by_cause": f"sum over the {len(self.devices)} simulated "
                                                        f"devices and their compute units"},
        }
        if scenario.memory_plan is not None:
            summary["scratchpad"] = scenario.memory_plan.summary()
        return summary



def _distinct(items: Sequence, key: Callable | None, order: np.ndarray) -> tuple[list, np.ndarray]:
    """(distinct objects, index of each item's object among them), by identity,
    of ``key(item)`` (the item itself if None) for ``items`` given in the
    permuted order ``order``: index ``[order[j]]`` is that of ``items[j]``."""
    objects = list(items) if key is None else list(map(key, items))
    ids = np.fromiter(map(id, objects), dtype=np.int64, count=len(objects))
    _, first, codes = np.unique(ids, return_index=True, return_inverse=True)
    at = np.empty(len(codes), dtype=np.int64)
    at[order] = codes
    return [objects[i] for i in first.tolist()], at


def run(scenario: Scenario | Mapping[str, Any] | str | os.PathLike,
        overrides: Sequence[str] | Mapping[str, Any] = (), progress: ProgressFn | None = None) -> Result:
    """Simulate a scenario and return its Result.

    ``scenario``: a YAML path (or a shipped scenario's name, ``"quickstart"``),
    a mapping with the same keys, or a loaded Scenario. ``overrides``: what
    ``--set`` takes, as ``["parallel.pp=4", ...]`` strings or a mapping
    ``{"parallel.pp": 4}``. Bad input raises an AccsimError subclass whose
    message is one line.

    >>> result = sim.run("scenarios/quickstart.yaml", overrides={"parallel.schedule": "gpipe"})  # doctest: +SKIP
    >>> result.summary["iteration_time_s"], result.timeline.num_rows
    """
    scenario = resolve(scenario, overrides)
    if not isinstance(scenario, Scenario):      # a serving scenario (sim.serving)
        from sim.serving.run import simulate
        result = simulate(scenario, progress=progress)
        from sim.energy.serving import attach_serving_energy
        attach_serving_energy(result, scenario)
        result.summary["provenance"] = provenance(scenario)
        return result
    from sim.energy.governor import hold_power_limit
    result = hold_power_limit(scenario, lambda s: _simulate_once(s, progress))
    result.summary["provenance"] = provenance(scenario)
    return result


def _simulate_once(scenario: Scenario, progress: ProgressFn | None) -> tuple[Result, dict[str, Any]]:
    """One simulation with its training summary and energy; also the simulated devices' specs by name."""
    with collector_paused(freeze=True):
        simulation = Simulation(scenario, progress=progress, keep_op_state=False)
    with heap_frozen():
        result = simulation.run()
        specs = {d.name: d.spec for d in simulation.devices.values()}
        del simulation       # (its network, devices and ledgers: what follows reads the result and specs)
        return_free_memory()
        if scenario.training is not None:
            from sim.parallel.metrics import training_summary
            result.summary.update(training_summary(scenario, result))
        from sim.energy.run import attach_energy
        attach_energy(result, scenario, specs)
    return result, specs


def provenance(scenario: Scenario) -> dict[str, Any]:
    """Where a run's outputs come from: the accsim version, the scenario file
    (if any), the resolved scenario (after overrides), the overrides, and the
    seed (null: a run draws no random numbers; sweeps record theirs)."""
    from sim import __version__
    overrides = scenario.overrides
    if isinstance(overrides, str):
        overrides = [overrides]
    return {"accsim_version": __version__, "scenario_file": scenario.source_file,
            "scenario": scenario.raw,
            "overrides": dict(overrides) if isinstance(overrides, Mapping) else list(overrides),
            "seed": None}


def resolve(scenario: Scenario | Mapping[str, Any] | str | os.PathLike,
            overrides: Sequence[str] | Mapping[str, Any] = ()) -> Scenario:
    """A Scenario (or a sim.serving ServingScenario) from any of the forms ``run`` takes."""
    if isinstance(scenario, (str, os.PathLike)):
        return load_scenario(scenario, overrides)
    if isinstance(scenario, Mapping):
        return load_scenario_dict(scenario, overrides)
    loaded = isinstance(scenario, Scenario)
    if not loaded:
        from sim.serving.scenario import ServingScenario     # imported only for a loaded serving scenario
        loaded = isinstance(scenario, ServingScenario)
    if loaded:
        if overrides:
            raise ScenarioError("overrides apply to a scenario file or mapping, not to a loaded Scenario; "
                                "pass them to sim.load_scenario instead")
        return scenario
    raise ScenarioError(f"scenario: expected a YAML path, a mapping or a Scenario, got {type(scenario).__name__}")
