"""Operator traces: the documented format every workload enters the simulator in.

A trace is a list of ops, read from JSON Lines (``.jsonl``, one JSON object
per line) or an Arrow IPC file (``.arrow``, one row per op). Field names and
types (documented in docs/trace-format.md):

==============  ==========  =============================================
field           type        meaning
==============  ==========  =============================================
id              int         unique op id
name            str         label shown in timelines
op              str         one of OP_TYPES
flops           number      floating-point operations (MAC = 2 FLOPs)
bytes_read      number      bytes read from memory
bytes_written   number      bytes written to memory
deps            list[int]   ids of ops that must finish first (any stream)
stream          int         ops on one stream run in trace order (default 0)
m, n, k         int         GEMM shape C[m,n] = A[m,k] B[k,n] (optional)
batch           int         independent GEMMs of that shape (default 1)
dtype           str         element type (default: the device's)
unit            str         preferred unit kind: sm_array, systolic_array,
                            vector, pim
tier            str         memory tier the op reads and writes
src_tier        str         copy ops: tier read from
dst_tier        str         copy ops: tier written to
tensor          str         name of the output tensor, allocated (alloc_bytes,
                            default bytes_written) on the output tier when the
                            op starts (a collective: on each member of group
                            that runs ops in the trace)
alloc_bytes     number      size of ``tensor`` when it is not bytes_written
frees           list[str]   tensors released when the op ends (a collective:
                            on every member)
layer           int         model layer, for reports
rank            int         device (cluster rank) that runs the op (default 0)
duration_s      number      a measured or precomputed compute time; when
                            given it replaces the unit's cost model
group           list[int]   collective ops: the ranks taking part
mirror_groups   list[list]  collective ops: symmetric copies running at the
                            same time (replicas not simulated in folded runs),
                            costed together with ``group`` on the topology
algorithm       str         collective ops: ring, mst, ... or auto
stage, microbatch, chunk    int   pipeline position, for reports
phase           str         fwd, bwd, recompute, optimizer, comm kind ...
ifmap_h, ifmap_w            int   conv2d: input feature map height and width
                                  (padding included, as in SCALE-Sim)
filter_h, filter_w          int   conv2d: filter height and width
channels, filters           int   conv2d: input channels and output channels
stride_h, stride_w          int   conv2d: strides (default 1; stride_w
                                  defaults to stride_h)
groups          int         conv2d: channel groups (default 1; depthwise
                            convolution: groups = channels)
==============  ==========  =============================================

A ``conv2d`` op is a convolution of ``batch`` images priced as the GEMM its
im2col / implicit-GEMM lowering gives (sim.workload.conv). A ``host`` op is
time the host thread that issues a device's work spends (framework and
Python overhead, kernel launches) before the next op it issues can start: it
takes ``duration_s`` and no device unit or memory (imported profiles use it).

Collective ops (``allreduce``, ``reduce_scatter``, ``allgather``,
``broadcast``, ``reduce``, ``scatter``, ``gather``, ``alltoall``,
``sendrecv``) appear once for the whole group; their message size is
``bytes_read`` (nccl-tests conventions) and they start when their deps
(typically the last op of every member before it) have finished.

Validation happens before any simulation and raises TraceError with the file,
the op id and what was expected.
"""

from __future__ import annotations

import json
import math
import os
from array import array
from collections import abc, deque
from functools import partial
from itertools import chain, compress, repeat
from operator import attrgetter, is_not
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.ipc as ipc

from sim.errors import TraceError

COMPUTE_OPS = ("gemm", "gemv", "attention", "elementwise", "softmax", "norm", "reduction", "conv2d")
MEMORY_OPS = ("copy",)
COMM_OPS = ("allreduce", "reduce_scatter", "allgather", "broadcast", "reduce", "scatter", "gather",
            "alltoall", "sendrecv")
HOST_OPS = ("host",)
OP_TYPES = COMPUTE_OPS + MEMORY_OPS + COMM_OPS + HOST_OPS
MATRIX_OPS = ("gemm", "gemv", "attention", "conv2d")
CONV_FIELDS = ("ifmap_h", "ifmap_w", "filter_h", "filter_w", "channels", "filters", "stride_h",
               "stride_w", "groups")
UNIT_KINDS = ("sm_array", "systolic_array", "vector", "pim")
# ops that sit on their stream on every rank of their group (a sendrecv only on its sender's)
_GROUP_STREAM_OPS = frozenset(COMM_OPS) - {"sendrecv"}


# Every field of an op, in order (the positional order of ``Op``'s arguments).
OP_FIELDS = ("id", "name", "op", "flops", "bytes_read", "bytes_written", "deps", "stream", "m", "n", "k", "batch",
             "dtype", "unit", "tier", "src_tier", "dst_tier", "tensor", "frees", "layer", "rank", "duration_s",
             "group", "mirror_groups", "algorithm", "stage", "microbatch", "chunk", "phase", "alloc_bytes",
             *CONV_FIELDS)
# The fields most ops leave at their defaults (a generated training op all of them but a few).
_RARE_FIELDS = ("m", "n", "k", "batch", "unit", "tier", "src_tier", "dst_tier", "tensor", "frees", "alloc_bytes",
                *CONV_FIELDS)
_values = attrgetter(*OP_FIELDS)
_new = object.__new__


