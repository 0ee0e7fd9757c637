"""Energy of a finished run: the ``energy_j`` columns and the summary's ``energy``.

A device's figures are its spec's ``energy`` section (an ``EnergySpec``), a
link's the ``energy`` section of its link type (``topologies/links/*.yaml``,
a ``LinkEnergySpec``). A run in which no device and no link has figures is
left as it is (no column, no section).

``attach_energy`` adds:

- ``timeline.arrow``: ``energy_j`` per row (null where the device or link has
  no figures), so an op's energy is the sum of its rows;
- ``utilization.arrow``: ``energy_j`` per (device, unit);
- ``summary.json``: ``energy`` with the whole cluster's ``total_j``,
  ``average_power_w``, ``peak_power_w`` and ``breakdown_j`` (``compute``,
  each tier, ``links``, ``static``); ``links_j`` and ``links_j_by_type``;
  ``by_device`` for the simulated devices (``compute_j``, ``<tier>_j``,
  ``static_j``, ``total_j``); ``devices_represented_per_simulated`` (a
  folded training run simulates one rank per stage: its devices' energy
  counts that many times in the totals, while the links' rows already carry
  every rank's traffic); ``links_unpriced_bytes`` (bytes on links whose type
  has no figure), ``devices_unpriced`` and ``compute_rows_without_work``
  (compute rows with neither FLOPs nor bytes, such as ops a trace gives only
  a duration for: their dynamic energy is unknown); in training runs ``j_per_token``
  and ``j_per_sample`` (per iteration's tokens and sequences).
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from sim.energy.account import RowKeys, energy_report, row_energy_j
from sim.energy.model import EnergySpec
from sim.reports.arrays import column, numbers, to_numpy, valid_mask
from sim.reports.tables import shared_strings


def energy_of(spec: Any) -> EnergySpec | None:
    """The energy figures of a device spec, if it has any."""
    energy = getattr(spec, "energy", None)
    return energy if isinstance(energy, EnergySpec) else None


def attach_energy(result, scenario, device_specs: dict[str, Any]) -> None:
    """Add energy columns and the summary section to ``result`` (in place);
    ``device_specs`` maps the simulated device instances' names to their specs."""
    specs = {name: energy_of(spec) for name, spec in device_specs.items()}
    specs = {name: e for name, e in specs.items() if e is not None}
    links = LinkFigures(scenario.cluster)
    timeline = result.timeline
    keys = [RowKeys.of(timeline)]    # in a list: energy_report, its last user, takes the last reference
    network, priced = _priced_rows(keys[0], specs, links)
    if not specs and not priced.any():
        return
    dtype_of = _dtype_lookup(scenario, device_specs)
    energy = row_energy_j(timeline, specs, dtype_of, links.byte_pj, keys[0])
    result.timeline = timeline.append_column(
        pa.field("energy_j", pa.float64()), numbers(energy, pa.float64(), valid=priced))
    makespan = float(result.summary.get("iteration_time_s", result.summary["makespan_s"]))
    represents = _represents(scenario, device_specs)
    result.utilization = utilization_energy(result.utilization, result.timeline, specs, keys[0])
    nbytes = to_numpy(timeline["bytes"])
    unpriced = np.flatnonzero(network & ~priced)
    unpriced_bytes = float(nbytes[unpriced].sum()) if len(unpriced) else 0.0
    categories = keys[0].categories
    compute = keys[0].category == (categories.index("compute") if "compute" in categories else -1)
    without_work = int(np.count_nonzero(compute & (to_numpy(timeline["flops"]) == 0) & (nbytes == 0)))
    del nbytes, unpriced, compute
    # (the row keys are dropped before the power curve: a million rows' codes)
    report = energy_report(result.timeline, np.where(priced, energy, 0.0), makespan,
                           {name: e.static_w for name, e in specs.items()}, links.type_name, represents,
                           keys.pop())
    work = {}
    if scenario.training is not None and "tokens_per_s" in result.summary:
        work["token"] = result.summary["tokens_per_s"] * makespan
        plan = scenario.training.plan
        work["sample"] = getattr(plan, "global_batch", 0) or 0
    section = report.summary(work)
    section["devices"] = round(len(device_specs) * represents)
    section["links_unpriced_bytes"] = unpriced_bytes
    section["devices_unpriced"] = sorted(set(device_specs) - set(specs))
    section["compute_rows_without_work"] = without_work
    result.summary["energy"] = section


def _priced_rows(keys: RowKeys, specs, links: LinkFigures) -> tuple[np.ndarray, np.ndarray]:
    """Per timeline row: is it a link row (device ``network``), and does it have
    figures (its device has an EnergySpec, or its link's type a pJ per byte)?
    Decided once per distinct (device, unit, category), not per row."""
    network, priced = np.zeros(len(keys.combos), dtype=bool), np.zeros(len(keys.combos), dtype=bool)
    for c, row in enumerate(keys.first.tolist()):
        device, unit, _ = keys.names(row)
        network[c] = device == "network"
        priced[c] = device in specs or (device == "network" and links.byte_pj(unit) is not None)
    return network[keys.inverse], priced[keys.inverse]


def _represents(scenario, device_specs) -> float:
    """Devices each simulated device stands for: a folded training run
    simulates one rank per pipeline stage for all ``plan.world`` ranks."""
    training = scenario.training
    if training is None or not device_specs:
        return 1.0
    return training.plan.world / len(device_specs)


