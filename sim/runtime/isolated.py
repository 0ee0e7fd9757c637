"""Per-op times on an idle device, for critical-path estimates (``accsim trace info``)."""

from __future__ import annotations

from sim.engine.device import bind_op, isolated_seconds
from sim.hardware.specs import DeviceSpec
from sim.workload.trace import COMM_OPS, Trace


def isolated_op_seconds(trace: Trace, spec: DeviceSpec) -> dict[int, float]:
    """Seconds each op of ``trace`` takes alone on ``spec`` (no contention).
    Collectives need a topology and count as 0 here."""
    return {op.id: 0.0 if op.op in COMM_OPS else isolated_seconds(bind_op(op, spec, trace.path), spec)
            for op in trace.ops}
