"""Per-op times on an idle device, for critical-path estimates (``accsim trace info``)."""

from __future__ import annotations

from sim.engine.device import bind_ops, isolated_seconds
from sim.hardware.specs import DeviceSpec
from sim.workload.trace import Trace


def isolated_op_seconds(trace: Trace, spec: DeviceSpec) -> dict[int, float]:
    """Seconds each op of ``trace`` takes alone on ``spec`` (no contention)."""
    return {op_id: isolated_seconds(bound, spec) for op_id, bound in bind_ops(trace, spec).items()}
