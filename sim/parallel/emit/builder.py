"""The shared builder of a training iteration's trace.

``TraceBuilder`` appends ops with fresh ids (a send's id can be reserved by
its receiver first) and, in folded runs, computes the groups of the replicas
that are not simulated (``mirror_groups``). ``Iteration`` is what every
technique's emitter sees of the whole iteration (model, plan, devices, the
ranks simulated, the per-stage state other emitters fill in); ``Stage`` is
one pipeline stage of one simulated replica: its ranks, its layer segments
and, per simulated TP rank, the ops the next compute op must wait for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from sim.hardware.specs import DeviceSpec
from sim.parallel.expand import Segment, layer_segments
from sim.parallel.emit.sequence import tp_collectives
from sim.parallel.plan import ParallelPlan
from sim.workload.trace import Op, make_op
from sim.workload.transformer import ModelConfig


@dataclass
class Expansion:
    """The generated trace and what reports need to know about it."""

    ops: Sequence[Op]      # a list while emitted, then the validated trace's tuple (sim.runtime.scenario)
    resident: dict[int, dict[str, tuple[str, int]]]
    stage_of_rank: dict[int, int]
    hardware_flops: float = 0.0
    info: dict = field(default_factory=dict)


class TraceBuilder:
    """Appends ops with fresh ids; send ids can be reserved by their receiver first."""

    def __init__(self, cfg: ModelConfig, plan: ParallelPlan, folded: bool):
        self.cfg, self.plan, self.folded = cfg, plan, folded
        self.dtype = cfg.dtype
        self.next_id = 0
        self.reserved: dict[tuple, int] = {}
        self.ops: list[Op] = []
        self.last_compute: dict[int, int] = {}
        self.hardware_flops = 0.0
        self._mirror_cache: dict[tuple, tuple] = {}
        self._pending: dict[tuple, tuple[int, list[int], list[int]]] = {}
        # while a unit is recorded as a template (sim.parallel.emit.replay): reservations and FLOPs, in order
        self.log: list | None = None

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def reserve(self, key: tuple) -> int:
        op_id = self.reserved.get(key)
        new = op_id is None
        if new:
            op_id = self.reserved[key] = self.new_id()
        if self.log is not None:
            self.log.append(("reserve", key, op_id, new))
        return op_id

    def compute(self, rank: int, seg: Segment, name: str, deps, phase: str | None = None,
                stage: int | None = None, microbatch: int | None = None, chunk: int | None = None,
                layer: int | None = None, tensor: str | None = None, alloc_bytes: float | None = None,
                frees: tuple[str, ...] = ()) -> int:
        """The segment ``seg`` on ``rank``'s compute stream after ``deps``.
        The op is built by ``make_op`` (positional arguments), most of a
        million ops."""
        op_id = self.next_id
        self.next_id = op_id + 1
        matrix = seg.matrix_flops
        self.hardware_flops += matrix
        if self.log is not None:
            self.log.append(("flops", matrix))
        self.ops.append(make_op(op_id, name, "gemm" if matrix else "elementwise", seg.flops, seg.bytes_read,
                                seg.bytes_written, tuple(deps), 0, self.dtype, tensor, frees, layer, rank,
                                seg.duration_s, (), (), None, stage, microbatch, chunk, phase, alloc_bytes))
        self.last_compute[rank] = op_id
        return op_id

    def copy(self, rank: int, name: str, nbytes: float, src_tier: str, dst_tier: str, deps,
             stream: int = 0, **extra) -> int:
        """A transfer of ``nbytes`` between two memory tiers of ``rank``'s device;
        on the compute stream (0) it counts as the rank's last compute op."""
        op_id = self.new_id()
        self.ops.append(Op(id=op_id, name=name, op="copy", flops=0.0, bytes_read=nbytes,
                           bytes_written=nbytes, src_tier=src_tier, dst_tier=dst_tier,
                           rank=rank, stream=stream, deps=tuple(deps), **extra))
        if stream == 0:
            self.last_compute[rank] = op_id
        return op_id

    def host(self, rank: int, name: str, seconds: float, deps, stream: int, **extra) -> int:
        """Work on the host CPU that takes ``seconds`` and no device resource."""
        op_id = self.new_id()
        self.ops.append(Op(id=op_id, name=name, op="host", flops=0.0, bytes_read=0.0, bytes_written=0.0,
                           duration_s=seconds, rank=rank, stream=stream, deps=tuple(deps), **extra))
        return op_id

    def collective(self, kind: str, name: str, nbytes: float, group, mirror_groups, deps, stream: int,
                   phase: str, algorithm: str = "nccl", op_id: int | None = None, stage: int | None = None,
                   microbatch: int | None = None, chunk: int | None = None, tensor: str | None = None,
                   alloc_bytes: float | None = None, frees: tuple[str, ...] = ()) -> int:
        if op_id is None:
            op_id = self.next_id
            self.next_id = op_id + 1
        self.ops.append(make_op(op_id, name, kind, 0.0, nbytes, nbytes, tuple(dict.fromkeys(deps)), stream,
                                None, tensor, frees, None, group[0], None,
                                group if type(group) is tuple else tuple(group), mirror_groups, algorithm,
                                stage, microbatch, chunk, phase, alloc_bytes))
        return op_id

    def shared_collective(self, key: tuple, members: int, deps, kind: str, name: str, nbytes: float, group,
                          mirror_groups, stream: int, phase: str, algorithm: str = "nccl", **extra) -> int:
        """A collective whose simulated members are emitted by separate passes
        (in full fidelity, the replicas of a data-parallel group): each member
        calls this with its deps under the same ``key``; the id is reserved by
        the first call and the op appended by the ``members``-th."""
        if self.log is not None:
            self.log.append(("shared", key))
        op_id, collected, calls = self._pending.setdefault(key, (self.new_id(), [], []))
        collected.extend(deps)
        calls.append(1)
        if len(calls) == members:
            del self._pending[key]
            self.collective(kind, name, nbytes, group, mirror_groups, collected, stream, phase, algorithm,
                            op_id=op_id, **extra)
        return op_id

    def mirrors(self, group_of: Callable[[int, int], list[int]], dims: str,
                key: tuple | None = None) -> tuple[tuple[int, ...], ...]:
        """In folded runs, the groups of the replicas that are not simulated:
        ``dims`` says which of (data-parallel replica, TP rank) vary among them.
        Cached under ``key`` when given."""
        if not self.folded:
            return ()
        cache = self._mirror_cache
        if key is not None and key in cache:
            return cache[key]
        plan = self.plan
        dps = range(plan.replicas) if "d" in dims else [0]
        tps = range(plan.tp) if "t" in dims else [0]
        groups = tuple(tuple(group_of(d, j)) for d in dps for j in tps if (d, j) != (0, 0))
        if key is not None:
            cache[key] = groups
        return groups


