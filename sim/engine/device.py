"""One device in a SimPy environment: its units as resources, and op execution.

``bind_ops`` decides, before simulation, which unit and memory tier each op
uses (and rejects ops the device cannot run); ``DeviceRuntime.execute`` is the
SimPy process body that acquires the units, holds them for the modelled
duration and records timeline rows.

An op on a compute unit runs its compute phase and its memory traffic at the
same time: the compute phase is a timeout from the unit's cost model, the
traffic a transfer on the shared memory tier (sim.engine.fluid). The op ends
when both have, which is the roofline max(compute, bytes / bandwidth) when
the op runs alone and stretches when other transfers share the tier.
"""

from __future__ import annotations

from dataclasses import dataclass

import simpy

from sim.engine.fluid import FluidNetwork
from sim.engine.memory import MemoryLedger
from sim.engine.pools import UnitPool
from sim.engine.recorder import TimelineRecorder
from sim.errors import TraceError
from sim.hardware import cost
from sim.hardware.specs import DTYPE_BYTES, DeviceSpec
from sim.workload.trace import MATRIX_OPS, Op, Trace

UNIT_NAMES = {"sm_array": "sm", "systolic_array": "mxu", "vector": "vector", "pim": "pim"}


@dataclass(frozen=True, slots=True)
class BoundOp:
    """An op with its unit kind, memory tiers and dtype resolved for one device."""

    op: Op
    unit: str | None
    tier: str
    dst_tier: str
    dtype: str


def _default_unit(op: Op, spec: DeviceSpec) -> str:
    matrix = "sm_array" if spec.sm_array is not None else (
        "systolic_array" if spec.systolic_array is not None else "vector")
    if op.op == "gemv" and spec.pim is not None:
        return "pim"
    if op.op in MATRIX_OPS:
        return matrix
    return "sm_array" if spec.sm_array is not None else "vector"


def bind_op(op: Op, spec: DeviceSpec, path: str) -> BoundOp:
    """Resolve unit, tiers and dtype of ``op`` on ``spec`` or raise TraceError."""
    where = f"{path}: op {op.id} ({op.name})"
    tiers = spec.tier_names
    dtype = op.dtype or spec.default_dtype
    if dtype not in DTYPE_BYTES:
        raise TraceError(f"{where}: unknown dtype {dtype!r}; expected one of {sorted(DTYPE_BYTES)}")
    if op.op == "copy":
        src = op.src_tier or op.tier or spec.default_tier
        for role, tier in (("src_tier", src), ("dst_tier", op.dst_tier)):
            if tier not in tiers:
                raise TraceError(f"{where}: {role} {tier!r} is not a memory tier of device "
                                 f"{spec.name}; expected one of {list(tiers)}")
        return BoundOp(op, None, src, op.dst_tier or src, dtype)
    unit = op.unit or _default_unit(op, spec)
    if unit not in spec.unit_kinds:
        raise TraceError(f"{where}: unit {unit!r} is not on device {spec.name}; it has "
                         f"{list(spec.unit_kinds)}")
    if unit in ("systolic_array", "pim") and op.op not in MATRIX_OPS:
        raise TraceError(f"{where}: a {op.op} op cannot run on {unit}; expected one of "
                         f"{list(MATRIX_OPS)} there")
    if unit == "sm_array":
        table = (spec.sm_array.matrix_flops_per_s if op.op in MATRIX_OPS
                 else spec.sm_array.vector_flops_per_s)
        if dtype not in table:
            raise TraceError(f"{where}: device {spec.name} has no {dtype} peak for this op; "
                             f"it lists {sorted(table)}")
    if unit == "vector" and dtype not in spec.vector.flops_per_s:
        raise TraceError(f"{where}: device {spec.name}'s vector unit has no {dtype} peak; "
                         f"it lists {sorted(spec.vector.flops_per_s)}")
    default_tier = spec.pim.tier if unit == "pim" else spec.default_tier
    tier = op.tier or default_tier
    if tier not in tiers:
        raise TraceError(f"{where}: tier {tier!r} is not a memory tier of device {spec.name}; "
                         f"expected one of {list(tiers)}")
    if unit == "pim" and tier != spec.pim.tier:
        raise TraceError(f"{where}: PIM ops read the tier the banks live in ({spec.pim.tier!r}), "
                         f"not {tier!r}")
    return BoundOp(op, unit, tier, tier, dtype)


