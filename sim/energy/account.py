"""Energy of a run from its timeline (sim.energy.model's closed form).

Every timeline row is priced once: a compute row by its FLOPs (the op's
dtype on the row's unit), a memory row by its bytes on its tier (a copy has
a row per tier it touches: read on one, written on the other), a link row
(device ``network``) by its bytes and its link type's pJ per byte. Compute rows also
carry the op's bytes, which are priced on its memory row, not twice; a
``comm`` row of a device is priced on the links it crossed. So the energy of
an op is exactly flops x e_flop + bytes x e_byte.

Power: each row's energy is spread evenly over its interval (rows of zero
duration count in the energy, not in the power curve); the device's static
power is added for the whole makespan. ``power_curve`` gives the
piecewise-constant total power; average power is total energy / makespan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import pyarrow as pa

from sim.energy.model import PJ, EnergySpec, static_energy_j
from sim.reports.tables import shared_strings

UNIT_OF_ROW = {"sm": "sm_array", "mxu": "systolic_array", "vector": "vector", "pim": "pim"}


def row_energy_j(timeline: pa.Table, specs: Mapping[str, EnergySpec],
                 dtype_of: Callable[[str, int], str],
                 link_byte_pj: Callable[[str], float | None] | None = None) -> np.ndarray:
    """Joules of each timeline row. ``specs`` by device name; ``dtype_of(device,
    op_id)`` the op's dtype; ``link_byte_pj(unit)`` the pJ per byte of the
    network link ``unit`` (``a->b``), None where its type has no figure."""
    devices = shared_strings(timeline["device"])
    units = shared_strings(timeline["unit"])
    categories = shared_strings(timeline["category"])
    ops = timeline["op_id"].to_pylist()
    flops = timeline["flops"].to_numpy()
    nbytes = timeline["bytes"].to_numpy()
    energy = np.zeros(timeline.num_rows)
    for i, (device, unit, category) in enumerate(zip(devices, units, categories)):
        if device == "network":
            e_byte = link_byte_pj(unit) if link_byte_pj is not None else None
            if e_byte is not None:
                energy[i] = nbytes[i] * e_byte * PJ
            continue
        spec = specs.get(device)
        if spec is None:
            continue
        if category == "compute":
            energy[i] = flops[i] * spec.e_flop_pj(UNIT_OF_ROW.get(unit, unit), dtype_of(device, ops[i])) * PJ
        elif category == "memory":
            energy[i] = nbytes[i] * spec.e_byte_pj(unit) * PJ
    return energy


@dataclass(frozen=True)
class EnergyReport:
    """Per-device breakdown (compute, each tier, static) of the simulated
    devices, links by type, and totals and power for the whole cluster: each
    simulated device stands for ``represents`` devices (a folded training
    run simulates one rank per pipeline stage; the others are its mirror
    images), the links' rows already carry every device's traffic."""

    by_device: dict[str, dict[str, float]]
    links_j: float
    total_j: float
    makespan_s: float
    peak_power_w: float
    links_by_type: dict[str, float] = field(default_factory=dict)
    represents: float = 1.0

    @property
    def average_power_w(self) -> float:
        return self.total_j / self.makespan_s if self.makespan_s > 0 else 0.0

    def breakdown(self) -> dict[str, float]:
        """Joules of the whole cluster by part: ``compute``, each tier, ``links``, ``static``."""
        parts: dict[str, float] = {}
        for entry in self.by_device.values():
            for key, value in entry.items():
                if key != "total_j":
                    name = key.removesuffix("_j")
                    parts[name] = parts.get(name, 0.0) + value * self.represents
        static = parts.pop("static", 0.0)
        return {**parts, "links": self.links_j, "static": static}

    def summary(self, work: Mapping[str, float] | None = None) -> dict:
        """The ``energy`` section of summary.json; ``work`` maps a unit of work
        (``token``, ``sample``) to its count in the run, giving J per unit."""
        out = {"total_j": self.total_j, "average_power_w": self.average_power_w,
               "peak_power_w": self.peak_power_w,
               "breakdown_j": self.breakdown(), "links_j": self.links_j,
               "links_j_by_type": dict(sorted(self.links_by_type.items())),
               "devices_represented_per_simulated": self.represents,
               "by_device": self.by_device}
        for name, count in (work or {}).items():
            if count > 0:
                out[f"j_per_{name}"] = self.total_j / count
        return out


def energy_report(timeline: pa.Table, energy_j: np.ndarray, makespan_s: float,
                  static_w: Mapping[str, float], link_type_of: Callable[[str], str | None] | None = None,
                  represents: float = 1.0) -> EnergyReport:
    """Breakdown by device (``compute_j``, ``<tier>_j`` per memory tier,
    ``static_j``, ``total_j``), link energy by link type (``link_type_of(unit)``)
    and the peak of the whole cluster's power curve; device figures count
    ``represents`` times in the totals (see EnergyReport)."""
    devices = shared_strings(timeline["device"])
    units = shared_strings(timeline["unit"])
    categories = shared_strings(timeline["category"])
    by_device: dict[str, dict[str, float]] = {}
    links = 0.0
    by_type: dict[str, float] = {}
    for device in static_w:
        by_device[device] = {"compute_j": 0.0}
    for device, unit, category, e in zip(devices, units, categories, energy_j.tolist()):
        if device == "network":
            links += e
            kind = link_type_of(unit) if link_type_of is not None else "link"
            if kind is not None:                # None: a link whose type has no figure
                by_type[kind] = by_type.get(kind, 0.0) + e
            continue
        entry = by_device.setdefault(device, {"compute_j": 0.0})
        key = "compute_j" if category == "compute" else f"{unit}_j" if category == "memory" else None
        if key is not None:
            entry[key] = entry.get(key, 0.0) + e
    total = links
    for device, entry in by_device.items():
        entry["static_j"] = static_energy_j(static_w.get(device, 0.0), makespan_s)
        entry["total_j"] = sum(v for k, v in entry.items() if k != "total_j")
        total += entry["total_j"] * represents
    weight = np.where(np.array([d == "network" for d in devices], dtype=bool), 1.0, represents)
    static = sum(static_w.values()) * represents
    times, power = power_curve(timeline["start_s"].to_numpy(), timeline["end_s"].to_numpy(),
                               energy_j * weight, static, makespan_s)
    peak = float(power.max()) if len(power) else static
    return EnergyReport(by_device, links, total, makespan_s, peak, by_type, represents)


def power_curve(starts: np.ndarray, ends: np.ndarray, energy_j: np.ndarray, static_w: float,
                makespan_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(change times, power in W from each time to the next): every row's
    energy spread evenly over its interval, plus ``static_w`` over [0, makespan]."""
    duration = ends - starts
    keep = duration > 1e-15 * max(makespan_s, 1e-9)     # shorter: an instant, energy without power
    rate = np.zeros(len(starts))
    rate[keep] = energy_j[keep] / duration[keep]
    times = np.concatenate([starts[keep], ends[keep], [0.0, makespan_s]])
    deltas = np.concatenate([rate[keep], -rate[keep], [0.0, 0.0]])
    order = np.argsort(times, kind="stable")
    times, deltas = times[order], deltas[order]
    unique, first = np.unique(times, return_index=True)
    summed = np.add.reduceat(deltas, first) if len(first) else deltas
    power = np.cumsum(summed) + np.where(unique < makespan_s, static_w, 0.0)
    return unique, np.maximum(power, 0.0)
