"""The simulation driver: one SimPy Environment per run.

An op starts when all its predecessors have finished: the ops it lists in
``deps`` and the op before it on its stream. The driver counts unfinished
predecessors per op and starts an op on its device (sim.engine.device) the
moment its count reaches zero, from the completion callback of the last one.
Time is simulated seconds (float64). Nothing here reads the wall clock except
to report ``wall_s``, and every collection that orders events is ordered
(lists, insertion-ordered dicts, a heap with sequence numbers), so the same
inputs produce byte-identical Arrow files.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pyarrow as pa
import simpy

from sim.engine.device import UNIT_NAMES, DeviceRuntime, bind_ops
from sim.engine.recorder import TimelineRecorder
from sim.reports.tables import bubbles_table, memory_table, utilization_table
from sim.reports.writer import write_run
from sim.runtime.scenario import Scenario, load_scenario, scenario_from_dict
from sim.workload.trace import MATRIX_OPS, Op, Trace, _edges

ProgressFn = Callable[[int, int], None]


@dataclass
class Result:
    """What a run produces: the Arrow tables and the summary."""

    timeline: pa.Table
    bubbles: pa.Table
    utilization: pa.Table
    memory: pa.Table
    summary: dict[str, Any]
    extra_tables: dict[str, pa.Table] = field(default_factory=dict)

    def tables(self) -> dict[str, pa.Table]:
        return {"timeline": self.timeline, "bubbles": self.bubbles,
                "utilization": self.utilization, "memory": self.memory, **self.extra_tables}

    def write(self, out_dir: str | os.PathLike) -> Path:
        """Write every table as ``NAME.arrow`` and ``summary.json`` into ``out_dir``."""
        return write_run(out_dir, self.tables(), self.summary)


class TraceSimulation:
    """Replays one validated trace on one device."""

    def __init__(self, scenario: Scenario, progress: ProgressFn | None = None,
                 progress_every: int = 10000):
        self.scenario = scenario
        self.env = simpy.Environment()
        self.device = DeviceRuntime(self.env, scenario.device_name, scenario.device)
        bound = bind_ops(scenario.trace, scenario.device)
        ops = scenario.trace.ops
        self.bound = [bound[op.id] for op in ops]
        index = {op.id: i for i, op in enumerate(ops)}
        self.successors: list[list[int]] = [[] for _ in ops]
        self.waiting = [0] * len(ops)
        for src, dst in _edges(ops):
            self.successors[index[src]].append(index[dst])
            self.waiting[index[dst]] += 1
        self.end_s: dict[int, float] = {}
        self.completed = 0
        self.progress = progress
        self.progress_every = max(1, progress_every)

    def _on_done(self, index: int) -> None:
        self.completed += 1
        if self.progress is not None and self.completed % self.progress_every == 0:
            self.progress(self.completed, len(self.bound))
        waiting, start, bound = self.waiting, self.device.start, self.bound
        for nxt in self.successors[index]:
            waiting[nxt] -= 1
            if not waiting[nxt]:
                start(nxt, bound[nxt], self._on_done)

    def run(self) -> Result:
        wall_start = time.perf_counter()
        for tier, nbytes in self.scenario.resident_bytes.items():
            self.device.ledger.allocate(f"resident:{tier}", tier, nbytes, 0.0, "scenario resident_bytes")
        for index, count in enumerate(self.waiting):
            if count == 0:
                self.device.start(index, self.bound[index], self._on_done)
        self.env.run()
        wall_s = time.perf_counter() - wall_start
        for _, bound, _, end, _, _ in self.device.finished:
            self.end_s[bound.op.id] = end
        return self._result(wall_s)

    def _ready_and_cause(self) -> tuple[dict[int, float], dict[int, str]]:
        """When each op became ready and the kind of the predecessor it waited on last."""
        trace = self.scenario.trace
        ready: dict[int, float] = {op.id: 0.0 for op in trace.ops}
        blocker: dict[int, str] = {}
        for src, dst in _edges(trace.ops):
            end = self.end_s[src]
            if end >= ready[dst]:
                ready[dst] = end
                blocker[dst] = trace.op(src).category
        return ready, blocker

    def _result(self, wall_s: float) -> Result:
        scenario, device = self.scenario, self.device
        recorder = TimelineRecorder()
        device.record_timeline(recorder)
        timeline = recorder.table()
        makespan = max(self.end_s.values(), default=0.0)
        ready, blocker = self._ready_and_cause()
        compute_units = [(device.name, UNIT_NAMES[k]) for k in device.spec.unit_kinds]
        bubbles = bubbles_table(timeline, makespan, ready, blocker, compute_units)
        units = [(device.name, UNIT_NAMES[k], "compute", device.unit_peak_flops_per_s(k), None)
                 for k in device.spec.unit_kinds]
        units += [(device.name, t.name, "memory", None, t.bandwidth_bytes_per_s)
                  for t in device.spec.memory]
        utilization = utilization_table(timeline, makespan, units)
        memory = memory_table([device.ledger])
        summary = self._summary(makespan, wall_s, bubbles, utilization)
        return Result(timeline, bubbles, utilization, memory, summary)

    def _summary(self, makespan: float, wall_s: float, bubbles: pa.Table,
                 utilization: pa.Table) -> dict[str, Any]:
        scenario, device = self.scenario, self.device
        ops = scenario.trace.ops
        total_flops = sum(op.flops for op in ops)
        matrix_flops = sum(op.flops for op in ops if op.op in MATRIX_OPS)
        peak = scenario.device.matrix_peak_flops_per_s()
        bubble_s: dict[str, float] = {}
        for cause, duration in zip(bubbles["cause"].to_pylist(), bubbles["duration_s"].to_pylist()):
            bubble_s[cause] = bubble_s.get(cause, 0.0) + duration
        events = next(self.env._eid)  # SimPy's running event id: events scheduled so far
        if len(self.end_s) != len(ops):
            raise RuntimeError(f"{len(ops) - len(self.end_s)} ops never ran: the run deadlocked")
        return {
            "scenario": scenario.name,
            "device": scenario.device.name,
            "devices": 1,
            "ops": len(ops),
            "makespan_s": makespan,
            "total_flops": total_flops,
            "matrix_flops": matrix_flops,
            "peak_flops_per_s": peak,
            "achieved_flops_per_s": total_flops / makespan if makespan > 0 else 0.0,
            "mfu": total_flops / (makespan * peak) if makespan > 0 and peak > 0 else 0.0,
            "events": events,
            "calendar_callbacks": device.calendar.fired,
            "wall_s": wall_s,
            "ops_per_wall_s": len(ops) / wall_s if wall_s > 0 else 0.0,
            "peak_memory_bytes": {device.name: dict(device.ledger.peak)},
            "capacity_bytes": {device.name: dict(device.ledger.capacity)},
            "utilization": {row["unit"]: round(row["utilization"], 6)
                            for row in utilization.to_pylist()},
            "bubble_s_by_cause": dict(sorted(bubble_s.items())),
        }


def run(scenario: Scenario | Mapping[str, Any] | str | os.PathLike,
        overrides: Sequence[str] = (), progress: ProgressFn | None = None) -> Result:
    """Simulate a scenario (object, mapping or YAML path) and return its Result.

    >>> result = sim.run("scenarios/quickstart.yaml")      # doctest: +SKIP
    >>> result.summary["makespan_s"], result.timeline.num_rows
    """
    if isinstance(scenario, (str, os.PathLike)):
        scenario = load_scenario(scenario, overrides)
    elif isinstance(scenario, Mapping):
        from sim.runtime.scenario import apply_overrides
        scenario = scenario_from_dict(apply_overrides(dict(scenario), overrides))
    return TraceSimulation(scenario, progress=progress).run()
