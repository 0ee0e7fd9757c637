"""Reproduce the calibrated figures of the device specs: ``python -m sim.validation.calibrate``.

Each calibration point of the kernel validation groups names the spec key it
sets. This solves, by bisection, for the value of that key that makes the
model reproduce the published figure (the keys interact little; three rounds
settle them) and prints it next to the value in the spec file. Nothing else
in a spec is fitted; see docs/validation.md.
"""

from __future__ import annotations

import copy

from sim.hardware.specs import load_device_spec

BOUNDS = {"launch_overhead_s": (0.0, 50e-6), "mainloop_efficiency": (0.05, 1.0), "efficiency": (0.05, 1.0),
          "gemm_tile_overhead_clocks": (0.0, 20000.0)}


def _set(tree: dict, key: str, value: float) -> dict:
    out = copy.deepcopy(tree)
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _gemm_tflops(device: str, overrides: dict, shape, dtype: str) -> float:
    import sim
    b, m, n, k = shape
    return sim.kernel(device, "gemm", overrides, m=m, n=n, k=k, batch=b, dtype=dtype).flops_per_s / 1e12


def _copy_tb_s(device: str, overrides: dict) -> float:
    import sim
    nbytes = 2 * 2**25 * 8
    return nbytes / sim.kernel(device, "pointwise", overrides, bytes=nbytes, dtype="fp32").seconds / 1e12


def _solve(measure, key: str, target: float, overrides: dict) -> float:
    low, high = next(v for k, v in BOUNDS.items() if key.split(".")[-1] == k or k in key.split("."))
    rising = measure(_set(overrides, key, high)) > measure(_set(overrides, key, low))
    for _ in range(60):
        mid = (low + high) / 2
        if (measure(_set(overrides, key, mid)) < target) == rising:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def targets() -> dict[str, list[tuple[str, object, float]]]:
    """device -> [(spec key, measure(overrides) -> value, published)]."""
    from sim.validation.groups import gemm_a100, gemm_h100, gemm_others, hbm_bandwidth, kernels_h200
    table: dict[str, list] = {}
    gemm = [("a100_sxm4_80gb", gemm_a100.CALIBRATION), ("h100_sxm5_80gb", gemm_h100.CALIBRATION),
            (kernels_h200.DEVICE, kernels_h200.CALIBRATION), *gemm_others.CALIBRATION.items()]
    for device, rows in gemm:
        for key, shape, dtype, value, _ in rows:
            table.setdefault(device, []).append(
                (key, lambda o, d=device, s=shape, t=dtype: _gemm_tflops(d, o, s, t), value))
    for device, (copy_tb_s, _, _) in hbm_bandwidth.MEASURED.items():
        table.setdefault(device, []).append(
            ("memory.hbm.efficiency", lambda o, d=device: _copy_tb_s(d, o), copy_tb_s))
    return table


def calibrate(device: str, rows) -> dict[str, float]:
    overrides: dict = {}
    for _ in range(3):
        for key, measure, target in rows:
            overrides = _set(overrides, key, _solve(measure, key, target, overrides))
    solved = {}
    for key, _, _ in rows:
        node = overrides
        for part in key.split("."):
            node = node[part]
        solved[key] = node
    return solved


def _shipped(device: str, key: str) -> float:
    spec = load_device_spec(device)
    parts = key.split(".")
    if parts[0] == "memory":
        return spec.tier(parts[1]).efficiency
    if parts[1] == "mainloop_efficiency":
        return spec.sm_array.mainloop_efficiency.get(parts[2], float("nan"))
    return getattr(spec.sm_array, parts[1])


def main() -> None:
    for device, rows in targets().items():
        for key, value in calibrate(device, rows).items():
            print(f"{device:<16} {key:<40} solved {value:.6g}   in the spec {_shipped(device, key):.6g}")


if __name__ == "__main__":
    main()