def bind_ops(trace: Trace, spec: DeviceSpec) -> dict[int, BoundOp]:
    return {op.id: bind_op(op, spec, trace.path) for op in trace.ops}


def compute_model(bound: BoundOp, spec: DeviceSpec):
    """(units wanted, function: units granted -> compute seconds) of a bound
    compute op, from the unit's cost model in sim.hardware.cost."""
    op = bound.op
    shaped = op.m is not None and op.n is not None and op.k is not None
    if bound.unit == "sm_array":
        sm = spec.sm_array
        if op.op in MATRIX_OPS:
            peak = sm.matrix_per_sm(bound.dtype)
            if shaped:
                wanted = cost.sm_gemm_sms_wanted(op.m, op.n, sm.count, sm.tile_m, sm.tile_n, op.batch)
                return wanted, lambda g: cost.sm_gemm_compute_s(
                    op.m, op.n, op.k, g, peak, sm.tile_m, sm.tile_n, op.batch)
            return sm.count, lambda g: op.flops / (g * peak)
        peak = sm.vector_per_sm(bound.dtype)
        return sm.count, lambda g: op.flops / (g * peak)
    if bound.unit == "systolic_array":
        sa = spec.systolic_array
        if shaped:
            wanted = cost.systolic_arrays_wanted(op.m, op.n, op.k, sa.rows, sa.cols,
                                                 sa.dataflow, sa.count, op.batch)
            return wanted, lambda g: cost.systolic_gemm_cycles(
                op.m, op.n, op.k, sa.rows, sa.cols, sa.dataflow, g, op.batch) / sa.clock_hz
        per_array = 2.0 * sa.rows * sa.cols * sa.clock_hz
        return sa.count, lambda g: op.flops / (g * per_array)
    if bound.unit == "vector":
        peak = spec.vector.flops_per_s[bound.dtype]
        return 1, lambda g: op.flops / peak
    pim = spec.pim
    return 1, lambda g: cost.pim_gemv_s(op.bytes_read, op.flops, pim.banks,
                                        pim.bank_bandwidth_bytes_per_s, pim.bank_flops_per_s)


def isolated_seconds(bound: BoundOp, spec: DeviceSpec) -> float:
    """Time of an op alone on an idle device: max(compute with every unit it
    wants, bytes over its tier's bandwidth), the roofline."""
    op = bound.op
    if bound.unit is None:
        bandwidth = min(spec.tier(bound.tier).bandwidth_bytes_per_s,
                        spec.tier(bound.dst_tier).bandwidth_bytes_per_s)
        return op.bytes_read / bandwidth
    wanted, seconds = compute_model(bound, spec)
    compute = seconds(wanted)
    if bound.unit == "pim":
        return compute
    return max(compute, (op.bytes_read + op.bytes_written) / spec.tier(bound.tier).bandwidth_bytes_per_s)


