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
                            op starts
alloc_bytes     number      size of ``tensor`` when it is not bytes_written
frees           list[str]   tensors released when the op ends
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
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import networkx as nx
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


@dataclass(frozen=True, slots=True)
class Op:
    """One operator of a trace (see the module docstring for each field)."""

    id: int
    name: str
    op: str
    flops: float
    bytes_read: float
    bytes_written: float
    deps: tuple[int, ...] = ()
    stream: int = 0
    m: int | None = None
    n: int | None = None
    k: int | None = None
    batch: int = 1
    dtype: str | None = None
    unit: str | None = None
    tier: str | None = None
    src_tier: str | None = None
    dst_tier: str | None = None
    tensor: str | None = None
    frees: tuple[str, ...] = ()
    layer: int | None = None
    rank: int = 0
    duration_s: float | None = None
    group: tuple[int, ...] = ()
    mirror_groups: tuple[tuple[int, ...], ...] = ()
    algorithm: str | None = None
    stage: int | None = None
    microbatch: int | None = None
    chunk: int | None = None
    phase: str | None = None
    alloc_bytes: float | None = None
    ifmap_h: int | None = None
    ifmap_w: int | None = None
    filter_h: int | None = None
    filter_w: int | None = None
    channels: int | None = None
    filters: int | None = None
    stride_h: int | None = None
    stride_w: int | None = None
    groups: int | None = None

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

_REQUIRED = ("id", "name", "op", "flops", "bytes_read", "bytes_written")
_INT_FIELDS = ("m", "n", "k", "batch", "layer", "stream", "rank", "stage", "microbatch", "chunk") + CONV_FIELDS
_POSITIVE_FIELDS = ("batch",) + CONV_FIELDS
_STR_FIELDS = ("dtype", "unit", "tier", "src_tier", "dst_tier", "tensor", "algorithm", "phase")


@dataclass(frozen=True)
class Trace:
    """A validated trace: ops in file order, indexed by id."""

    path: str
    ops: tuple[Op, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {op.id: op for op in self.ops})
        object.__setattr__(self, "_edges", None)

    def edge_indices(self):
        """Precedence edges (see ``_edges``) as two numpy arrays of op
        positions (source, destination), computed once per trace."""
        if self._edges is None:  # type: ignore[attr-defined]
            import numpy as np
            position = {op.id: i for i, op in enumerate(self.ops)}
            pairs = [(position[a], position[b]) for a, b in _edges(self.ops)]
            array = np.array(pairs, dtype=np.int64).reshape(-1, 2)
            object.__setattr__(self, "_edges", (array[:, 0].copy(), array[:, 1].copy()))
        return self._edges  # type: ignore[attr-defined]

    def op(self, op_id: int) -> Op:
        return self._by_id[op_id]  # type: ignore[attr-defined]

    def streams(self) -> dict[tuple[int, int], list[Op]]:
        """Ops per (rank, stream), in ascending order, ops in trace order."""
        out: dict[tuple[int, int], list[Op]] = {}
        for op in self.ops:
            out.setdefault((op.rank, op.stream), []).append(op)
        return dict(sorted(out.items()))

    @property
    def ranks(self) -> list[int]:
        """Ranks that run compute or memory ops, ascending."""
        return sorted({op.rank for op in self.ops if op.op not in COMM_OPS})


def _fail(path: str, where: str, message: str) -> TraceError:
    return TraceError(f"{path}: {where}: {message}")


def _op_from_record(record: Mapping[str, Any], path: str, where: str) -> Op:
    if not isinstance(record, Mapping):
        raise _fail(path, where, f"expected a JSON object, got {type(record).__name__}")
    op_id = record.get("id")
    if op_id is None:
        raise _fail(path, where, "missing required field 'id'")
    if isinstance(op_id, bool) or not isinstance(op_id, int):
        raise _fail(path, where, f"field 'id': expected an integer, got {op_id!r}")
    where = f"{where}, op {op_id}"
    for key in _REQUIRED:
        if record.get(key) is None:
            raise _fail(path, where, f"missing required field {key!r}")

    def number(key: str) -> float:
        value = record[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _fail(path, where, f"field {key!r}: expected a number, got {value!r}")
        if value < 0:
            raise _fail(path, where, f"field {key!r}: expected a non-negative number, got {value!r}")
        return float(value)

    def optional(key: str, kind: type) -> Any:
        value = record.get(key)
        if value is None:
            return None
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise _fail(path, where, f"field {key!r}: expected an integer, got {value!r}")
            if value < (1 if key in _POSITIVE_FIELDS else 0):
                least = "a positive" if key in _POSITIVE_FIELDS else "a non-negative"
                raise _fail(path, where, f"field {key!r}: expected {least} integer, got {value!r}")
            return value
        if not isinstance(value, str) or not value:
            raise _fail(path, where, f"field {key!r}: expected a non-empty string, got {value!r}")
        return value

    def int_list(key: str) -> tuple:
        value = record.get(key)
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)) or any(
                isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise _fail(path, where, f"field {key!r}: expected a list of integer op ids, got {value!r}")
        return tuple(value)

    def str_list(key: str) -> tuple:
        value = record.get(key)
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)) or any(not isinstance(v, str) for v in value):
            raise _fail(path, where, f"field {key!r}: expected a list of tensor names, got {value!r}")
        return tuple(value)

    name = record["name"]
    if not isinstance(name, str):
        raise _fail(path, where, f"field 'name': expected a string, got {name!r}")
    kind = record["op"]
    if kind not in OP_TYPES:
        raise _fail(path, where, f"field 'op': unknown op type {kind!r}; expected one of {list(OP_TYPES)}")
    unit = optional("unit", str)
    if unit is not None and unit not in UNIT_KINDS:
        raise _fail(path, where, f"field 'unit': unknown unit kind {unit!r}; expected one of {list(UNIT_KINDS)}")
    ints = {key: optional(key, int) for key in _INT_FIELDS}
    strs = {key: optional(key, str) for key in _STR_FIELDS}
    if kind == "copy" and not strs["dst_tier"]:
        raise _fail(path, where, "copy ops need 'dst_tier' (and 'src_tier' unless it is the device default)")
    group = int_list("group")
    if kind in COMM_OPS and len(group) < 1:
        raise _fail(path, where, f"{kind} ops need 'group', the list of ranks taking part")
    mirrors = record.get("mirror_groups") or ()
    if not isinstance(mirrors, (list, tuple)) or any(
            not isinstance(g, (list, tuple)) or len(g) != len(group)
            or any(isinstance(r, bool) or not isinstance(r, int) for r in g) for g in mirrors):
        raise _fail(path, where, "field 'mirror_groups': expected a list of rank lists, each as long as 'group'")
    duration = number("duration_s") if record.get("duration_s") is not None else None
    if kind in HOST_OPS and duration is None:
        raise _fail(path, where, "host ops need 'duration_s', the seconds the host thread spends")
    if kind == "conv2d":
        from sim.workload.conv import check_conv2d
        problem = check_conv2d(ints)
        if problem:
            raise _fail(path, where, problem)
    alloc = number("alloc_bytes") if record.get("alloc_bytes") is not None else None
    return Op(id=op_id, name=name, op=kind, flops=number("flops"), bytes_read=number("bytes_read"),
              bytes_written=number("bytes_written"), deps=int_list("deps"),
              stream=ints["stream"] or 0, m=ints["m"], n=ints["n"], k=ints["k"],
              batch=ints["batch"] if ints["batch"] is not None else 1, layer=ints["layer"],
              frees=str_list("frees"), rank=ints["rank"] or 0, duration_s=duration,
              group=group, mirror_groups=tuple(tuple(g) for g in mirrors),
              stage=ints["stage"], microbatch=ints["microbatch"], chunk=ints["chunk"],
              alloc_bytes=alloc, **strs, **{key: ints[key] for key in CONV_FIELDS})