class LinkFigures:
    """Per network-timeline unit ``a->b``: its link type and that type's pJ per byte."""

    def __init__(self, cluster):
        self.cluster = cluster
        self._cache: dict[str, Any] = {}

    def _type(self, unit: str):
        if unit not in self._cache:
            a, _, b = unit.partition("->")
            graph = self.cluster.graph if self.cluster is not None else None
            found = graph is not None and graph.has_edge(a, b)
            self._cache[unit] = self.cluster.link_type(a, b) if found else None
        return self._cache[unit]

    def byte_pj(self, unit: str) -> float | None:
        kind = self._type(unit)
        energy = getattr(kind, "energy", None)
        return energy.byte_pj if energy is not None else None

    def type_name(self, unit: str) -> str | None:
        """The link type's name, None where it has no energy figure."""
        kind = self._type(unit)
        return kind.name if getattr(kind, "energy", None) is not None else None


def _dtype_lookup(scenario, device_specs) -> Callable[[str, np.ndarray], list[str]]:
    """(device name, op ids) -> the dtype of each op when it runs on that
    device (the device's default when unset), else bf16 (an id the trace
    lacks, or an op of another device). Every op's rank and dtype are read
    once, in trace order, at the first call (a look-up per compute row was
    most of attach_energy's time on GPT-3 175B; reading each device's ops
    apart, scattered in memory, was slower on GPT 1T), into an int64 array of
    ranks and an int8 array of codes into the distinct dtypes: 9 bytes an op
    where a list of (rank, dtype) tuples was 64 (GPT 1T: 53 MB at the peak of
    the run's memory)."""
    cluster = scenario.cluster
    trace = scenario.trace
    read: list = []           # [ranks, dtype codes, distinct dtypes] once read

    def dtypes_of(device: str, op_ids: np.ndarray) -> list[str]:
        op_ids = np.asarray(op_ids, dtype=np.int64)
        try:
            positions = trace.positions_of(op_ids)
        except KeyError:      # some ids name no op: each looked up alone
            return [_dtype_of(trace.find(op_id), device, cluster, scenario, device_specs)
                    for op_id in op_ids.tolist()]
        if not read:
            read.extend(_ranks_and_dtypes(trace.ops))
        ranks, codes, dtypes = read
        rank = ranks[positions]
        spec = device_specs.get(device)
        default = spec.default_dtype if spec is not None else "bf16"
        mine = [r for r in np.unique(rank).tolist()
                if (cluster.ranks[r] if cluster is not None else scenario.device_name) == device]
        named = np.array([dtype or default for dtype in dtypes] + ["bf16"], dtype=object)
        return named[np.where(np.isin(rank, mine), codes[positions], len(dtypes))].tolist()
    return dtypes_of


def _ranks_and_dtypes(ops) -> tuple[np.ndarray, np.ndarray, list]:
    """(each op's rank, each op's code into the distinct dtypes (None included), those dtypes)."""
    ranks = np.fromiter(map(attrgetter("rank"), ops), dtype=np.int64, count=len(ops))
    dtypes = list(map(attrgetter("dtype"), ops))
    index = {dtype: code for code, dtype in enumerate(dict.fromkeys(dtypes))}
    codes = np.fromiter(map(index.__getitem__, dtypes), dtype=np.int8 if len(index) < 128 else np.int32,
                        count=len(dtypes))
    return ranks, codes, list(index)


def _dtype_of(op, device: str, cluster, scenario, device_specs) -> str:
    """The dtype of ``op`` (None: not in the trace) on ``device``, as ``_dtype_lookup`` gives it."""
    if op is None or (cluster.ranks[op.rank] if cluster is not None else scenario.device_name) != device:
        return "bf16"
    spec = device_specs.get(device)
    return op.dtype or (spec.default_dtype if spec is not None else "bf16")


def utilization_energy(utilization: pa.Table, timeline: pa.Table, specs, keys: RowKeys | None = None) -> pa.Table:
    """``energy_j`` per (device, unit): the sum of the unit's rows in row order
    (np.bincount adds one row after another), null when unpriced. ``keys``:
    the timeline's RowKeys, made here if not given."""
    keys = keys if keys is not None else RowKeys.of(timeline)
    energy = timeline["energy_j"].combine_chunks() if isinstance(timeline["energy_j"], pa.ChunkedArray) \
        else timeline["energy_j"]
    valid = valid_mask(energy)
    values = to_numpy(energy, fill=None)       # a view: the unpriced rows are masked out below
    pair, pairs = keys.device_units()
    if not valid.all():      # the priced rows, each array masked once (a masked copy per use was 4 x 12 MB)
        pair, values = pair[valid], values[valid]
    sums = np.bincount(pair, weights=values, minlength=len(pairs)).tolist()
    present = np.bincount(pair, minlength=len(pairs)).tolist()
    totals = {}
    for c, (d, u) in enumerate(pairs.tolist()):
        if present[c]:
            totals[(keys.devices[d] if d < len(keys.devices) else None,
                    keys.units[u] if u < len(keys.units) else None)] = sums[c]
    out = []
    for device, unit in zip(shared_strings(utilization["device"]), shared_strings(utilization["unit"])):
        priced = device in specs or (device == "network" and (device, unit) in totals)
        out.append(totals.get((device, unit), 0.0) if priced else None)
    return utilization.append_column(pa.field("energy_j", pa.float64()), column(out, pa.float64()))
