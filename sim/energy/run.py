"""Energy of a finished run: the ``energy_j`` columns and the summary's ``energy``.

A device's figures are its spec's ``energy`` section (an ``EnergySpec``), a
cluster's link figures its ``link_energy`` (a ``LinkEnergySpec``, by the
``kind`` of each link). A run in which no device has figures is left as it
is (no column, no section), so outputs without energy data stay byte-identical.

``attach_energy`` adds:

- ``timeline.arrow``: ``energy_j`` per row (null where the device or link has
  no figures), so an op's energy is the sum of its rows;
- ``utilization.arrow``: ``energy_j`` per (device, unit);
- ``summary.json``: ``energy`` with ``total_j``, ``average_power_w``,
  ``peak_power_w``, ``links_j``, ``by_device`` (``compute_j``, ``<tier>_j``,
  ``static_j``, ``total_j``) and, in training runs, ``j_per_token`` and
  ``j_per_sample`` (per iteration's tokens and sequences).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from sim.energy.account import energy_report, row_energy_j
from sim.energy.model import EnergySpec, LinkEnergySpec


def energy_of(spec: Any) -> EnergySpec | None:
    """The energy figures of a device spec, if it has any."""
    energy = getattr(spec, "energy", None)
    return energy if isinstance(energy, EnergySpec) else None


def attach_energy(result, scenario, device_specs: dict[str, Any]) -> None:
    """Add energy columns and the summary section to ``result`` (in place);
    ``device_specs`` maps device instance names to their specs."""
    specs = {name: energy_of(spec) for name, spec in device_specs.items()}
    specs = {name: e for name, e in specs.items() if e is not None}
    if not specs:
        return
    cluster = scenario.cluster
    links = getattr(cluster, "link_energy", None) if cluster is not None else None
    links = links if isinstance(links, LinkEnergySpec) else None
    dtypes = _dtype_lookup(scenario, device_specs)
    link_kind = _link_kinds(cluster) if links is not None else None
    timeline = result.timeline
    energy = row_energy_j(timeline, specs, lambda device, op: dtypes.get((device, op), "bf16"),
                          link_kind, links)
    priced = np.array([(d in specs) or (d == "network" and links is not None)
                       for d in timeline["device"].to_pylist()], dtype=bool)
    result.timeline = timeline.append_column(
        pa.field("energy_j", pa.float64()), pa.array(energy, type=pa.float64(), mask=~priced))
    makespan = float(result.summary.get("iteration_time_s", result.summary["makespan_s"]))
    report = energy_report(result.timeline, np.where(priced, energy, 0.0), makespan,
                           {name: e.static_w for name, e in specs.items()})
    result.utilization = _utilization_energy(result.utilization, result.timeline, specs)
    work = {}
    if scenario.training is not None and "tokens_per_s" in result.summary:
        work["token"] = result.summary["tokens_per_s"] * makespan
        plan = scenario.training.plan
        work["sample"] = getattr(plan, "global_batch", 0) or 0
    result.summary["energy"] = report.summary(work)


def _dtype_lookup(scenario, device_specs) -> dict[tuple[str, int], str]:
    """(device name, op id) -> the op's dtype (the device's default when unset)."""
    cluster = scenario.cluster
    out = {}
    for op in scenario.trace.ops:
        name = cluster.ranks[op.rank] if cluster is not None else scenario.device_name
        spec = device_specs.get(name)
        out[(name, op.id)] = op.dtype or (spec.default_dtype if spec is not None else "bf16")
    return out


def _link_kinds(cluster):
    """unit ``u->v`` -> the ``kind`` attribute of that cluster edge (None if unset)."""
    graph = cluster.graph

    def kind(unit: str):
        a, _, b = unit.partition("->")
        data = graph.get_edge_data(a, b) or {}
        return data.get("kind")
    return kind


def _utilization_energy(utilization: pa.Table, timeline: pa.Table, specs) -> pa.Table:
    """``energy_j`` per (device, unit): the sum of the unit's rows (null when unpriced)."""
    totals: dict[tuple[str, str], float] = {}
    for device, unit, e in zip(timeline["device"].to_pylist(), timeline["unit"].to_pylist(),
                               timeline["energy_j"].to_pylist()):
        if e is not None:
            totals[(device, unit)] = totals.get((device, unit), 0.0) + e
    values = []
    for device, unit in zip(utilization["device"].to_pylist(), utilization["unit"].to_pylist()):
        priced = device in specs or (device == "network" and (device, unit) in totals)
        values.append(totals.get((device, unit), 0.0) if priced else None)
    return utilization.append_column(pa.field("energy_j", pa.float64()), pa.array(values, type=pa.float64()))
