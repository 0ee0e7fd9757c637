"""One device: its units as resources, and op execution on them.

``bind_op`` decides, before simulation, which unit and memory tier each op
uses, rejects ops the device cannot run, and prices each op's kernel once
(sim.hardware.kernels: GEMM tiles and waves, fused attention, memory-bound
kernels; each distinct shape once per device spec). ``DeviceRuntime.start`` then runs an op: it takes units from the unit's
pool (waiting FIFO when none is free), starts the compute phase as a timer on
the calendar and the op's memory traffic as a transfer on the shared memory
tier at its achievable bandwidth (sim.engine.fluid), and finishes the op when both have finished: the
roofline max(compute, bytes / bandwidth) when the op runs alone, stretched
when other transfers share the tier. A kernel granted fewer SMs than it wants
(others hold them: a communication kernel, another stream's kernel) takes
more as they free up, and its compute phase speeds up for the rest of its work.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from sim.engine.calendar import Environment, cancel
from sim.engine.fluid import Flow, FluidNetwork
from sim.engine.memory import MemoryLedger
from sim.engine.pools import UnitPool
from sim.engine.recorder import OpRows, TimelineBuilder
from sim.errors import TraceError
from sim.hardware.gemm import PRECISIONS, precision
from sim.hardware.kernels import AttentionShape, Kernel, price
from sim.hardware.specs import DTYPE_BYTES, DeviceSpec
from sim.workload.conv import matrix_shape
from sim.workload.trace import HOST_OPS, MATRIX_OPS, Op

UNIT_NAMES = {"sm_array": "sm", "systolic_array": "mxu", "vector": "vector", "pim": "pim"}
HOST_UNIT = "cpu"  # the pseudo-unit of host ops: time on the issuing CPU thread, no device resource


@dataclass(slots=True, eq=False)
class BoundOp:
    """An op with its unit kind, memory tiers, dtype and cost resolved for one device.

    ``wanted`` units give ``compute_s``; ``seconds(granted)`` prices fewer.
    ``op`` is None in a binding shared by the ops of one shape (a simulation's
    ``bound``: their ops are looked up by position). Treat it as immutable. It
    is not a frozen dataclass because a frozen one sets each field through
    ``object.__setattr__``, which made making one about five times slower.
    """

    op: Op | None
    unit: str | None
    tier: str
    dst_tier: str
    dtype: str
    wanted: int = 1
    compute_s: float = 0.0
    seconds: Callable[[int], float] | None = None


def _default_unit(op: Op, spec: DeviceSpec) -> str:
    matrix = "sm_array" if spec.sm_array is not None else (
        "systolic_array" if spec.systolic_array is not None else "vector")
    if op.op == "gemv" and spec.pim is not None:
        return "pim"
    if op.op in MATRIX_OPS:
        return matrix
    return "sm_array" if spec.sm_array is not None else "vector"


def op_kernel(op: Op, dtype: str) -> Kernel:
    """The kernel a trace op describes: a shaped GEMM (m, n, k, batch; a
    conv2d's implicit GEMM), a shaped attention op (batch x heads = ``batch``, ``m`` queries attending
    ``n`` keys of head dimension ``k``, no mask), matrix FLOPs without a
    shape, or a pointwise kernel."""
    shape = matrix_shape(op)   # a conv2d is priced as its im2col / implicit GEMM (sim.workload.conv)
    common = dict(name=op.name, flops=op.flops, bytes_read=op.bytes_read, bytes_written=op.bytes_written,
                  dtype=dtype)
    if op.op in ("gemm", "gemv", "conv2d") and shape is not None:
        m, n, k, batch = shape
        return Kernel(kind="gemm", m=m, n=n, k=k, batch=batch, **common)
    if op.op == "attention" and shape is not None:
        shape = AttentionShape(op.batch, 1, 1, op.m, op.n, op.k, causal=False)
        return Kernel(kind="attention", attention=shape, **common)
    return Kernel(kind="matrix" if op.op in MATRIX_OPS else "pointwise", **common)


def _check_dtype(op: Op, dtype: str, unit: str, spec: DeviceSpec, where: str) -> None:
    matrix = op.op in MATRIX_OPS
    known = sorted(set(DTYPE_BYTES) | (set(PRECISIONS) if matrix else set()))
    if dtype not in known:
        raise TraceError(f"{where}: unknown dtype {dtype!r}; expected one of {known}")
    if unit == "sm_array" and matrix:
        table = spec.sm_array.matrix_flops_per_clock_per_sm
        if precision(dtype).math not in table:
            raise TraceError(f"{where}: device {spec.name} has no {precision(dtype).math} tensor-core rate "
                             f"for this op; it lists {sorted(table)}")


def bind_op(op: Op, spec: DeviceSpec, path: str) -> BoundOp:
    """Resolve unit, tiers and dtype of ``op`` on ``spec`` or raise TraceError."""
    where = f"{path}: op {op.id} ({op.name})"
    tiers = spec.tier_names
    dtype = op.dtype or spec.default_dtype
    if op.op in HOST_OPS:
        return BoundOp(op, HOST_UNIT, spec.default_tier, spec.default_tier, dtype, 0, op.duration_s,
                       lambda granted: op.duration_s)
    if op.op == "copy":
        if dtype not in DTYPE_BYTES:
            raise TraceError(f"{where}: unknown dtype {dtype!r}; expected one of {sorted(DTYPE_BYTES)}")
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
    _check_dtype(op, dtype, unit, spec, where)
    default_tier = spec.pim.tier if unit == "pim" else spec.default_tier
    tier = op.tier or default_tier
    if tier not in tiers:
        raise TraceError(f"{where}: tier {tier!r} is not a memory tier of device {spec.name}; "
                         f"expected one of {list(tiers)}")
    if unit == "pim" and tier != spec.pim.tier:
        raise TraceError(f"{where}: PIM ops read the tier the banks live in ({spec.pim.tier!r}), "
                         f"not {tier!r}")
    if op.duration_s is not None:
        # A measured or precomputed duration with the whole unit; granted fewer
        # units (SMs held by a communication kernel), it stretches in proportion.
        whole = {"sm_array": spec.sm_array.count if spec.sm_array else 1,
                 "systolic_array": spec.systolic_array.count if spec.systolic_array else 1}.get(unit, 1)
        return BoundOp(op, unit, tier, tier, dtype, whole, op.duration_s,
                       lambda granted: op.duration_s * whole / granted)
    wanted, seconds = price(op_kernel(op, dtype), spec, unit, tier)
    return BoundOp(op, unit, tier, tier, dtype, wanted, seconds(wanted), seconds)


def isolated_seconds(bound: BoundOp, spec: DeviceSpec) -> float:
    """Time of an op alone on an idle device: max(compute with every unit it
    wants, bytes over its tier's achievable bandwidth), the roofline."""
    op = bound.op
    if bound.unit is None:
        bandwidth = min(spec.tier(bound.tier).achievable_bandwidth_bytes_per_s,
                        spec.tier(bound.dst_tier).achievable_bandwidth_bytes_per_s)
        return op.bytes_read / bandwidth
    compute = bound.compute_s
    if bound.unit in ("pim", HOST_UNIT):
        return compute
    return max(compute, (op.bytes_read + op.bytes_written) /
               spec.tier(bound.tier).achievable_bandwidth_bytes_per_s)


class OpTimes:
    """What happened to each op of a run, in columns indexed by the op's
    position in the trace: ``start_s`` and ``end_s`` (NaN until it ran),
    ``mem_end_s`` (when its memory traffic ended; None for ops without) and
    ``granted`` (units it held). The hot path writes one item each; the times
    are ``array('d')`` (8 bytes an op, where a list held a float object of 24
    bytes and its 8-byte slot), the others plain lists.
    """

    __slots__ = ("start_s", "end_s", "mem_end_s", "granted")

    def __init__(self, count: int):
        self.start_s = array("d", [math.nan]) * count
        self.end_s = array("d", [math.nan]) * count
        self.mem_end_s: list[float | None] = [None] * count
        self.granted = [0] * count


class DeviceRuntime:
    """The resources of one device instance and the execution of ops on them.

    Ops are named by their index into ``ops`` (the ops of the whole trace)
    and ``bound`` (their bindings); the device writes their times into ``times`` and calls
    ``on_done(index)`` when one has finished. Memory tiers are resources
    ``(device name, tier name)`` of a FluidNetwork that may be shared with
    other devices and links.
    """

    def __init__(self, env: Environment, name: str, spec: DeviceSpec, ops: Sequence[Op], bound: list,
                 times: OpTimes, on_done: Callable[[int], None], fluid: FluidNetwork | None = None,
                 strict_memory: bool = True):
        self.env = env
        self.name = name
        self.spec = spec
        self.ops = ops
        self.bound = bound
        self.times = times
        self.on_done = on_done
        self.fluid = fluid or FluidNetwork(env, {})
        self.fluid.add_resources({(name, t.name): t.achievable_bandwidth_bytes_per_s for t in spec.memory})
        self._tier_keys = {t.name: ((name, t.name),) for t in spec.memory}
        self.ledger = MemoryLedger(name, {t.name: t.capacity_bytes for t in spec.memory},
                                   strict=strict_memory)
        self.pools: dict[str, UnitPool] = {}
        if spec.sm_array is not None:
            self.pools["sm_array"] = UnitPool(env, "sm", spec.sm_array.count)
        # kernels running on fewer SMs than they want, oldest first: compute op index ->
        # [phase start, fraction done, timer or flow]; ("comm", collective index) -> [wanted, held]
        self._short: dict = {}
        self._comm: dict[int, list] = {}   # collective index -> [SMs wanted, SMs held]
        if spec.systolic_array is not None:
            self.pools["systolic_array"] = UnitPool(env, "mxu", spec.systolic_array.count)
        if spec.vector is not None:
            self.pools["vector"] = UnitPool(env, "vector", 1)
        if spec.pim is not None:
            self.pools["pim"] = UnitPool(env, "pim", 1)
        self.finished: list[int] = []

    def start(self, index: int, bound: BoundOp) -> None:
        """Begin op ``index`` now: take its units (or queue for them), then run it."""
        op = self.ops[index]
        if op.tensor:
            size = op.bytes_written if op.alloc_bytes is None else op.alloc_bytes
            self.ledger.allocate(op.tensor, bound.dst_tier, int(size), self.env.now,
                                 context=f"op {op.id} ({op.name}), tensor {op.tensor}")
        if bound.unit == HOST_UNIT:
            self.times.start_s[index] = self.env.now
            self.env.at(self.env.now + bound.compute_s, self._finish, index)
            return
        if bound.unit is None:
            self.times.start_s[index] = self.env.now
            resources = self._tier_keys[bound.tier]
            if bound.tier != bound.dst_tier:
                resources += self._tier_keys[bound.dst_tier]
            self.fluid.start(op.bytes_read, resources, self._flow_done, index)
            return
        pool = self.pools[bound.unit]
        free = pool.free
        if free and not pool.waiting:   # (nearly always) UnitPool.try_acquire, in place
            wanted = bound.wanted
            granted = wanted if wanted < free else free
            pool.free = free - granted
            self._begin(index, granted, bound, op)
        else:   # queued: UnitPool.acquire calls _run once units free up
            pool.acquire(bound.wanted, self._run, index)

    def _run(self, index: int, granted: int) -> None:
        """Units were granted to op ``index`` (``UnitPool.acquire``'s callback): run it."""
        self._begin(index, granted, self.bound[index], self.ops[index])

    def _begin(self, index: int, granted: int, bound: BoundOp, op: Op) -> None:
        """Run op ``index`` (``bound``, ``op``) on the ``granted`` units: its compute
        phase and its memory traffic start now. ``start`` takes free units in
        place and calls it with the binding and op at hand, as it nearly always
        can, rather than through ``UnitPool.acquire``'s callback and two more
        look-ups (measured with ``FluidNetwork.start_one``: see there)."""
        now = self.env._now
        times = self.times
        times.granted[index] = granted
        times.start_s[index] = now
        compute_end = now + (bound.compute_s if granted == bound.wanted else bound.seconds(granted))
        if bound.unit == "pim":
            if self.spec.pim.mode == "blocked" and compute_end > now:
                # Blocked PIM time-shares the tier with normal traffic: a transfer of
                # duration x bandwidth bytes on it takes the PIM time alone and
                # stretches, like the traffic beside it, when the tier is shared.
                key = self._tier_keys[bound.tier]
                self.fluid.start((compute_end - now) * self.fluid.capacity[key[0]], key,
                                 self._flow_done, index)
                return
        elif op.bytes_read or op.bytes_written:
            flow = self.fluid.start_one(op.bytes_read + op.bytes_written, self._tier_keys[bound.tier],
                                        self._flow_done, index, compute_end)
            if granted < bound.wanted and bound.unit == "sm_array":
                self._short[index] = [now, 0.0, flow]
            return
        entry = self.env.at(compute_end, self._finish, index)
        if granted < bound.wanted and bound.unit == "sm_array":
            self._short[index] = [now, 0.0, entry]

    def _top_up(self) -> None:
        """SMs were freed with nobody queued for them: kernels running on fewer
        than they want take them, oldest first. A GPU places a running grid's
        remaining thread blocks on SMs as they free up (CUDA C++ Programming
        Guide, "Hardware Implementation": "As thread blocks terminate, new
        blocks are launched on the vacated multiprocessors"), so a GEMM started
        beside an NCCL kernel does not stay narrow after that kernel ends, and
        an NCCL kernel launched while a GEMM held every SM gets its channels as
        the GEMM's blocks finish. A compute kernel that did fraction f of its
        work on g SMs does the rest in (1 - f) x T(g') on g' SMs (T: its price,
        sim.hardware.kernels); its memory traffic is not re-timed, only the
        earliest time it may end."""
        pool = self.pools["sm_array"]
        now = self.env._now
        times = self.times
        for index, short in list(self._short.items()):
            if type(index) is tuple:  # a communication kernel: its thread blocks take the SMs
                extra = pool.try_acquire(short[0] - short[1])
                if not extra:
                    return
                short[1] += extra
                if short[1] == short[0]:
                    del self._short[index]
                continue
            bound = self.bound[index]
            granted = times.granted[index]
            extra = pool.try_acquire(bound.wanted - granted)
            if not extra:
                return
            mark, done, timer = short
            done += (now - mark) / bound.seconds(granted)
            granted += extra
            times.granted[index] = granted
            left = 1.0 - done if done < 1.0 else 0.0
            compute_end = now + left * (bound.compute_s if granted == bound.wanted else bound.seconds(granted))
            if isinstance(timer, Flow):
                self.fluid.move_not_before(timer, compute_end)
            else:
                cancel(timer)
                short[2] = timer = self.env.at(compute_end, self._finish, index)
            if granted == bound.wanted:
                del self._short[index]
            else:
                short[0], short[1] = now, done

    def launch_comm_kernel(self, collective: int, sms: int) -> None:
        """A communication kernel (collective ``collective``, by trace index) starts
        on this device with one thread block per channel, ``sms`` SMs: it takes
        those free now and the rest as they free up, and holds them until
        ``end_comm_kernel``."""
        held = self.pools["sm_array"].try_acquire(sms)
        self._comm[collective] = short = [sms, held]
        if held < sms:
            self._short[("comm", collective)] = short

    def end_comm_kernel(self, collective: int) -> None:
        sms, held = self._comm.pop(collective)
        if held < sms:
            del self._short[("comm", collective)]
        if held:
            pool = self.pools["sm_array"]
            pool.release(held)
            if pool.free and self._short:   # SMs left free (nobody queued): narrow kernels take them
                self._top_up()

    def _flow_done(self, flow: Flow) -> None:
        self.times.mem_end_s[flow.tag] = flow.bytes_end_s
        self._finish(flow.tag)

    def _finish(self, index: int) -> None:
        """The op is over: give its units back, record it, free its tensors."""
        times = self.times
        granted = times.granted[index]
        bound = self.bound[index]
        if granted:
            pool = self.pools[bound.unit]
            pool.release(granted)
            if bound.unit == "sm_array" and self._short:
                self._short.pop(index, None)
                if pool.free:   # SMs left free (nobody queued): narrow kernels take them
                    self._top_up()
        now = self.env._now
        times.end_s[index] = now
        self.finished.append(index)
        frees = self.ops[index].frees
        if frees:
            for tensor in frees:
                self.ledger.release(tensor, now)
        self.on_done(index)

    def record_timeline(self, builder: TimelineBuilder) -> list[str]:
        """Add this device's rows to ``builder`` as one record batch, and return
        the units they name. Per finished op, in the order they finished: a
        host op's row; a compute op's row and, when its memory traffic was
        timed, a memory row on its tier; a copy's row per tier it touches.

        An op's rows follow a recipe fixed by its unit, tiers and whether its
        memory traffic was timed (a few recipes per device), so the rows are
        laid out with numpy from per-op arrays rather than a tuple per row."""
        finished = self.finished
        times = self.times
        bound = [self.bound[i] for i in finished]
        ops = [self.ops[i] for i in finished]
        mem_end = [times.mem_end_s[i] for i in finished]
        recipes: dict[tuple, int] = {}
        recipe = np.array([recipes.setdefault((b.unit, b.tier, b.dst_tier, m is not None), len(recipes))
                           for b, m in zip(bound, mem_end)], dtype=np.intp)
        units: dict[str, int] = {}
        cells = np.zeros((len(recipes), 2, 6), dtype=np.int32)   # recipe, row k: the row's fields
        counts = np.zeros(len(recipes), dtype=np.int64)
        for (unit, tier, dst_tier, timed), code in recipes.items():
            rows = _recipe(unit, tier, dst_tier, timed)
            counts[code] = len(rows)
            for k, (name, *fields) in enumerate(rows):
                cells[code, k] = (units.setdefault(name, len(units)), *fields)
        per_op = counts[recipe]
        row_op = np.repeat(np.arange(len(finished)), per_op)
        first_row = np.cumsum(per_op) - per_op
        row = cells[recipe[row_op], np.arange(len(row_op)) - first_row[row_op]].T   # ROW_FIELDS x rows
        position = np.array(finished, dtype=np.int64)
        start = np.frombuffer(times.start_s, dtype=np.float64)[position][row_op]
        ends = np.stack([np.frombuffer(times.end_s, dtype=np.float64)[position],
                         np.array(mem_end, dtype=np.float64)])       # None (never used) -> NaN
        zeros = np.zeros(len(finished))
        flops = np.stack([zeros, np.array([o.flops for o in ops], dtype=np.float64)])
        nbytes = np.stack([zeros, np.array([o.bytes_read + o.bytes_written for o in ops], dtype=np.float64),
                           np.array([o.bytes_read for o in ops], dtype=np.float64)])
        held = np.stack([np.zeros(len(finished), dtype=np.int64), np.ones(len(finished), dtype=np.int64),
                         np.array([times.granted[i] for i in finished], dtype=np.int64)])
        builder.add_batch(OpRows(
            position=position[row_op], device=(np.zeros(len(row_op), dtype=np.int32), [self.name]),
            unit=(row[0], list(units)), category=(row[1], CATEGORIES), start_s=start,
            end_s=ends[row[2], row_op], flops=flops[row[3], row_op], bytes=nbytes[row[4], row_op],
            units_held=held[row[5], row_op]))
        return list(units)


CATEGORIES = ("compute", "memory", "host")
# a row of a recipe: (unit name, category, end: 0 the op's end / 1 its memory end, flops: 0 none / 1 the op's,
# bytes: 0 none / 1 read + written / 2 read, units held: 0 none / 1 one / 2 those granted)
COMPUTE, MEMORY, HOST = range(3)


def _recipe(unit: str | None, tier: str, dst_tier: str, timed: bool) -> list[tuple]:
    """The timeline rows of an op on ``unit`` (None: a copy) with these tiers;
    ``timed``: its memory traffic was timed."""
    if unit == HOST_UNIT:
        return [(HOST_UNIT, HOST, 0, 0, 0, 0)]
    if unit is not None:
        rows = [(UNIT_NAMES[unit], COMPUTE, 0, 1, 1, 2)]
        if timed:
            rows.append((tier, MEMORY, 1, 0, 0 if unit == "pim" else 1, 1))
        return rows
    return [(name, MEMORY, 0, 0, 2, 1) for name in dict.fromkeys((tier, dst_tier))]
