"""The human-readable summary ``accsim run`` prints for a serving scenario."""

from __future__ import annotations

import sys

from sim.units import format_bytes

SERVING_TABLES = ("requests", "iterations", "timeline", "bubbles", "utilization", "memory")


def _ms(value) -> str:
    return "-" if value is None else f"{value * 1e3:.1f}"


def _row(name: str, stats: dict) -> str:
    return (f"{name:<8} {_ms(stats['mean']):>9} {_ms(stats['p50']):>9} {_ms(stats['p90']):>9} "
            f"{_ms(stats['p99']):>9}")


def print_serving_summary(summary: dict, out_dir: str | None, stream=None, fmt: str = "arrow") -> None:
    pools = summary["pools"]
    placement = " + ".join(
        f"{p['replicas']} x {p['role'] + ' ' if p['role'] != 'unified' else ''}replica (tp {p['tp']}, pp {p['pp']}) "
        f"on {p['device']}" for p in pools)
    slo = summary["slo"]
    given = ", ".join(f"{k[:-2]} <= {v * 1e3:g} ms" for k, v in slo.items() if v is not None)
    lines = [
        f"scenario   {summary['scenario']}: {summary['model']} served by {placement}; "
        f"{summary['policy']} scheduling, {summary['router']} routing",
        f"requests   {summary['finished']} finished, {summary['rejected']} rejected over "
        f"{summary['span_s']:.2f} s; {summary['requests_per_s']:.2f} req/s, "
        f"{summary['throughput_tokens_per_s']:.0f} output tokens/s, goodput "
        f"{summary['goodput_requests_per_s']:.2f} req/s" + (f" ({given})" if given else ""),
        f"{'latency':<8} {'mean ms':>9} {'p50':>9} {'p90':>9} {'p99':>9}",
        _row("TTFT", summary["ttft_s"]), _row("TPOT", summary["tpot_s"]), _row("E2E", summary["e2e_s"]),
        _row("queue", summary["queue_s"]),
    ]
    if "kv_transfer_s" in summary:
        lines.append(_row("KV xfer", summary["kv_transfer_s"]))
    lines += [
        f"hardware   MFU {100 * summary['mfu']:.1f}%, MBU {100 * summary['mbu']:.1f}% while busy; busy "
        f"{100 * summary['busy_fraction']:.1f}% of the span; {summary['iterations']} iterations, mean batch "
        f"{summary['mean_batch_size']:.1f}",
    ]
    for p in pools:
        lines.append(f"KV cache   {p['role']}: {p['kv_blocks']} blocks of {format_bytes(p['kv_block_bytes'])} per "
                     f"GPU ({p['kv_capacity_tokens']} tokens) after weights {format_bytes(p['weights_bytes_per_gpu'])} "
                     f"and activations {format_bytes(p['activation_bytes_per_gpu'])} per GPU")
    lines.append(f"           peak use {100 * summary['kv_peak_utilization']:.1f}%, {summary['preemptions']} "
                 f"preemptions, {summary['prefix_cache_hit_tokens']} prefix-cache hit tokens")
    lines.append(f"simulated  {summary['devices']} devices, {summary['events']} events, "
                 f"{summary['wall_s']:.2f} s wall")
    if summary.get("energy"):
        from sim.energy.table import energy_lines
        lines += [""] + energy_lines(summary["energy"])
    if out_dir:
        lines.append(f"wrote {out_dir}/" + ", ".join(f"{name}.{fmt}" for name in SERVING_TABLES) + ", summary.json")
    (stream or sys.stdout).write("\n".join(lines) + "\n")