def ops_from_records(records: Iterable[tuple[str, Mapping[str, Any]]], path: str) -> Trace:
    """Build and validate a Trace from (location, record) pairs."""
    ops = [_op_from_record(record, path, where) for where, record in records]
    return validate_ops(ops, path)


def validate_ops(ops: Sequence[Op], path: str) -> Trace:
    """Check ids, dependencies and tensors; return the Trace or raise TraceError."""
    seen: dict[int, Op] = {}
    for op in ops:
        if op.id in seen:
            raise _fail(path, f"op {op.id}", "duplicate id")
        seen[op.id] = op
    produced = {op.tensor for op in ops if op.tensor}
    for op in ops:
        for dep in op.deps:
            if dep not in seen:
                raise _fail(path, f"op {op.id}", f"depends on unknown op {dep}")
            if dep == op.id:
                raise _fail(path, f"op {op.id}", "depends on itself")
        for tensor in op.frees:
            if tensor not in produced:
                raise _fail(path, f"op {op.id}", f"frees tensor {tensor!r} that no op produces")
    trace = Trace(path=path, ops=tuple(ops))
    src, dst = trace.edge_indices()
    if not _acyclic(len(ops), src, dst):
        cycle = _find_cycle(ops)
        names = " -> ".join(f"{i} ({seen[i].name})" for i in cycle)
        raise _fail(path, f"op {cycle[0]}", f"dependency cycle (counting stream order): {names}")
    return trace


def _acyclic(count: int, src, dst) -> bool:
    """Kahn's algorithm on edge arrays, peeling every source layer at once with numpy."""
    import numpy as np
    if count == 0 or len(src) == 0:
        return True
    order = np.argsort(src, kind="stable")
    dst_sorted = dst[order]
    starts = np.searchsorted(src[order], np.arange(count + 1))
    indegree = np.bincount(dst, minlength=count)
    frontier = np.flatnonzero(indegree == 0)
    seen = len(frontier)
    while len(frontier):
        lengths = starts[frontier + 1] - starts[frontier]
        if not lengths.sum():
            break
        offsets = np.repeat(starts[frontier], lengths) + (
            np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths))
        targets = dst_sorted[offsets]
        np.subtract.at(indegree, targets, 1)
        frontier = np.unique(targets[indegree[targets] == 0])
        seen += len(frontier)
    return seen == count


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
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    yield f"line {lineno}", json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TraceError(f"{path}: line {lineno}: invalid JSON ({exc.msg})") from None
    except OSError as exc:
        raise TraceError(f"{path}: cannot read trace ({exc.strerror})") from None


def _arrow_records(path: Path) -> Iterable[tuple[str, Any]]:
    try:
        with open(path, "rb") as fh:
            try:
                table = ipc.open_file(fh).read_all()
            except pa.ArrowInvalid:
                fh.seek(0)
                table = ipc.open_stream(fh).read_all()
    except OSError as exc:
        raise TraceError(f"{path}: cannot read trace ({exc.strerror})") from None
    except pa.ArrowInvalid as exc:
        raise TraceError(f"{path}: not an Arrow IPC file ({exc})") from None
    for index, row in enumerate(table.to_pylist()):
        yield f"row {index}", row


def load_trace(path: str | os.PathLike) -> Trace:
    """Read and validate a ``.jsonl`` or ``.arrow`` trace."""
    path = Path(path)
    if not path.exists():
        raise TraceError(f"{path}: trace file not found")
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