class DeviceRuntime:
    """The SimPy resources of one device instance and the op-execution process."""

    def __init__(self, env: simpy.Environment, name: str, spec: DeviceSpec,
                 recorder: TimelineRecorder):
        self.env = env
        self.name = name
        self.spec = spec
        self.recorder = recorder
        self.memory = FluidNetwork(env, {t.name: t.bandwidth_bytes_per_s for t in spec.memory})
        self.ledger = MemoryLedger(name, {t.name: t.capacity_bytes for t in spec.memory})
        self.pools: dict[str, UnitPool] = {}
        if spec.sm_array is not None:
            self.pools["sm_array"] = UnitPool(env, "sm", spec.sm_array.count)
        if spec.systolic_array is not None:
            self.pools["systolic_array"] = UnitPool(env, "mxu", spec.systolic_array.count)
        if spec.vector is not None:
            self.pools["vector"] = UnitPool(env, "vector", 1)
        if spec.pim is not None:
            self.pools["pim"] = UnitPool(env, "pim", 1)

    def unit_peak_flops_per_s(self, unit: str, dtype: str | None = None) -> float:
        """Peak FLOP/s of a whole unit (all SMs, all arrays) for ``dtype``."""
        spec, dtype = self.spec, dtype or self.spec.default_dtype
        if unit == "sm_array":
            table = spec.sm_array.matrix_flops_per_s
            return table.get(dtype, max(table.values()))
        if unit == "systolic_array":
            sa = spec.systolic_array
            return 2.0 * sa.rows * sa.cols * sa.count * sa.clock_hz
        if unit == "vector":
            table = spec.vector.flops_per_s
            return table.get(dtype, max(table.values()))
        if unit == "pim":
            return spec.pim.banks * spec.pim.bank_flops_per_s
        raise KeyError(unit)

    def execute(self, bound: BoundOp):
        """SimPy process body: run one op; returns (start_s, end_s)."""
        env, op = self.env, bound.op
        if op.tensor:
            self.ledger.allocate(op.tensor, bound.dst_tier, int(op.bytes_written), env.now,
                                 context=f"op {op.id} ({op.name}), tensor {op.tensor}")
        if bound.unit is None:
            start = env.now
            resources = (bound.tier,) if bound.tier == bound.dst_tier else (bound.tier, bound.dst_tier)
            end = yield self.memory.transfer(op.bytes_read, resources)
            for tier in resources:
                self.recorder.record(self.name, tier, op.id, op.name, "memory", start, end,
                                     0.0, op.bytes_read, op.stream)
        else:
            start, end = yield from self._compute(bound)
        for tensor in op.frees:
            self.ledger.release(tensor, env.now)
        return start, end

    def _compute(self, bound: BoundOp):
        env, op = self.env, bound.op
        pool = self.pools[bound.unit]
        wanted, compute_s = compute_model(bound, self.spec)
        granted = pool.try_acquire(wanted)
        if not granted:
            granted = yield pool.request(wanted)
        start = env.now
        duration = compute_s(granted)
        if bound.unit == "pim":
            traffic = self._pim_traffic(duration, bound.tier)
            nbytes = 0.0
        else:
            nbytes = op.bytes_read + op.bytes_written
            traffic = self.memory.transfer(nbytes, (bound.tier,)) if nbytes else None
        yield env.timeout(duration)
        memory_end = env.now
        if traffic is not None:
            memory_end = traffic.value if traffic.triggered else (yield traffic)
        end = env.now
        pool.release(granted)
        unit_name = UNIT_NAMES[bound.unit]
        self.recorder.record(self.name, unit_name, op.id, op.name, "compute", start, end,
                             op.flops, op.bytes_read + op.bytes_written, op.stream, granted)
        if traffic is not None:
            self.recorder.record(self.name, bound.tier, op.id, op.name, "memory", start, memory_end,
                                 0.0, nbytes, op.stream)
        return start, end

    def _pim_traffic(self, duration_s: float, tier: str):
        """In ``blocked`` mode a PIM op time-shares its memory tier with normal
        transfers: it is a transfer of duration * bandwidth bytes on that tier,
        so alone it takes ``duration_s`` and beside an equal transfer both take
        twice as long. In ``concurrent`` mode (dual row buffers) it does not
        touch the tier's external bandwidth."""
        if self.spec.pim.mode != "blocked" or duration_s <= 0:
            return None
        return self.memory.transfer(duration_s * self.memory.capacity[tier], (tier,))