@dataclass
class Iteration:
    """The whole iteration as the emitters share it.

    ``dps`` / ``tps``: the data-parallel replicas and TP ranks simulated (all
    of them in full fidelity, replica 0 and TP rank 0 folded).
    ``grads_ready``: (stage, TP rank) -> layer -> the ops after which that
    layer's gradients are complete (one per simulated replica), in backward
    order (ZeRO-0/1, synchronised at the end); ``final_op``: (replica, stage, TP rank) -> the stage's last compute op.
    """

    cfg: ModelConfig
    plan: ParallelPlan
    spec_of_rank: Callable[[int], DeviceSpec]
    bld: TraceBuilder
    dps: list[int]
    tps: list[int]
    resident: dict[int, dict[str, tuple[str, int]]] = field(default_factory=dict)
    stage_of_rank: dict[int, int] = field(default_factory=dict)
    grads_ready: dict[tuple[int, int], dict[int, list[int]]] = field(default_factory=dict)
    final_op: dict[tuple[int, int, int], int] = field(default_factory=dict)
    # (stage, TP rank) -> the gradient reductions of sharded data parallelism (ZeRO-2/3), in order
    grad_syncs: dict[tuple[int, int], dict[int, None]] = field(default_factory=dict)
    # technique-specific state of the iteration, by technique (e.g. the MoE pricing caches)
    extras: dict[str, object] = field(default_factory=dict)
    _segments: dict[str, dict[str, Segment]] = field(default_factory=dict)

    def segments(self, rank: int) -> dict[str, Segment]:
        """The layer segments priced on ``rank``'s device (one pricing per device type)."""
        spec = self.spec_of_rank(rank)
        if spec.name not in self._segments:
            if self.plan.cp > 1:  # the rank's share of the sequence, attention split around its core
                from sim.parallel.emit.context import layer_segments as context_segments
                self._segments[spec.name] = context_segments(self.cfg, self.plan, spec)
            else:
                self._segments[spec.name] = layer_segments(self.cfg, self.plan, spec)
        return self._segments[spec.name]

    @property
    def layers_per_chunk(self) -> int:
        return self.cfg.layers // (self.plan.pp * self.plan.virtual_stages)

    def chunk_layers(self, stage: int, chunk: int) -> list[int]:
        """The layers of model chunk ``chunk`` on ``stage`` (Megatron's interleaved assignment)."""
        n = self.layers_per_chunk
        first = (chunk * self.plan.pp + stage) * n
        return list(range(first, first + n))


