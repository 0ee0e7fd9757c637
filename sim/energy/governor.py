"""Board power limit: the SM clock a run's average power allows.

A GPU holds its board power at or under a limit by lowering its SM clock
(NVIDIA's "SW power cap"). Dense GEMMs on Hopper exceed the 700 W limit at
full clock, so a long stretch of them runs well below the boost clock, while
short microbenchmarks (the GEMM curves the kernel model is calibrated to) see
the boost clock. Measured on an H200 SXM (benchmarks/device/measure_gpu.py,
validation group ``power_h200``): back-to-back 8192^3 bf16 GEMMs drew 692 W at
a median SM clock of 1470 MHz (667 TFLOP/s) against 794 TFLOP/s at 1980 MHz
in bursts; fp8 693 W at 1350 MHz; a device-to-device copy 572 W at 1980 MHz
(memory-bound work is not throttled: its clock is not the limit).

The model, per run: a device's dynamic energy ``E`` is fixed by its work
(``flop_pj`` per FLOP and ``byte_pj`` per byte, sim.energy.model), so its
power while it computes is ``P(s) = static_w + E / T(s)`` where ``T(s)`` is
the time its compute units are busy (utilization.arrow's ``busy_s``) with the
SM clock scaled by ``s`` (compute-bound kernels slow as 1/s; memory-bound
kernels and links do not). Idle stretches (pipeline bubbles, waiting on
communication) are left out: the firmware averages power over windows of tens
of milliseconds (the H200 above held 794 TFLOP/s for 20 GEMMs, 28 ms, and was
throttled within about 100 ms of continuous GEMMs), shorter than a bubble.
If ``P(1)`` exceeds ``power_limit_w``, the governor finds ``s`` with
``P(s) = power_limit_w``: a second run at ``s2 = (limit - static) /
(P(1) - static)`` (exact if the whole iteration were compute-bound), a fit
``T(s) = A + B / s`` through the two runs, and a third run at the ``s`` the fit
gives. Devices without ``power_limit_w`` keep their clock.

Approximations (documented in docs/energy.md): power is averaged over all
of a device's busy time, so busy phases denser than that average (a stretch
of GEMMs between all-reduces) are throttled less here than on hardware, and
lighter ones more; one clock scale for all devices, set by the most
power-hungry simulated device.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

MIN_CLOCK_SCALE = 0.3   # no clock below 30% of the spec's: the fit is not trusted that far


def power_limit_w(spec: Any) -> float | None:
    """The board power limit (W) of a device spec, None when it has none."""
    energy = getattr(spec, "energy", None)
    return getattr(energy, "power_limit_w", None) if energy is not None else None


def scaled_spec(spec: Any, scale: float) -> Any:
    """``spec`` with its SM clock (the one kernels run at) scaled by ``scale``."""
    sm = spec.sm_array
    if sm is None or power_limit_w(spec) is None or scale == 1.0:
        return spec
    return dataclasses.replace(spec, sm_array=dataclasses.replace(sm, sustained_clock_hz=sm.run_clock_hz * scale))


def scaled_scenario(scenario: Any, scale: float) -> Any:
    """``scenario`` with the SM clock of every power-limited device scaled by
    ``scale`` (ranks that shared a spec still share the scaled one)."""
    specs = {id(s): scaled_spec(s, scale) for s in (scenario.device, *scenario.rank_specs.values())}
    return dataclasses.replace(scenario, device=specs[id(scenario.device)],
                              rank_specs={r: specs[id(s)] for r, s in scenario.rank_specs.items()})


def busy_seconds(result: Any, device: str) -> float:
    """Seconds ``device``'s compute units were busy (the union of its kernels'
    intervals, utilization.arrow's ``busy_s``): the time its power is drawn over."""
    table = result.utilization
    names, categories, busy = (table[c].to_pylist() for c in ("device", "category", "busy_s"))
    return max((b for n, c, b in zip(names, categories, busy) if n == device and c == "compute"), default=0.0)


def over_limit(result: Any, specs: dict[str, Any]) -> tuple[str, float, float, float] | None:
    """(device, static W, dynamic J, limit W) of the simulated device whose power
    while computing exceeds its limit by the largest share, or None when none does."""
    by_device = result.summary.get("energy", {}).get("by_device", {})
    worst = None
    for name, parts in by_device.items():
        limit = power_limit_w(specs.get(name))
        seconds = busy_seconds(result, name)
        if limit is None or seconds <= 0:
            continue
        static = specs[name].energy.static_w
        dynamic = sum(v for k, v in parts.items() if k not in ("total_j", "static_j"))
        ratio = (static + dynamic / seconds) / limit
        if ratio > 1.0 and (worst is None or ratio > worst[0]):
            worst = (ratio, name, static, dynamic, limit)
    return None if worst is None else worst[1:]


def hold_power_limit(scenario: Any, simulate: Callable[[Any], tuple[Any, dict[str, Any]]]) -> Any:
    """Run ``simulate(scenario) -> (result, {device name: spec})`` at the clock
    the board power limit allows (see the module docstring); returns the result."""
    result, specs = simulate(scenario)
    first = over_limit(result, specs)
    if first is None:
        return result
    device, static, dynamic, limit = first
    t1 = busy_seconds(result, device)
    p1 = static + dynamic / t1
    s2 = max(MIN_CLOCK_SCALE, (limit - static) / (p1 - static))
    second, _ = simulate(scaled_scenario(scenario, s2))
    t2 = busy_seconds(second, device)
    scale = s2
    target = dynamic / (limit - static)          # the busy time at which the power is the limit
    slope = (t2 - t1) / (1.0 / s2 - 1.0)          # B of T(s) = A + B / s
    final = second
    if slope > 0 and target > t1 - slope:
        scale = min(1.0, max(MIN_CLOCK_SCALE, slope / (target - (t1 - slope))))
        if abs(scale - s2) > 1e-6:
            final, _ = simulate(scaled_scenario(scenario, scale))
    final.summary["power_limit"] = {
        "device": device, "limit_w": limit, "clock_scale": scale, "power_w_at_full_clock": p1,
        "simulations": 2 if final is second else 3}
    return final
