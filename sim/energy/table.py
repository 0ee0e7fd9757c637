"""The printed energy breakdown of a run (``accsim run``'s summary).

One line with the whole cluster's joules, average and peak power and J per
token / sample; a table of joules by part (compute, each memory tier, links,
static) for the whole cluster and for each simulated device; joules by link
type. Built from the ``energy`` section of summary.json (sim.energy.run).
"""

from __future__ import annotations

from sim.cli.format import format_si

MAX_DEVICE_ROWS = 8


def format_j(value: float) -> str:
    """Joules with an SI prefix, down to nJ (``format_si`` stops at the unit)."""
    size = abs(value)
    if size == 0 or size >= 1:
        return format_si(value, "J")
    for prefix, factor in (("m", 1e-3), ("u", 1e-6), ("n", 1e-9)):
        if size >= factor:
            return f"{value / factor:.3g} {prefix}J"
    return f"{value:.3g} J"


def energy_lines(energy: dict) -> list[str]:
    """The breakdown table: compute vs each tier vs links vs static, per device and in all."""
    per = "".join(f"; {format_j(value)}/{key.removeprefix('j_per_').replace('_', ' ')}"
                  for key, value in energy.items() if key.startswith("j_per_"))
    lines = [f"energy     {format_j(energy['total_j'])}  (average {format_si(energy['average_power_w'], 'W')}, "
             f"peak {format_si(energy['peak_power_w'], 'W')}{per})"]
    breakdown = energy.get("breakdown_j") or {}
    parts = [p for p in breakdown if p not in ("links", "static")] + ["links", "static"]
    header = f"{'joules':<16}" + "".join(f" {p:>10}" for p in parts) + f" {'total':>10}"
    lines.append(header)
    devices = energy["by_device"]
    represents = energy.get("devices_represented_per_simulated", 1.0)
    count = energy.get("devices", len(devices) * represents)
    label = f"all {count:g} devices" if count != 1 else "all"
    lines.append(f"{label:<16}" + "".join(f" {format_j(breakdown.get(p, 0.0)):>10}" for p in parts)
                 + f" {format_j(energy['total_j']):>10}")
    for name, parts_j in list(devices.items())[:MAX_DEVICE_ROWS]:
        cells = ["-" if p == "links" else format_j(parts_j.get(f"{p}_j", 0.0)) for p in parts]
        lines.append(f"{name:<16}" + "".join(f" {c:>10}" for c in cells) + f" {format_j(parts_j['total_j']):>10}")
    if len(devices) > MAX_DEVICE_ROWS:
        lines.append(f"... and {len(devices) - MAX_DEVICE_ROWS} more devices (summary.json: energy.by_device)")
    if represents != 1:
        lines.append(f"(each simulated device stands for {represents:g}: the run is folded; links carry all traffic)")
    by_type = energy.get("links_j_by_type") or {}
    if by_type:
        lines.append("links by type: " + ", ".join(f"{k} {format_j(v)}" for k, v in by_type.items()))
    unpriced = energy.get("links_unpriced_bytes") or 0.0
    missing = energy.get("devices_unpriced") or []
    empty = energy.get("compute_rows_without_work") or 0
    notes = ([f"{format_si(unpriced, 'B')} on links whose type has no energy figure"] if unpriced else []) \
        + ([f"devices without energy figures: {', '.join(missing[:4])}"] if missing else []) \
        + ([f"{empty} compute rows with neither FLOPs nor bytes (durations only)"] if empty else [])
    if energy.get("not_counted"):
        notes.append(energy["not_counted"])
    if notes:
        lines.append("not priced: " + "; ".join(notes))
    return lines