class Stage:
    """One pipeline stage of one simulated replica while its units are emitted.

    ``waits[j]``: the ops TP rank j's next compute op waits for (besides the
    previous op on its stream); ``tag`` / ``prefix``: the unit being emitted.
    """

    def __init__(self, it: Iteration, d: int, s: int):
        plan = it.plan
        self.it, self.bld, self.d, self.s = it, it.bld, d, s
        self.ranks = {j: plan.rank(d, s, j) for j in it.tps}
        self.seg = it.segments(self.ranks[it.tps[0]])
        self.tp_group = tuple(plan.rank(d, s, j) for j in range(plan.tp))   # shared by the stage's TP collectives
        self.tp_mirrors = it.bld.mirrors(lambda dd, jj: [plan.rank(dd, s, x) for x in range(plan.tp)], "d")
        self.waits: dict[int, list[int]] = {j: [] for j in it.tps}
        self.tag: dict = {}
        self.unit: tuple = (s, None, None)     # (stage, microbatch, chunk) of the unit, as ``tag``
        self.prefix = ""
        # the TP collectives around a tensor-parallel region and their bytes (sim.parallel.emit.tensor)
        self.tp_before, self.tp_after = tp_collectives(plan)
        self.tp_bytes: float | None = None
        # per use of a layer's gathered parameters (ZeRO-3), each TP rank's last op of the use
        self.param_uses: list[dict[int, int]] = []

    def begin_unit(self, kind: str, m: int, c: int) -> None:
        self.tag = {"stage": self.s, "microbatch": m, "chunk": c}
        self.unit = (self.s, m, c)
        self.prefix = f"s{self.s}.{kind}{m}.c{c}"

    def compute(self, seg_name: str, label: str, phase: str, **extra) -> None:
        """The segment on every simulated TP rank, each after its waits."""
        seg, name, waits, compute = self.seg[seg_name], f"{self.prefix}.{label}", self.waits, self.bld.compute
        s, m, c = self.unit
        for j, rank in self.ranks.items():
            compute(rank, seg, name, waits[j], phase, s, m, c, **extra)
            waits[j] = []

    def compute_each(self, segments: dict[int, Segment], label: str, phase: str, **extra) -> None:
        """A segment per simulated TP rank (they differ, e.g. by expert load), each after its waits."""
        s, m, c = self.unit
        for j, rank in self.ranks.items():
            self.bld.compute(rank, segments[j], f"{self.prefix}.{label}", self.waits[j], phase, s, m, c, **extra)
            self.waits[j] = []

    def last_ops(self) -> list[int]:
        """Every simulated TP rank's pending waits and last compute op."""
        return [x for j in self.it.tps for x in self.waits[j] + [self.bld.last_compute.get(self.ranks[j])]
                if x is not None]

    def set_waits(self, op_id: int) -> None:
        for j in self.it.tps:
            self.waits[j] = [op_id]
