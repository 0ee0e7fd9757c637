"""Energy of a serving run (sim.serving): the closed form of sim.energy.model
over the serving timeline.

A serving timeline has one row per iteration per pipeline stage of each
replica, carrying the FLOPs and bytes of all its tensor-parallel GPUs, and
one row per KV-cache transfer on each link it crosses. A stage row costs
flops x e_flop(the device's matrix unit, the compute dtype) + bytes x
e_byte(the device's default tier), split in the breakdown into ``compute_j``
and ``<tier>_j``; a link row bytes x its link type's figure; every GPU of
every replica (and every attention device of a replica that offloads
attention) draws its static power for the whole run. The tensor-parallel
collectives inside an iteration are priced in its time, not put on the
timeline, so their link energy is not counted (the summary says so). Adds
``energy_j`` to the timeline and utilization, and ``energy`` to the summary
with ``j_per_output_token`` and ``j_per_request``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from sim.energy.account import EnergyReport, power_curve
from sim.energy.model import PJ, static_energy_j
from sim.energy.run import LinkFigures, utilization_energy


def replicas_of(scenario) -> dict[str, tuple]:
    """Replica name (as sim.serving.run names them) -> (device spec, devices,
    static power of all of them): its tp x pp GPUs and, with attention offload,
    the attention devices it drives (each with its own spec's static power)."""
    out = {}
    for pool in scenario.pools:
        for number in range(len(pool.replicas)):
            name = f"replica{number}" if pool.role == "unified" else f"{pool.role}{number}"
            gpus = pool.tp * pool.pp
            static = gpus * _static_w(pool.spec)
            helpers = pool.attention_ranks[number] if number < len(pool.attention_ranks) else ()
            if pool.attention_spec is not None:
                static += len(helpers) * _static_w(pool.attention_spec)
            out[name] = (pool.spec, gpus + len(helpers), static)
    return out


def _static_w(spec) -> float:
    return spec.energy.static_w if spec.energy is not None else 0.0


def matrix_unit(spec) -> str:
    """The unit kind a device runs GEMMs on (its FLOPs' pJ/FLOP row)."""
    for unit in ("sm_array", "systolic_array", "vector"):
        if getattr(spec, unit) is not None:
            return unit
    return "vector"


def attach_serving_energy(result, scenario) -> None:
    """Price a serving run's timeline in place (nothing when no device and no link has figures)."""
    replicas = replicas_of(scenario)
    specs = {name: spec.energy for name, (spec, _, _) in replicas.items() if spec.energy is not None}
    links = LinkFigures(scenario.cluster)
    timeline = result.timeline
    devices = timeline["device"].to_pylist()
    units = timeline["unit"].to_pylist()
    is_link = np.array([d == "network" for d in devices], dtype=bool)
    link_pj = [links.byte_pj(u) if d == "network" else None for d, u in zip(devices, units)]
    priced = np.array([(d in specs) or (p is not None) for d, p in zip(devices, link_pj)], dtype=bool)
    if not priced.any() and not specs:
        return
    dtype = scenario.precision.compute_dtype
    flops, nbytes = timeline["flops"].to_numpy(), timeline["bytes"].to_numpy()
    compute, memory = np.zeros(timeline.num_rows), np.zeros(timeline.num_rows)
    for i, device in enumerate(devices):
        figures = specs.get(device)
        if figures is not None:
            spec = replicas[device][0]
            compute[i] = flops[i] * figures.e_flop_pj(matrix_unit(spec), dtype) * PJ
            memory[i] = nbytes[i] * figures.e_byte_pj(spec.default_tier) * PJ
        elif link_pj[i] is not None:
            memory[i] = nbytes[i] * link_pj[i] * PJ
    energy = compute + memory
    result.timeline = timeline.append_column(
        pa.field("energy_j", pa.float64()), pa.array(energy, type=pa.float64(), mask=~priced))
    makespan = float(result.summary["makespan_s"])
    static_w = {name: static for name, (_, _, static) in replicas.items() if name in specs}
    by_device: dict[str, dict[str, float]] = {}
    for name in specs:
        mine = np.array([d == name for d in devices], dtype=bool)
        tier = replicas[name][0].default_tier
        entry = {"compute_j": float(compute[mine].sum()), f"{tier}_j": float(memory[mine].sum()),
                 "static_j": static_energy_j(static_w[name], makespan)}
        entry["total_j"] = sum(entry.values())
        by_device[name] = entry
    links_by_type: dict[str, float] = {}
    for i in np.flatnonzero(is_link & priced):
        kind = links.type_name(units[i])
        links_by_type[kind] = links_by_type.get(kind, 0.0) + float(energy[i])
    links_j = float(energy[is_link & priced].sum())
    total = links_j + sum(entry["total_j"] for entry in by_device.values())
    _, power = power_curve(timeline["start_s"].to_numpy(), timeline["end_s"].to_numpy(),
                           np.where(priced, energy, 0.0), sum(static_w.values()), makespan)
    peak = float(power.max()) if len(power) else sum(static_w.values())
    report = EnergyReport(by_device, links_j, total, makespan, peak, links_by_type)
    result.utilization = utilization_energy(result.utilization, result.timeline, specs)
    section = report.summary({"output_token": result.summary.get("output_tokens", 0),
                              "request": result.summary.get("finished", 0)})
    section["devices"] = sum(count for name, (_, count, _) in replicas.items() if name in specs)
    section["links_unpriced_bytes"] = float(nbytes[is_link & ~priced].sum())
    section["devices_unpriced"] = sorted(set(replicas) - set(specs))
    section["not_counted"] = "tensor-parallel collectives inside iterations (priced in time, not on the timeline)"
    if any(pool.attention_spec is not None for pool in scenario.pools):
        section["not_counted"] += ("; offloaded attention's FLOPs and bytes are priced with the replica "
                                   "device's figures and its query/KV transfers are not on the timeline")
    result.summary["energy"] = section
