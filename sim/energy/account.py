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
from typing import Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa

from sim.energy.model import PJ, EnergySpec, static_energy_j
from sim.reports.arrays import to_numpy
from sim.reports.tables import string_codes

UNIT_OF_ROW = {"sm": "sm_array", "mxu": "systolic_array", "vector": "vector", "pim": "pim"}


@dataclass(frozen=True)
class RowKeys:
    """Per timeline row, its device, unit and category as codes into lists of
    names (a null: the list's length), and its (device, unit, category)
    combination: ``combos`` the distinct ones (sorted), ``first`` the row each
    first appears in, ``inverse`` each row's. Made once per timeline
    (``of``) and shared by the energy functions (each encoding the string
    columns and sorting the rows again was half of attach_energy on GPT 1T)."""

    device: np.ndarray
    devices: list
    unit: np.ndarray
    units: list
    category: np.ndarray
    categories: list
    combos: np.ndarray
    first: np.ndarray
    inverse: np.ndarray

    @classmethod
    def of(cls, timeline: pa.Table) -> "RowKeys":
        device, devices = string_codes(timeline["device"])       # int32 codes
        unit, units = string_codes(timeline["unit"])
        category, categories = string_codes(timeline["category"])
        key = device.astype(np.int64)          # (device x (units + 1) + unit) x (categories + 1) + category,
        key *= len(units) + 1                  # in place: one int64 array of the rows
        key += unit
        key *= len(categories) + 1
        key += category
        combos, first, inverse = _distinct_keys(key, (len(devices) + 1) * (len(units) + 1) * (len(categories) + 1))
        return cls(device, devices, unit, units, category, categories, combos, first, inverse)

    def names(self, row: int) -> tuple:
        """(device, unit, category) of a row, None for a null."""
        pick = lambda names, code: names[code] if code < len(names) else None      # noqa: E731
        return (pick(self.devices, self.device[row]), pick(self.units, self.unit[row]),
                pick(self.categories, self.category[row]))

    def device_units(self) -> tuple[np.ndarray, np.ndarray]:
        """(each row's (device, unit) pair as an int32 code 0..n-1, the (device code, unit code)
        of each code's pair as an n x 2 array), pairs in ascending (device, unit) codes."""
        pair = self.combos // (len(self.categories) + 1)
        pairs, code = np.unique(pair, return_inverse=True)
        return code.reshape(-1).astype(np.int32)[self.inverse], np.stack(np.divmod(pairs, len(self.units) + 1), axis=1)


