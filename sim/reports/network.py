"""Reports of network activity: comm rows in the timeline schema, per-link utilization."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import pyarrow as pa

from sim.engine.recorder import TimelineRecorder
from sim.reports.tables import utilization_table
from sim.reports.writer import write_run


def comm_timeline(rows: Sequence[tuple]) -> pa.Table:
    """Rows recorded by NetworkRuntime (one per step and directed link) as a
    timeline table: device ``network``, unit ``u->v``, category ``comm``."""
    recorder = TimelineRecorder()
    for row in rows:
        recorder.record(*row)
    return recorder.table()


def link_units(network, used_only: bool = True, rows: Sequence[tuple] | None = None) -> list[tuple]:
    """Utilization units for the directed links (those carrying traffic, by default)."""
    used = {row[1] for row in (rows if rows is not None else network.rows)} if used_only else None
    units = []
    for (a, b), capacity in network.fluid.capacity.items():
        if not isinstance(a, str):
            continue
        name = f"{a}->{b}"
        if used is None or name in used:
            units.append(("network", name, "comm", None, capacity))
    return units


def write_collective_run(out_dir: str | os.PathLike, cluster, network, result) -> Path:
    """``accsim collective --out``: timeline, per-link utilization and a summary."""
    timeline = comm_timeline(network.rows)
    utilization = utilization_table(timeline, result.time_s, link_units(network))
    summary = {"topology": cluster.name, **result.as_dict(),
               "links_used": utilization.num_rows,
               "max_link_utilization": max(utilization["utilization"].to_pylist(), default=0.0)}
    return write_run(out_dir, {"timeline": timeline, "utilization": utilization}, summary)