class Op:
    """One operator of a trace (see the module docstring for each field).

    Treat it as immutable: it compares and hashes by value, field by field.
    ``Op(id, name, op, flops, bytes_read, bytes_written, deps=(), stream=0,
    ...)`` takes the fields of ``OP_FIELDS`` by position or keyword.

    An op is 19 slots (184 bytes) unless it sets one of the rare fields
    (``_RARE_FIELDS``: GEMM shape, tiers, tensors, conv2d...): those read
    their defaults from the class, and an op that sets one is an ``_OpWithRare``,
    which has slots for them too. A dataclass of all 41 fields was 344 bytes
    an op: 160 MB of a folded GPT 1T trace (a million ops), whose ops set
    none of them but for a few allocations and frees. Not a frozen class,
    whose ``object.__setattr__`` per field made construction six times slower."""

    __slots__ = tuple(f for f in OP_FIELDS if f not in _RARE_FIELDS)
    m = n = k = unit = tier = src_tier = dst_tier = tensor = alloc_bytes = None
    ifmap_h = ifmap_w = filter_h = filter_w = channels = filters = stride_h = stride_w = groups = None
    batch = 1
    frees: tuple[str, ...] = ()

    def __new__(cls, id: int, name: str, op: str, flops: float, bytes_read: float, bytes_written: float,
                deps: tuple[int, ...] = (), stream: int = 0, m: int | None = None, n: int | None = None,
                k: int | None = None, batch: int = 1, dtype: str | None = None, unit: str | None = None,
                tier: str | None = None, src_tier: str | None = None, dst_tier: str | None = None,
                tensor: str | None = None, frees: tuple[str, ...] = (), layer: int | None = None, rank: int = 0,
                duration_s: float | None = None, group: tuple[int, ...] = (),
                mirror_groups: tuple[tuple[int, ...], ...] = (), algorithm: str | None = None,
                stage: int | None = None, microbatch: int | None = None, chunk: int | None = None,
                phase: str | None = None, alloc_bytes: float | None = None, ifmap_h: int | None = None,
                ifmap_w: int | None = None, filter_h: int | None = None, filter_w: int | None = None,
                channels: int | None = None, filters: int | None = None, stride_h: int | None = None,
                stride_w: int | None = None, groups: int | None = None) -> Op:
        if m is n is k is unit is tier is src_tier is dst_tier is tensor is alloc_bytes is ifmap_h is ifmap_w \
                is filter_h is filter_w is channels is filters is stride_h is stride_w is groups is None \
                and batch == 1 and frees == ():
            return _common(Op, id, name, deps, microbatch, op, flops, bytes_read, bytes_written, stream, dtype, layer,
                           rank, duration_s, group, mirror_groups, algorithm, stage, chunk, phase)
        self = _common(_OpWithRare, id, name, deps, microbatch, op, flops, bytes_read, bytes_written, stream, dtype,
                       layer, rank, duration_s, group, mirror_groups, algorithm, stage, chunk, phase)
        self.m = m
        self.n = n
        self.k = k
        self.batch = batch
        self.unit = unit
        self.tier = tier
        self.src_tier = src_tier
        self.dst_tier = dst_tier
        self.tensor = tensor
        self.frees = frees
        self.alloc_bytes = alloc_bytes
        self.ifmap_h = ifmap_h
        self.ifmap_w = ifmap_w
        self.filter_h = filter_h
        self.filter_w = filter_w
        self.channels = channels
        self.filters = filters
        self.stride_h = stride_h
        self.stride_w = stride_w
        self.groups = groups
        return self

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Op):
            return _values(self) == _values(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(_values(self))

    def __repr__(self) -> str:
        return "Op(" + ", ".join(f"{name}={value!r}" for name, value in zip(OP_FIELDS, _values(self))) + ")"

    def __reduce__(self):
        return Op, _values(self)

    def fields(self) -> dict[str, Any]:
        """Every field by name, in ``OP_FIELDS`` order."""
        return dict(zip(OP_FIELDS, _values(self)))

    def replace(self, **changes: Any) -> Op:
        """A copy with ``changes`` (as ``dataclasses.replace``)."""
        return Op(**{**self.fields(), **changes})

    @property
    def category(self) -> str:
        if self.op in COMM_OPS:
            return "comm"
        if self.op in HOST_OPS:
            return "host"
        return "memory" if self.op in MEMORY_OPS else "compute"

    def to_record(self) -> dict[str, Any]:
        record = {"id": self.id, "name": self.name, "op": self.op, "flops": self.flops,
                  "bytes_read": self.bytes_read, "bytes_written": self.bytes_written,
                  "deps": list(self.deps), "stream": self.stream}
        for key in ("m", "n", "k", "dtype", "unit", "tier", "src_tier", "dst_tier",
                    "tensor", "layer", "duration_s", "algorithm", "stage", "microbatch", "chunk",
                    "phase", "alloc_bytes") + CONV_FIELDS:
            value = getattr(self, key)
            if value is not None:
                record[key] = value
        if self.batch != 1:
            record["batch"] = self.batch
        if self.rank:
            record["rank"] = self.rank
        if self.frees:
            record["frees"] = list(self.frees)
        if self.group:
            record["group"] = list(self.group)
        if self.mirror_groups:
            record["mirror_groups"] = [list(g) for g in self.mirror_groups]
        return record


class _OpWithRare(Op):
    """An op that sets a rare field (``Op``): slots for those too."""

    __slots__ = _RARE_FIELDS


def _common(cls: type, id, name, deps, microbatch, op, flops, bytes_read, bytes_written, stream, dtype, layer, rank,
            duration_s, group, mirror_groups, algorithm, stage, chunk, phase) -> Op:
    """A new ``cls`` op with its common fields (``Op.__slots__``) set; the
    fields that differ between a unit's copies first (sim.parallel.emit.replay)."""
    self = _new(cls)
    self.id = id
    self.name = name
    self.op = op
    self.flops = flops
    self.bytes_read = bytes_read
    self.bytes_written = bytes_written
    self.deps = deps
    self.stream = stream
    self.dtype = dtype
    self.layer = layer
    self.rank = rank
    self.duration_s = duration_s
    self.group = group
    self.mirror_groups = mirror_groups
    self.algorithm = algorithm
    self.stage = stage
    self.microbatch = microbatch
    self.chunk = chunk
    self.phase = phase
    return self


# An op that sets no rare field, from its common fields in ``_common``'s order: the quickest way to
# build one (0.4 us; ``Op()`` with keywords 1 us).
plain_op = partial(_common, Op)


def make_op(id: int, name: str, op: str, flops: float, bytes_read: float, bytes_written: float,
            deps: tuple[int, ...], stream: int, dtype: str | None, tensor: str | None, frees: tuple[str, ...],
            layer: int | None, rank: int, duration_s: float | None, group: tuple[int, ...],
            mirror_groups: tuple[tuple[int, ...], ...], algorithm: str | None, stage: int | None,
            microbatch: int | None, chunk: int | None, phase: str | None, alloc_bytes: float | None) -> Op:
    """``Op(id=id, name=name, ...)`` for the fields generated training traces
    set, the others at their defaults: most of a million ops without the
    checks of ``Op()``'s 41 arguments (0.4 against 1 us an op with keywords)."""
    if tensor is None and alloc_bytes is None and frees == ():
        return _common(Op, id, name, deps, microbatch, op, flops, bytes_read, bytes_written, stream, dtype, layer,
                       rank, duration_s, group, mirror_groups, algorithm, stage, chunk, phase)
    return Op(id, name, op, flops, bytes_read, bytes_written, deps, stream, dtype=dtype, tensor=tensor, frees=frees,
              layer=layer, rank=rank, duration_s=duration_s, group=group, mirror_groups=mirror_groups,
              algorithm=algorithm, stage=stage, microbatch=microbatch, chunk=chunk, phase=phase,
              alloc_bytes=alloc_bytes)


TRACE_SCHEMA = pa.schema([
    ("id", pa.int64()), ("name", pa.string()), ("op", pa.string()),
    ("flops", pa.float64()), ("bytes_read", pa.float64()), ("bytes_written", pa.float64()),
    ("deps", pa.list_(pa.int64())), ("stream", pa.int64()),
    ("m", pa.int64()), ("n", pa.int64()), ("k", pa.int64()), ("batch", pa.int64()),
    ("dtype", pa.string()), ("unit", pa.string()), ("tier", pa.string()),
    ("src_tier", pa.string()), ("dst_tier", pa.string()), ("tensor", pa.string()),
    ("frees", pa.list_(pa.string())), ("layer", pa.int64()), ("rank", pa.int64()),
    ("duration_s", pa.float64()), ("group", pa.list_(pa.int64())),
    ("mirror_groups", pa.list_(pa.list_(pa.int64()))), ("algorithm", pa.string()),
    ("stage", pa.int64()), ("microbatch", pa.int64()), ("chunk", pa.int64()), ("phase", pa.string()),
    ("alloc_bytes", pa.float64()),
    *((name, pa.int64()) for name in CONV_FIELDS),
])

_REQUIRED = ("id", "name", "op", "bytes_read", "bytes_written")
_INT_FIELDS = ("m", "n", "k", "batch", "layer", "stream", "rank", "stage", "microbatch", "chunk") + CONV_FIELDS
_POSITIVE_FIELDS = ("batch",) + CONV_FIELDS
_STR_FIELDS = ("dtype", "unit", "tier", "src_tier", "dst_tier", "tensor", "algorithm", "phase")
FIELDS = frozenset(TRACE_SCHEMA.names)
SHAPED_OPS = ("gemm", "gemv")   # flops = 2 m n k batch, checked when the shape is given

# Bounds on a trace's scalars, so that sums over millions of ops stay finite
# and no size overflows int64 columns: far beyond any real operator.
INT64_MIN, INT64_MAX = -2**63, 2**63 - 1
MAX_FLOPS = 1e30          # one op; 1e12 s at 1 EFLOP/s
MAX_BYTES = 2**62         # as sim.units.parse_bytes
MAX_SECONDS = 1e9         # a duration_s: ~32 years
MAX_RANK = 2**20
MAX_TEXT = 1000           # characters of a name or label
FLOPS_TOLERANCE = 1e-6    # relative: flops may differ from 2 m n k batch by rounding only
@dataclass(frozen=True)
class Trace:
    """A validated trace: ops in file order, indexed by id."""

    path: str
    ops: tuple[Op, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_edges", None)
        object.__setattr__(self, "_positions", None)
        object.__setattr__(self, "_ranks", None)

    def _index(self) -> _IdIndex:
        """Op id -> position in ``ops``, made once."""
        if self._positions is None:  # type: ignore[attr-defined]
            object.__setattr__(self, "_positions", _IdIndex(self.ops))
        return self._positions  # type: ignore[attr-defined]

    def edge_indices(self):
        """Precedence edges (see ``_edges``, in its order) as two numpy arrays
        of op positions (source, destination; int32 below 2^30 ops), computed once per trace. Every
        dep must name an op of the trace (``validate_ops`` checks first)."""
        if self._edges is None:  # type: ignore[attr-defined]
            object.__setattr__(self, "_edges", _edge_arrays(self.ops, _dep_positions(self.ops)[1]))
        return self._edges  # type: ignore[attr-defined]

    def release_edges(self) -> None:
        """Forget the edge arrays ``edge_indices`` keeps (two int32 arrays of
        every edge: 36 MB on a folded GPT 1T trace); its next call builds them
        again. ``sim.run`` releases them once a run's bubbles are found, their
        last use, before the other tables are built."""
        object.__setattr__(self, "_edges", None)

    def op(self, op_id: int) -> Op:
        index = self._index()
        if index.dense:
            try:
                if op_id >= 0:
                    return index.ops_by_id[op_id]
            except (IndexError, TypeError):
                pass
            raise KeyError(op_id)
        return self.ops[index.positions[op_id]]

    def positions_of(self, op_ids):
        """The positions in ``ops`` of the ops with ids ``op_ids`` (a numpy int
        array); KeyError for an id the trace lacks."""
        import numpy as np
        index = self._index()
        op_ids = np.asarray(op_ids, dtype=np.int64)
        if not index.dense:
            return np.fromiter((index.positions[i] for i in op_ids.tolist()), dtype=np.int64, count=len(op_ids))
        bad = (op_ids < 0) | (op_ids >= len(index.positions))
        if bad.any():
            raise KeyError(int(op_ids[bad][0]))
        return np.frombuffer(index.positions, dtype=np.int64)[op_ids]

    def by_id(self, values: Sequence) -> Mapping[int, Any]:
        """``values`` (one per op, in trace order) looked up by op id, without
        a dictionary per sequence (a million-op trace)."""
        return _ByOpId(values, self._index())

    def find(self, op_id: int) -> Op | None:
        """The op with id ``op_id``, None if the trace has none."""
        index = self._index()
        if not index.dense:
            position = index.positions.get(op_id)
            return None if position is None else self.ops[position]
        try:
            return index.ops_by_id[op_id] if op_id >= 0 else None
        except (IndexError, TypeError):
            return None

    def streams(self) -> dict[tuple[int, int], list[Op]]:
        """Ops per (rank, stream), in ascending order, ops in trace order."""
        out: dict[tuple[int, int], list[Op]] = {}
        for op in self.ops:
            out.setdefault((op.rank, op.stream), []).append(op)
        return dict(sorted(out.items()))

    @property
    def ranks(self) -> list[int]:
        """Ranks that run compute or memory ops, ascending; found once per trace
        (a walk over every op: 0.1 s on each of the two calls of a folded GPT 1T
        run's set-up before it was kept)."""
        if self._ranks is None:  # type: ignore[attr-defined]
            ranks = sorted({op.rank for op in self.ops if op.op not in COMM_OPS})
            object.__setattr__(self, "_ranks", tuple(ranks))
        return list(self._ranks)  # type: ignore[attr-defined]


class _IdIndex:
    """Op id -> position in the trace. Generated traces number their ops 0..n-1
    in some order: then ``positions`` is an ``array('q')`` indexed by id and
    ``ops_by_id`` a list of the ops by id (8 bytes an op each, no new objects;
    dictionaries id -> op and id -> position took about 110 bytes an op);
    otherwise ``positions`` is a dictionary. Lookups are inlined by its users
    (``Trace.op``, ``_ByOpId``): they run once per bubble and op record."""

    __slots__ = ("dense", "positions", "ops_by_id", "ops")

    def __init__(self, ops: Sequence[Op], ids=None, by_id=None):
        """``ids`` and their stable argsort ``by_id`` if already at hand."""
        import numpy as np
        ids = _ids(ops) if ids is None else ids
        by_id = np.argsort(ids, kind="stable") if by_id is None else by_id
        self.ops = ops
        self.dense = bool(len(ids)) and np.array_equal(ids[by_id], np.arange(len(ids)))
        if self.dense:
            self.positions = array("q", by_id.astype(np.int64).tobytes())
            self.ops_by_id = np.fromiter(ops, dtype=object, count=len(ops))[by_id].tolist() if len(ops) else []
        else:
            self.positions = {op.id: i for i, op in enumerate(ops)}
            self.ops_by_id = None


class _ByOpId(abc.Mapping):
    """A read-only mapping from op id to the value at that op's position."""

    __slots__ = ("values", "index")

    def __init__(self, values: Sequence, index: _IdIndex):
        self.values, self.index = values, index

    def __getitem__(self, op_id: int):
        index = self.index
        if index.dense:
            try:
                if op_id >= 0:
                    return self.values[index.positions[op_id]]
            except (IndexError, TypeError):
                pass
            raise KeyError(op_id)
        return self.values[index.positions[op_id]]

    def __iter__(self):
        return (op.id for op in self.index.ops) if self.index.dense else iter(self.index.positions)

    def __len__(self) -> int:
        return len(self.index.positions)


def _fail(path: str, where: str, message: str) -> TraceError:
    return TraceError(f"{path}: {where}: {message}")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_FROM_RECORD = object()


class _Record:
    """Typed access to one record's fields; each failure is one TraceError
    naming the file, the line or row, the op id and the field."""

    __slots__ = ("record", "path", "where")

    def __init__(self, record: Mapping[str, Any], path: str, where: str):
        self.record, self.path, self.where = record, path, where

    def fail(self, key: str | None, message: str) -> TraceError:
        return _fail(self.path, self.where, f"field {key!r}: {message}" if key else message)

    def integer(self, key: str, value: Any, least: int = INT64_MIN, most: int = INT64_MAX) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise self.fail(key, f"expected an integer, got {_short(value)}")
        if not least <= value <= most:
            if value < least and least in (0, 1):
                raise self.fail(key, f"expected {'a positive' if least else 'a non-negative'} integer, "
                                     f"got {value}")
            raise self.fail(key, f"expected an integer in [{least}, {most}], got {value}")
        return value

    def number(self, key: str, most: float) -> float:
        value = self.record[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"expected a number, got {_short(value)}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise self.fail(key, f"expected a finite number, got {_short(value)}")
        if number < 0:
            raise self.fail(key, f"expected a non-negative number, got {_short(value)}")
        if number > most:
            raise self.fail(key, f"expected at most {most:g}, got {_short(value)}")
        return number

    def optional_number(self, key: str, most: float) -> float | None:
        return None if self.record.get(key) is None else self.number(key, most)

    def optional_int(self, key: str) -> int | None:
        value = self.record.get(key)
        if value is None:
            return None
        least = 1 if key in _POSITIVE_FIELDS else 0
        most = MAX_RANK if key == "rank" else INT64_MAX
        if type(value) is int and least <= value <= most:     # the usual case, quickly
            return value
        return self.integer(key, value, least, most)

    def text(self, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a non-empty string, got {_short(value)}")
        if len(value) > MAX_TEXT:
            raise self.fail(key, f"expected at most {MAX_TEXT} characters, got {len(value)}")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self.record.get(key)
        return None if value is None else self.text(key, value)

    def int_list(self, key: str, least: int = INT64_MIN, most: int = INT64_MAX,
                 value: Any = _FROM_RECORD, what: str = "integer op ids") -> tuple[int, ...]:
        """A list of integers: the field ``key``, or ``value`` (an item of it)."""
        if value is _FROM_RECORD:
            value = self.record.get(key)
            if value is None:
                return ()
        if not isinstance(value, (list, tuple)):
            raise self.fail(key, f"expected a list of {what}, got {_short(value)}")
        if all(type(v) is int for v in value):                # the usual case, quickly
            if not value or (least <= min(value) and max(value) <= most):
                return tuple(value)
        elif any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
            raise self.fail(key, f"expected a list of {what}, got {_short(value)}")
        return tuple(self.integer(key, v, least, most) for v in value)

    def rank_list(self, key: str, value: Any = _FROM_RECORD) -> tuple[int, ...]:
        ranks = self.int_list(key, 0, MAX_RANK, value, "ranks")
        if len(set(ranks)) != len(ranks):
            raise self.fail(key, f"a rank appears twice in {_short(list(ranks))}")
        return ranks

    def text_list(self, key: str) -> tuple[str, ...]:
        value = self.record.get(key)
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)):
            raise self.fail(key, f"expected a list of tensor names, got {_short(value)}")
        names = tuple(self.text(key, v) for v in value)
        if len(set(names)) != len(names):
            raise self.fail(key, f"a tensor is listed twice in {_short(list(names))}")
        return names


def _op_from_record(record: Mapping[str, Any], path: str, where: str) -> Op:
    if not isinstance(record, Mapping):
        raise _fail(path, where, f"expected a JSON object, got {type(record).__name__}")
    r = _Record(record, path, where)
    op_id = record.get("id")
    if op_id is None:
        raise r.fail(None, "missing required field 'id'")
    op_id = r.integer("id", op_id)
    where = r.where = f"{where}, op {op_id}"
    for key in _REQUIRED:
        if record.get(key) is None:
            raise r.fail(None, f"missing required field {key!r}")
    unknown = () if FIELDS.issuperset(record) else \
        [key for key in record if key not in FIELDS and not str(key).startswith("x_")]
    if unknown:
        raise r.fail(None, f"unknown field {_short(unknown[0])} (fields of your own start with x_; "
                           f"see docs/trace-format.md)")
    name = record["name"]
    if not isinstance(name, str) or len(name) > MAX_TEXT:
        raise r.fail("name", f"expected a string of at most {MAX_TEXT} characters, got {_short(name)}")
    kind = record["op"]
    if kind not in OP_TYPES:
        raise r.fail("op", f"unknown op type {_short(kind)}; expected one of {list(OP_TYPES)}")
    ints = {key: r.optional_int(key) for key in _INT_FIELDS}
    strs = {key: r.optional_text(key) for key in _STR_FIELDS}
    if strs["unit"] is not None and strs["unit"] not in UNIT_KINDS:
        raise r.fail("unit", f"unknown unit kind {strs['unit']!r}; expected one of {list(UNIT_KINDS)}")
    if kind == "copy" and not strs["dst_tier"]:
        raise r.fail(None, "copy ops need 'dst_tier' (and 'src_tier' unless it is the device default)")
    if kind == "conv2d":
        from sim.workload.conv import check_conv2d
        problem = check_conv2d(ints)
        if problem:
            raise r.fail(None, problem)
    batch = ints["batch"] if ints["batch"] is not None else 1
    flops = _flops(r, kind, ints["m"], ints["n"], ints["k"], batch)
    group = r.rank_list("group")
    mirrors = record.get("mirror_groups") or ()
    if not isinstance(mirrors, (list, tuple)):
        raise r.fail("mirror_groups", f"expected a list of rank lists, got {_short(mirrors)}")
    mirrors = tuple(r.rank_list("mirror_groups", g) for g in mirrors)
    if any(len(g) != len(group) for g in mirrors):
        raise r.fail("mirror_groups", "expected rank lists each as long as 'group'")
    frees = r.text_list("frees")
    alloc = r.optional_number("alloc_bytes", MAX_BYTES)
    if kind in COMM_OPS:
        if not group:
            raise r.fail(None, f"{kind} ops need 'group', the list of ranks taking part")
        if strs["tensor"] or frees or alloc is not None:
            raise r.fail(None, f"a {kind} op cannot allocate or free tensors (tensor, alloc_bytes, frees)")
    if alloc is not None and not strs["tensor"]:
        raise r.fail("alloc_bytes", "needs 'tensor', the tensor it sizes")
    duration = r.optional_number("duration_s", MAX_SECONDS)
    if kind in HOST_OPS and duration is None:
        raise r.fail(None, "host ops need 'duration_s', the seconds the host thread spends")
    return Op(id=op_id, name=name, op=kind, flops=flops, bytes_read=r.number("bytes_read", MAX_BYTES),
              bytes_written=r.number("bytes_written", MAX_BYTES),
              deps=r.int_list("deps"), stream=ints["stream"] or 0, m=ints["m"], n=ints["n"], k=ints["k"],
              batch=batch, layer=ints["layer"], frees=frees, rank=ints["rank"] or 0,
              duration_s=duration, group=group, mirror_groups=mirrors, stage=ints["stage"],
              microbatch=ints["microbatch"], chunk=ints["chunk"], alloc_bytes=alloc, **strs,
              **{key: ints[key] for key in CONV_FIELDS})


def _flops(r: _Record, kind: str, m, n, k, batch: int) -> float:
    """The op's FLOPs. A GEMM or GEMV with its shape must agree with
    2 m n k batch (up to rounding); without ``flops`` it is derived from it."""
    shape = (m, n, k)
    given = r.record.get("flops")
    if any(x is not None for x in shape) and any(x is None for x in shape):
        raise r.fail(None, "give all of m, n and k (the GEMM shape) or none of them")
    if kind in SHAPED_OPS and m is not None:
        expected = 2.0 * m * n * k * batch
        if expected > MAX_FLOPS:
            raise r.fail(None, f"the shape m={m}, n={n}, k={k}, batch={batch} is {expected:.3g} FLOPs; "
                               f"at most {MAX_FLOPS:g}")
        if given is None:
            return expected
        flops = r.number("flops", MAX_FLOPS)
        if abs(flops - expected) > FLOPS_TOLERANCE * expected + 0.5:
            raise r.fail("flops", f"{flops:.17g} disagrees with 2 m n k batch = 2 x {m} x {n} x {k} x "
                                  f"{batch} = {expected:.17g} (leave flops out to derive it)")
        return flops
    if given is None:
        raise r.fail(None, "missing required field 'flops'")
    return r.number("flops", MAX_FLOPS)


def ops_from_records(records: Iterable[tuple[str, Mapping[str, Any]]], path: str) -> Trace:
    """Build and validate a Trace from (location, record) pairs."""
    ops = [_op_from_record(record, path, where) for where, record in records]
    return validate_ops(ops, path)


def validate_ops(ops: Sequence[Op], path: str) -> Trace:
    """Check ids, dependencies, tensors and acyclicity; return the Trace or raise TraceError."""
    import numpy as np
    ids = _ids(ops)
    by_id = _dense_order(ids)
    if by_id is None:
        by_id = np.argsort(ids, kind="stable")
        if (ids[by_id][1:] == ids[by_id][:-1]).any():
            seen: set[int] = set()
            for op in ops:
                if op.id in seen:
                    raise _fail(path, f"op {op.id}", "duplicate id")
                seen.add(op.id)
    owner, dep_pos = _dep_positions(ops, ids, by_id)
    bad = np.flatnonzero((dep_pos < 0) | (dep_pos == owner))
    if len(bad):
        op = ops[int(owner[bad[0]])]
        if dep_pos[bad[0]] < 0:
            dep = int(_flat_deps(ops)[bad[0]])
            raise _fail(path, f"op {op.id}", f"depends on unknown op {dep}")
        raise _fail(path, f"op {op.id}", "depends on itself")
    trace = Trace(path=path, ops=tuple(ops))
    object.__setattr__(trace, "_positions", _IdIndex(trace.ops, ids, by_id))
    ranks = np.fromiter(map(attrgetter("rank"), ops), dtype=np.int64, count=len(ops))
    src, dst = _edge_arrays(ops, dep_pos, owner, ranks)
    object.__setattr__(trace, "_edges", (src, dst))
    if not _acyclic(len(ops), src, dst, np.flatnonzero(ranks[1:] != ranks[:-1]) + 1):
        cycle = _find_cycle(ops)
        names = " -> ".join(f"{i} ({trace.op(i).name})" for i in cycle)
        raise _fail(path, f"op {cycle[0]}", f"dependency cycle (counting stream order): {names}")
    _check_tensors(trace)
    return trace


def _check_tensors(trace: Trace) -> None:
    """The memory ledger frees only what is allocated: each free of a tensor
    (per rank) follows an op producing it (a path of deps and stream order),
    and a tensor freed more than once is freed in order, produced again after
    each free before the next."""
    ops = trace.ops
    producers: dict[tuple[int, str], list[int]] = {}
    frees: dict[tuple[int, str], list[int]] = {}
    simulated = set(map(attrgetter("rank"), ops))
    # only an op with a rare field set (_OpWithRare) can have a tensor or frees: found by C-level maps
    for index in compress(range(len(ops)), map(is_not, map(type, ops), repeat(Op))):
        op = ops[index]
        if not op.tensor and not op.frees:
            continue
        # a collective allocates and frees on every member of its group that runs ops here
        ranks = [r for r in op.group if r in simulated] if op.op in COMM_OPS and op.group else (op.rank,)
        for rank in ranks:
            if op.tensor:
                producers.setdefault((rank, op.tensor), []).append(index)
            for tensor in op.frees:
                frees.setdefault((rank, tensor), []).append(index)
    ancestry = _Ancestry(trace)
    position = None
    for (rank, tensor), freers in frees.items():
        made = producers.get((rank, tensor))
        if not made:
            where = f" on rank {rank}" if rank else ""
            raise _fail(trace.path, f"op {ops[freers[0]].id}",
                        f"frees tensor {tensor!r} that no op produces{where}")
        if len(freers) > 1:
            if position is None:
                position = {op_id: i for i, op_id in enumerate(topological_order(ops) or [])}
            freers = sorted(freers, key=lambda i: position[ops[i].id])
        previous = None
        for index in freers:
            if previous is not None and not ancestry.precedes(previous, index):
                raise _fail(trace.path, f"op {ops[index].id}",
                            f"frees tensor {tensor!r}, which op {ops[previous].id} frees too, and neither "
                            f"runs after the other (deps or stream order)")
            if not any((previous is None or ancestry.precedes(previous, p)) and ancestry.precedes(p, index)
                       for p in made):
                shown = ", ".join(str(ops[p].id) for p in made[:3])
                raise _fail(trace.path, f"op {ops[index].id}",
                            f"frees tensor {tensor!r} before it exists: no op producing it ({shown}) comes "
                            f"before it through deps or stream order" if previous is None else
                            f"frees tensor {tensor!r} again: no op produces it between op "
                            f"{ops[previous].id}, which freed it, and this one")
            previous = index


class _Ancestry:
    """Whether one op precedes another in the precedence graph. Quick answers
    for the usual cases (same rank and stream in trace order, a direct dep);
    otherwise a backward search from the later op."""

    def __init__(self, trace: Trace):
        self.trace = trace
        self.preds: list[list[int]] | None = None

    def precedes(self, a: int, b: int) -> bool:
        ops = self.trace.ops
        first, second = ops[a], ops[b]
        if a == b:
            return False
        if first.rank == second.rank and first.stream == second.stream and a < b \
                and first.op not in COMM_OPS and second.op not in COMM_OPS:
            return True
        if first.id in second.deps:
            return True
        if self.preds is None:
            self.preds = [[] for _ in ops]
            src, dst = self.trace.edge_indices()
            for x, y in zip(src.tolist(), dst.tolist()):
                self.preds[y].append(x)
        stack, visited = [b], {b}
        while stack:
            node = stack.pop()
            for pred in self.preds[node]:
                if pred == a:
                    return True
                if pred not in visited:
                    visited.add(pred)
                    stack.append(pred)
        return False


def _acyclic(count: int, src, dst, breaks=()) -> bool:
    """Whether the precedence graph (edge arrays of op positions) has no cycle:
    trace order is a topological order if every edge goes from an earlier op
    to a later one; else ``_runs_acyclic`` may prove it; else Kahn's loop over
    every op (``_kahn``) decides."""
    backward = src > dst
    if count == 0 or len(src) == 0 or not backward.any():
        return True
    return _runs_acyclic(count, src, dst, backward, breaks) or _kahn(count, src, dst)


def _runs_acyclic(count: int, src, dst, backward, breaks=(), shortest: int = 4) -> bool:
    """True if the graph is proven acyclic through runs of consecutive ops;
    False if not proven (it may still be acyclic).

    A run starts at each backward edge's destination, after each one's
    source and at ``breaks`` (validate_ops: where the rank changes; in a
    folded pipeline a run is then a stage's backward unit or the forward units
    between two). If no backward edge stays inside a run (so every edge inside
    one goes forward) and the graph of runs is acyclic, so is the trace: a
    cycle of ops would either stay in one run, impossible, or make a cycle of
    runs. A folded GPT 1T trace has 65k runs: Kahn's loop over them, not over
    a million ops (0.5 -> 0.13 s). Runs shorter than ``shortest`` ops on
    average (a full-fidelity trace's ranks alternate) are not worth trying."""
    import numpy as np
    cuts = np.unique(np.concatenate([dst[backward], src[backward] + 1, np.asarray(breaks, dtype=src.dtype)]))
    if len(cuts) * shortest > count:
        return False
    run = np.searchsorted(cuts, np.arange(count), side="right")          # each op's run
    run_src, run_dst = run[src], run[dst]
    del run
    if (run_src[backward] == run_dst[backward]).any():
        return False
    between = run_src != run_dst
    runs = len(cuts) + 1
    pairs = np.unique(run_src[between] * runs + run_dst[between])
    return _kahn(runs, pairs // runs, pairs % runs)


def _kahn(count: int, src, dst) -> bool:
    """Kahn's algorithm on edge arrays: each node's successors a slice of one
    list sorted by source, a stack of nodes whose predecessors are all done.
    (Peeling whole source layers with numpy cost a dozen numpy calls per
    layer, and generated traces are tens of thousands of layers deep.) A
    repeated edge next to its copy (a collective's stream predecessor on each
    member rank, which ``_edges`` lists per member) is looked at once."""
    import numpy as np
    if count == 0 or len(src) == 0:
        return True
    repeated = np.zeros(len(src), dtype=bool)
    repeated[1:] = (src[1:] == src[:-1]) & (dst[1:] == dst[:-1])
    if repeated.any():
        src, dst = src[~repeated], dst[~repeated]
    order = np.argsort(src, kind="stable")
    bounds = np.searchsorted(src[order], np.arange(count + 1)).tolist()
    # successors as references to one int object per node (``tolist`` made one per edge: 64 MB on 2M edges)
    targets = np.fromiter(range(count), dtype=object, count=count)[dst[order]].tolist()
    del order
    indegree = np.bincount(dst, minlength=count).tolist()
    stack = np.flatnonzero(np.bincount(dst, minlength=count) == 0).tolist()
    pop, push = stack.pop, stack.append
    done = 0
    while stack:
        node = pop()
        done += 1
        for nxt in targets[bounds[node]:bounds[node + 1]]:
            left = indegree[nxt] - 1
            indegree[nxt] = left
            if not left:
                push(nxt)
    return done == count


def _dense_order(ids):
    """When ``ids`` are a permutation of 0..n-1 (generated traces), their
    stable argsort, made in O(n) as the inverse permutation; else None."""
    import numpy as np
    count = len(ids)
    if not count or ids.min() != 0 or ids.max() != count - 1:
        return None
    if not (np.bincount(ids, minlength=count) == 1).all():
        return None
    order = np.empty(count, dtype=np.int64)
    order[ids] = np.arange(count, dtype=np.int64)
    return order


def _ids(ops: Sequence[Op]):
    import numpy as np
    return np.fromiter(map(attrgetter("id"), ops), dtype=np.int64, count=len(ops))


def _flat_deps(ops: Sequence[Op]):
    import numpy as np
    return np.fromiter(chain.from_iterable(map(attrgetter("deps"), ops)), dtype=np.int64)


def _dep_positions(ops: Sequence[Op], ids=None, by_id=None):
    """Every dep of every op, flattened in trace order: (position of the op
    having it, position of the op it names or -1 if no op has that id).
    ``ids``: the ops' ids, ``by_id``: their argsort, when already computed."""
    import numpy as np
    ids = _ids(ops) if ids is None else ids
    counts = np.fromiter(map(len, map(attrgetter("deps"), ops)), dtype=np.int64, count=len(ops))
    owner = np.repeat(np.arange(len(ops), dtype=np.int64), counts)
    flat = _flat_deps(ops)
    if not len(ids):
        return owner, np.full(len(flat), -1, dtype=np.int64)
    order = np.argsort(ids, kind="stable") if by_id is None else by_id
    if np.array_equal(ids[order], np.arange(len(ids))):          # ids 0..n-1: index by id
        known = (flat >= 0) & (flat < len(ids))
        return owner, np.where(known, order[np.where(known, flat, 0)], -1)
    found = np.minimum(np.searchsorted(ids, flat, sorter=order), len(ids) - 1)
    position = order[found]
    return owner, np.where(ids[position] == flat, position, -1)


def _edge_arrays(ops: Sequence[Op], dep_pos, owner=None, ranks=None):
    """``_edges`` as arrays of op positions (source, destination), in the same
    order: per op in trace order, its deps, then its stream predecessor on
    each member rank. Ids must be unique and every dep known (``dep_pos``,
    ``owner``: as ``_dep_positions`` gives them; ``ranks``: the ops' ranks
    as an int64 array, if already at hand).

    Built from numpy columns of C-level maps over the ops, one sort of the
    (op, member rank) rows by stream and scatters (a list of (rank,) tuples, a
    lexsort of the rows and one of the edges took 440 MB on a folded GPT 1T
    trace: 4.6M edges). Positions are int32 when the trace has fewer than
    2^30 ops (every trace that fits in memory): half the bytes of int64,
    36 MB less held by a folded GPT 1T trace (4.6M edges), whose edges its
    Trace keeps for the simulation's set-up and its bubbles' causes."""
    import numpy as np
    if owner is None:
        owner = _dep_positions(ops)[0]
    count = len(ops)
    later_op, earlier_op = _stream_predecessors(ops, ranks)
    # each op's edges in one run: its deps, then its stream predecessors; both parts are in op order
    deps_of = np.bincount(owner, minlength=count)
    streams_of = np.bincount(later_op, minlength=count)
    position = np.int32 if count < 2**30 else np.int64
    src = np.empty(len(owner) + len(later_op), dtype=position)
    # a dep's slot: its index among all deps plus the stream edges of the ops before its op; a stream
    # edge's: its index among stream edges plus the deps of its op and of the ops before
    src[np.arange(len(owner)) + (np.cumsum(streams_of) - streams_of)[owner]] = dep_pos
    src[np.arange(len(later_op)) + np.cumsum(deps_of)[later_op]] = earlier_op
    return src, np.repeat(np.arange(count, dtype=position), deps_of + streams_of)


def _stream_predecessors(ops: Sequence[Op], ranks=None):
    """(op, its stream predecessor on a member rank) as two arrays of op
    positions, in op order and per op in member order. An op's members: a
    collective's group (but a sendrecv's), else the op's rank. ``ranks``:
    the ops' ranks (int64), if already at hand."""
    import numpy as np
    count = len(ops)
    groups = list(map(attrgetter("group"), ops))
    on_group = np.fromiter(map(_GROUP_STREAM_OPS.__contains__, map(attrgetter("op"), ops)), dtype=bool, count=count)
    sizes = np.fromiter(map(len, groups), dtype=np.int64, count=count)
    on_group &= sizes > 0
    widths = np.where(on_group, sizes, 1)
    # one row per (op, member rank); positions and, when they fit, ranks in 32 bits (a folded GPT 1T trace
    # has 3.7M rows: 15 MB a column less)
    at = np.repeat(np.arange(count, dtype=np.int32 if count < 2**31 else np.int64), widths)
    if ranks is None:
        ranks = np.fromiter(map(attrgetter("rank"), ops), dtype=np.int64, count=count)
    rank = np.repeat(ranks, widths)
    rank[np.repeat(on_group, widths)] = np.fromiter(chain.from_iterable(compress(groups, on_group.tolist())),
                                                    dtype=np.int64)
    del groups, on_group, sizes, widths
    stream = np.fromiter(map(attrgetter("stream"), ops), dtype=np.int64, count=count)
    streams = int(stream.max()) + 1 if count else 1
    if count and int(rank.max()) * streams + streams <= 1 << 16 and int(rank.min()) >= 0:
        # one 16-bit key per (rank, stream): numpy radix-sorts it (a tenth of a lexsort's time)
        key = rank.astype(np.uint16)
        del rank
        key *= streams
        key += stream.astype(np.uint16)[at]
        del stream
        row = np.argsort(key, kind="stable")
        key = key[row]
        same = key[1:] == key[:-1]
        del key
    else:
        stream = stream[at]
        row = np.lexsort((np.arange(len(at)), stream, rank))
        same = (rank[row[1:]] == rank[row[:-1]]) & (stream[row[1:]] == stream[row[:-1]])
        del rank, stream
    op_of_row = at[row]                                               # rows by (rank, stream), in trace order
    same &= op_of_row[1:] != op_of_row[:-1]
    previous = np.full(len(at), -1, dtype=at.dtype)                  # per row: its stream predecessor's op
    previous[row[1:][same]] = op_of_row[:-1][same]
    del row, same, op_of_row
    has = previous >= 0
    return at[has], previous[has]


def _edges(ops: Sequence[Op]) -> Iterable[tuple[int, int]]:
    """Precedence edges: explicit deps and each op's stream predecessor.

    Streams are per rank (stream 0 of rank 3 is not stream 0 of rank 4). A
    collective sits on its stream on every rank of its ``group``, as
    collectives issued on one communicator stream are ordered on each member;
    a point-to-point ``sendrecv`` only on its sender's (``rank``) stream.
    """
    last_on_stream: dict[tuple[int, int], int] = {}
    for op in ops:
        for dep in op.deps:
            yield dep, op.id
        members = op.group if op.op in COMM_OPS and op.op != "sendrecv" and op.group else (op.rank,)
        for rank in members:
            key = (rank, op.stream)
            previous = last_on_stream.get(key)
            if previous is not None and previous != op.id:
                yield previous, op.id
            last_on_stream[key] = op.id


def topological_order(ops: Sequence[Op]) -> list[int] | None:
    """Kahn's algorithm over deps and stream order; None if there is a cycle."""
    successors: dict[int, list[int]] = {op.id: [] for op in ops}
    indegree = {op.id: 0 for op in ops}
    for src, dst in _edges(ops):
        successors[src].append(dst)
        indegree[dst] += 1
    queue = deque(op.id for op in ops if indegree[op.id] == 0)
    order = []
    while queue:
        node = queue.popleft()
        order.append(node)
        for nxt in successors[node]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                queue.append(nxt)
    return order if len(order) == len(ops) else None


def _find_cycle(ops: Sequence[Op]) -> list[int]:
    """The ids along one dependency cycle (the first id repeated at the end),
    by networkx's ``find_cycle``: an error path only, so networkx is imported
    here (at module level it cost every run 0.13 s and 19 MB resident)."""
    import networkx as nx
    graph = nx.DiGraph()
    graph.add_edges_from(_edges(ops))
    cycle = nx.find_cycle(graph)
    return [edge[0] for edge in cycle] + [cycle[0][0]]


def critical_path(trace: Trace, weight: Mapping[int, float] | None = None) -> tuple[float, list[int]]:
    """Longest path through the precedence graph.

    ``weight`` maps op id to its cost (default: 1 per op, so the length is in
    ops). Returns (length, op ids on the path).
    """
    ops = trace.ops
    preds: dict[int, list[int]] = {op.id: [] for op in ops}
    for src, dst in _edges(ops):
        preds[dst].append(src)
    best: dict[int, float] = {}
    parent: dict[int, int | None] = {}
    for node in topological_order(ops) or []:
        w = 1.0 if weight is None else weight[node]
        choice = max(preds[node], key=lambda p: best[p], default=None)
        best[node] = w + (best[choice] if choice is not None else 0.0)
        parent[node] = choice
    if not best:
        return 0.0, []
    end = max(best, key=lambda n: best[n])
    path = [end]
    while parent[path[-1]] is not None:
        path.append(parent[path[-1]])
    return best[end], path[::-1]


def _jsonl_records(path: Path) -> Iterable[tuple[str, Any]]:
    try:
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise TraceError(f"{path}: line {lineno}: not UTF-8 text (byte {exc.start})") from None
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TraceError(f"{path}: line {lineno}: invalid JSON ({exc.msg})") from None
                except RecursionError:
                    raise TraceError(f"{path}: line {lineno}: JSON nested too deeply") from None
                except ValueError as exc:       # e.g. an integer of more than 4300 digits
                    raise TraceError(_one_line(f"{path}: line {lineno}: invalid JSON ({exc})")) from None
                yield f"line {lineno}", record
    except OSError as exc:
        raise TraceError(f"{path}: cannot read trace ({exc.strerror or exc})") from None


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _arrow_records(path: Path) -> Iterable[tuple[str, Any]]:
    """Rows of an Arrow IPC file (or stream), fully validated first: a
    corrupted file is one error line, never a crash."""
    try:
        with open(path, "rb") as fh:
            try:
                table = ipc.open_file(fh).read_all()
            except pa.ArrowInvalid:
                fh.seek(0)
                table = ipc.open_stream(fh).read_all()
            table.validate(full=True)
            rows = table.to_pylist()
    except OSError as exc:
        raise TraceError(f"{path}: cannot read trace ({exc.strerror or exc})") from None
    except (pa.ArrowException, ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise TraceError(_one_line(f"{path}: not a readable Arrow IPC file ({type(exc).__name__}: {exc})")) from None
    for index, row in enumerate(rows):
        yield f"row {index}", row


def load_trace(path: str | os.PathLike) -> Trace:
    """Read and validate a ``.jsonl`` or ``.arrow`` trace."""
    path = Path(path)
    if not path.exists():
        raise TraceError(f"{path}: trace file not found")
    if path.is_dir():
        raise TraceError(f"{path}: is a directory, expected a .jsonl or .arrow trace")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        records = _jsonl_records(path)
    elif suffix in (".arrow", ".feather", ".ipc"):
        records = _arrow_records(path)
    else:
        raise TraceError(f"{path}: unknown trace format {suffix!r}; expected .jsonl or .arrow")
    return ops_from_records(records, str(path))


def write_trace(ops: Sequence[Op], path: str | os.PathLike) -> None:
    """Write ops as ``.jsonl`` or ``.arrow`` (by suffix), atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    records = [op.to_record() for op in ops]
    if path.suffix.lower() == ".jsonl":
        with open(tmp, "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(json.dumps(record, sort_keys=False) + "\n")
    else:
        columns = {f.name: [r.get(f.name) for r in records] for f in TRACE_SCHEMA}
        columns["batch"] = [r.get("batch", 1) for r in records]
        columns["rank"] = [r.get("rank", 0) for r in records]
        table = pa.table(columns, schema=TRACE_SCHEMA)
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, TRACE_SCHEMA) as writer:
            writer.write_table(table)
    os.replace(tmp, path)