def _distinct_keys(key: np.ndarray, space: int, chunk_rows: int = 1 << 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(key, return_index=True, return_inverse=True)`` with the
    inverse as int32, for keys in ``0..space-1``: where the key space is no
    larger than the rows, by a table over the space (the sorted distinct keys
    are the marked entries, a key's code the count of marked ones below it,
    its first row a running minimum over chunks of rows) rather than a sort of
    the rows, which kept five arrays of the rows alive (about 60 MB on GPT 1T's
    1.58M rows, at the run's peak of memory). The same arrays either way."""
    if space > max(len(key), 1 << 16):
        combos, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        return combos, first, inverse.reshape(-1).astype(np.int32)
    seen = np.zeros(space, dtype=bool)
    seen[key] = True
    combos = np.flatnonzero(seen)
    code_of = (np.cumsum(seen) - 1).astype(np.int32)
    inverse = code_of[key]
    first = np.full(len(combos), len(key), dtype=np.int64)
    for start in range(0, len(key), chunk_rows):
        part = inverse[start:start + chunk_rows]
        np.minimum.at(first, part, np.arange(start, start + len(part), dtype=np.int64))
    return combos, first, inverse


def row_energy_j(timeline: pa.Table, specs: Mapping[str, EnergySpec],
                 dtypes_of: Callable[[str, np.ndarray], Sequence[str]],
                 link_byte_pj: Callable[[str], float | None] | None = None,
                 keys: RowKeys | None = None) -> np.ndarray:
    """Joules of each timeline row (``keys``: the timeline's RowKeys, made here if not given). ``specs`` by device name; ``dtypes_of(device,
    op_ids)`` the dtypes of those ops (an int64 array) on that device; ``link_byte_pj(unit)`` the pJ per byte of the
    network link ``unit`` (``a->b``), None where its type has no figure.

    Each row is ``flops x pJ`` or ``bytes x pJ`` times 1e-12 with the pJ of its
    (device, unit, category) looked up once per distinct combination (and per
    dtype for compute rows), the products computed as numpy arrays: the same
    IEEE operations per row as a loop over rows, on a million-row timeline
    about ten times faster."""
    keys = keys if keys is not None else RowKeys.of(timeline)
    combos, first, inverse = keys.combos, keys.first, keys.inverse
    per_flop = np.zeros(len(combos))     # pJ per FLOP of the combination (compute rows)
    per_byte = np.zeros(len(combos))     # pJ per byte (memory and link rows)
    compute_combos = []
    for c, row in enumerate(first.tolist()):
        device, unit, category = keys.names(row)
        if device == "network":
            e_byte = link_byte_pj(unit) if link_byte_pj is not None else None
            per_byte[c] = e_byte if e_byte is not None else 0.0
            continue
        spec = specs.get(device)
        if spec is None:
            continue
        if category == "compute":
            compute_combos.append((c, device, UNIT_OF_ROW.get(unit, unit), spec))
        elif category == "memory":
            per_byte[c] = spec.e_byte_pj(unit)
    # (bytes x pJ) x 1e-12 and (flops x pJ) x 1e-12, each product computed in place in one array
    # (x is commutative in IEEE arithmetic): no temporary array of every row per operation
    energy = per_byte[inverse]
    np.multiply(to_numpy(timeline["bytes"]), energy, out=energy)
    energy *= PJ
    if compute_combos:
        ops = to_numpy(timeline["op_id"])
        flop_pj = np.zeros(timeline.num_rows)
        for c, device, unit, spec in compute_combos:
            rows = np.flatnonzero(inverse == c)
            dtypes = dtypes_of(device, ops[rows])
            by_dtype = {dtype: spec.e_flop_pj(unit, dtype) for dtype in dict.fromkeys(dtypes)}
            flop_pj[rows] = np.fromiter(map(by_dtype.__getitem__, dtypes), dtype=np.float64, count=len(dtypes))
        del ops
        compute = np.isin(inverse, [c for c, *_ in compute_combos])
        product = to_numpy(timeline["flops"])[compute]
        product *= flop_pj[compute]
        del flop_pj
        product *= PJ
        energy[compute] = product
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
                  represents: float = 1.0, keys: RowKeys | None = None) -> EnergyReport:
    """Breakdown by device (``compute_j``, ``<tier>_j`` per memory tier,
    ``static_j``, ``total_j``), link energy by link type (``link_type_of(unit)``)
    and the peak of the whole cluster's power curve; device figures count
    ``represents`` times in the totals (see EnergyReport). ``keys``: the
    timeline's RowKeys, made here if not given."""
    keys = keys if keys is not None else RowKeys.of(timeline)
    combos, inverse, first_row = keys.combos, keys.inverse, keys.first
    # each combination's bucket: ("device", name, key) or ("link", type) or None (not summed)
    buckets: list = []
    for c in range(len(combos)):
        device, unit, category = keys.names(int(first_row[c]))
        if device == "network":
            kind = link_type_of(unit) if link_type_of is not None else "link"
            buckets.append(("link", kind) if kind is not None else ("link", None))
        else:
            entry_key = "compute_j" if category == "compute" else f"{unit}_j" if category == "memory" else None
            buckets.append(("device", device, entry_key))
    # sums in row order (np.bincount adds its weights one row after another, as a loop would)
    bucket_ids: dict = {}
    combo_bucket = np.array([bucket_ids.setdefault(b, len(bucket_ids)) for b in buckets], dtype=np.int32)
    row_bucket = combo_bucket[inverse]
    sums = np.bincount(row_bucket, weights=energy_j, minlength=len(bucket_ids)).tolist()
    network_rows = np.array([b[0] == "link" for b in buckets], dtype=bool)[inverse]
    links = float(np.bincount(np.zeros(int(network_rows.sum()), dtype=np.int64),
                              weights=energy_j[network_rows], minlength=1)[0])
    bucket_first = np.full(len(bucket_ids), len(inverse), dtype=np.int64)     # the first row of each bucket
    np.minimum.at(bucket_first, combo_bucket, first_row)
    by_device: dict[str, dict[str, float]] = {}
    by_type: dict[str, float] = {}
    for device in static_w:
        by_device[device] = {"compute_j": 0.0}
    for b in sorted(bucket_ids, key=lambda b: bucket_first[bucket_ids[b]]):   # first-row order, as a loop
        value = sums[bucket_ids[b]]
        if b[0] == "link":
            if b[1] is not None:
                by_type[b[1]] = by_type.get(b[1], 0.0) + value
            continue
        entry = by_device.setdefault(b[1], {"compute_j": 0.0})
        if b[2] is not None:
            entry[b[2]] = entry.get(b[2], 0.0) + value
    total = links
    for device, entry in by_device.items():
        entry["static_j"] = static_energy_j(static_w.get(device, 0.0), makespan_s)
        entry["total_j"] = sum(v for k, v in entry.items() if k != "total_j")
        total += entry["total_j"] * represents
    del row_bucket, keys, combos, inverse   # a million rows each: not held through the power curve
    # through the power curve a device's rows count ``represents`` times, a link's once: the products
    # energy x represents and energy x 1.0 (= energy) written into one array, without an array of weights
    weighted = np.multiply(energy_j, represents)
    np.copyto(weighted, energy_j, where=network_rows)
    del network_rows
    static = sum(static_w.values()) * represents
    chunks = lambda name: [to_numpy(chunk) for chunk in timeline[name].chunks]     # noqa: E731  (no copies)
    peak = peak_power_w(chunks("start_s"), chunks("end_s"), weighted, static, makespan_s)
    return EnergyReport(by_device, links, total, makespan_s, peak, by_type, represents)


def power_curve(starts: np.ndarray, ends: np.ndarray, energy_j: np.ndarray, static_w: float,
                makespan_s: float) -> tuple[np.ndarray, np.ndarray]:
    """(change times, power in W from each time to the next): every row's
    energy spread evenly over its interval, plus ``static_w`` over [0, makespan]."""
    duration = ends - starts
    keep = duration > 1e-15 * max(makespan_s, 1e-9)     # shorter: an instant, energy without power
    count = int(np.count_nonzero(keep))
    # written into their places rather than concatenated (fewer copies of a million rows alive at once)
    times = np.empty(2 * count + 2)
    deltas = np.empty(2 * count + 2)
    np.compress(keep, starts, out=times[:count])
    np.compress(keep, ends, out=times[count:2 * count])
    times[2 * count:] = (0.0, makespan_s)
    np.divide(np.compress(keep, energy_j), np.compress(keep, duration), out=deltas[:count])
    np.negative(deltas[:count], out=deltas[count:2 * count])
    deltas[2 * count:] = 0.0
    del duration, keep
    order = np.argsort(times, kind="stable")
    times = times[order]
    deltas = deltas[order]
    del order
    # the distinct times and where each first occurs (np.unique would sort the sorted times again)
    new = np.empty(len(times), dtype=bool)
    new[0] = True
    np.not_equal(times[1:], times[:-1], out=new[1:])
    first = np.flatnonzero(new)
    unique = times[first]
    del times, new
    summed = np.add.reduceat(deltas, first)
    power = np.cumsum(summed) + np.where(unique < makespan_s, static_w, 0.0)
    return unique, np.maximum(power, 0.0)


def peak_power_w(starts: np.ndarray | Sequence[np.ndarray], ends: np.ndarray | Sequence[np.ndarray],
                 energy_j: np.ndarray, static_w: float, makespan_s: float, window_rows: int = 1 << 19) -> float:
    """The maximum of ``power_curve`` (the same float), computed a window of
    time at a time: each window holds every change at its times, in the order
    one sort of them all gives, and its running sum continues the previous
    window's (the same additions in the same order). A window of about
    ``window_rows`` changes is alive at once rather than all of them (on GPT
    1T, 3.2M changes: about 100 MB of arrays); each window picks its rows
    by a mask, and computes their rates (the same division as
    ``power_curve``'s), rather than keeping copies of the kept rows' starts,
    ends and rates (3 x 12 MB on GPT 1T, at the run's peak of memory).

    ``starts`` and ``ends`` may be given as lists of consecutive pieces of the
    rows (a table's chunks, read without copying them into one array: 2 x 12
    MB more on GPT 1T); ``energy_j`` is one array of all the rows."""
    parts = list(zip(*(x if isinstance(x, (list, tuple)) else [x] for x in (starts, ends))))
    firsts = np.cumsum([0] + [len(s) for s, _ in parts]).tolist()
    # per piece: its starts, ends, rows kept (of some duration: as power_curve) and energies
    parts = [(s, e, (e - s) > 1e-15 * max(makespan_s, 1e-9), energy_j[first:first + len(s)])
             for (s, e), first in zip(parts, firsts)]
    extra = np.array([0.0, makespan_s])
    kept = [int(np.count_nonzero(keep)) for _, _, keep, _ in parts]
    count = 2 * sum(kept) + 2
    edges = [-np.inf, np.inf]
    if count > window_rows:           # window edges at quantiles of a sample of the change times
        step = max(1, count // (64 * (count // window_rows + 1)))
        sampled, before = [], 0          # every step-th kept row, counted over all pieces
        for (s, e, keep, _), n in zip(parts, kept):
            rows = np.flatnonzero(keep)
            rows = rows[(np.arange(n) + before) % step == 0]
            sampled.append((s[rows], e[rows]))
            before += n
        sample = np.sort(np.concatenate([x for x, _ in sampled] + [x for _, x in sampled] + [extra]))
        del sampled
        cuts = sample[np.linspace(0, len(sample) - 1, count // window_rows + 2).astype(np.int64)[1:-1]]
        edges = [-np.inf, *np.unique(cuts).tolist(), np.inf]
    peak, carry = None, None
    for lo, hi in zip(edges[:-1], edges[1:]):
        at_start, at_end = [], []        # per piece: (times, rates) of the rows starting / ending in the window
        for s, e, keep, energy in parts:
            for x, out in ((s, at_start), (e, at_end)):
                rows = keep & (x >= lo) & (x < hi)
                out.append((x[rows], energy[rows] / (e[rows] - s[rows])))
        in_x = (extra >= lo) & (extra < hi)
        times = np.concatenate([t for t, _ in at_start] + [t for t, _ in at_end] + [extra[in_x]])
        if not len(times):
            continue
        deltas = np.concatenate([r for _, r in at_start] + [-r for _, r in at_end] + [np.zeros(int(in_x.sum()))])
        del at_start, at_end
        order = np.argsort(times, kind="stable")
        times, deltas = times[order], deltas[order]
        new = np.empty(len(times), dtype=bool)
        new[0] = True
        np.not_equal(times[1:], times[:-1], out=new[1:])
        first = np.flatnonzero(new)
        summed = np.add.reduceat(deltas, first)
        running = np.cumsum(summed) if carry is None else np.cumsum(np.concatenate([[carry], summed]))[1:]
        carry = running[-1]
        power = np.maximum(running + np.where(times[first] < makespan_s, static_w, 0.0), 0.0)
        top = float(power.max())
        peak = top if peak is None or top > peak else peak
    return peak
