"""PyTorch profiler (Kineto) traces, one JSON per rank, as an accsim trace.

What becomes what (field by field in docs/trace-format.md, "Importing"):

- the window: the ``ProfilerStep#N`` annotations of the profiled steps (all of
  them, or ``step``), else the whole trace; times are relative to its start;
- **GPU traces** (events of cat ``kernel``): every GPU kernel, memset or copy
  launched in the window is an op on its CUDA stream (stream id kept): kernels
  keep their measured ``duration_s``; copies become ``copy`` ops between the
  tiers their direction names (host <-> hbm), priced from their bytes.
  Dependencies: stream order; each launch depends on the host time before it
  (``host`` ops on one stream per CPU thread, cut at every launch, kernel to
  launch by ``args.correlation`` or the ``ac2g`` flow); a blocking call
  (``cudaDeviceSynchronize``, ``cudaStreamSynchronize``,
  ``cudaEventSynchronize``, ``cudaMemcpy``) ends a host op and the next one
  waits for the GPU op whose end released it (the latest-ending op launched
  before the call that ended within it), the waiting itself being no host
  time; a ``Stream Wait Event`` (cudaStreamWaitEvent, in traces recorded with
  ``enable_cuda_sync_events``) makes the first op launched on the waiting
  stream after it depend on the last op launched on the recorded stream
  before the ``cudaEventRecord``. NCCL kernels become collectives: type and
  size from ``Collective name`` / ``In msg nelems`` / ``Out msg nelems`` /
  ``dtype``, group from ``Process Group Ranks``; the k-th collective of a
  process group in every member's file is one collective op (every member's
  file must be given);
- **CPU traces** (no GPU events, e.g. a CPU run): every leaf CPU operator (a
  ``cpu_op`` with no ``cpu_op`` inside it on its thread) and every primitive
  GEMM operator (``aten::mm`` / ``addmm`` / ``bmm`` / ``baddbmm``, with the
  small operators inside it) is an op with its measured time on a stream per
  thread, and the time between them on the thread is ``host`` time;
- GEMM shapes: a kernel (or leaf operator) whose CPU operator (same ``External
  id``) is ``aten::mm`` / ``addmm`` / ``bmm`` / ``baddbmm`` / ``matmul`` /
  ``linear`` with recorded ``Input Dims`` gets ``m``, ``n``, ``k``, ``batch``,
  ``dtype`` (from ``Input type``), FLOPs and bytes; with ``reprice`` such ops
  drop their measured time and the replay device's kernel model prices them
  (through sim.engine.device.bind_op), while every other op keeps its
  measured time.

Replayed on the hardware it was recorded on, the trace reproduces the
measured step (tests/test_import_kineto.py: within 1% on the shipped CPU run,
exactly on GPU traces in closed form); what is not modelled: a kernel's
launch latency beyond the launch call, host threads other than the
profiled-step thread waiting on each other (each starts at the window's
start), and concurrent compute kernels on different streams sharing SMs
(each measured kernel holds the whole SM array, so they serialize).
"""

from __future__ import annotations

import ast
import bisect
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sim.importers import TraceImportError, match_across_ranks
from sim.importers.kineto_read import Call, Gpu, RankEvents, read_trace
from sim.workload.trace import Op

HOST_STREAM_BASE = 1000
PRIMITIVE_GEMMS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
COMM_STREAM_BASE = 100_000
SYNC_CALLS = ("cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize", "cudaMemcpy",
              "cuCtxSynchronize", "cuStreamSynchronize", "cuEventSynchronize")
DTYPES = {"float": "fp32", "double": "fp64", "c10::BFloat16": "bf16", "c10::Half": "fp16",
          "c10::Float8_e4m3fn": "fp8", "c10::Float8_e5m2": "fp8", "signed char": "int8"}
COMM_DTYPE_BYTES = {"Float": 4, "Double": 8, "Half": 2, "BFloat16": 2, "Int": 4, "Long": 8, "Short": 2,
                    "Char": 1, "Byte": 1, "Bool": 1, "Float8_e4m3fn": 1, "Float8_e5m2": 1}
COLLECTIVES = {"allreduce": "allreduce", "all_reduce": "allreduce", "allgather": "allgather",
               "all_gather": "allgather", "_allgather_base": "allgather", "all_gather_into_tensor": "allgather",
               "allgather_into_tensor_coalesced": "allgather", "reduce_scatter": "reduce_scatter",
               "_reduce_scatter_base": "reduce_scatter", "reduce_scatter_tensor": "reduce_scatter",
               "reduce_scatter_tensor_coalesced": "reduce_scatter", "broadcast": "broadcast",
               "reduce": "reduce", "all_to_all": "alltoall", "alltoall": "alltoall",
               "alltoall_base": "alltoall", "all_to_all_single": "alltoall", "gather": "gather",
               "scatter": "scatter", "barrier": "allreduce"}
KINDS = [(re.compile(p, re.I), kind) for p, kind in [
    (r"flash|fmha|attention|sdpa", "attention"), (r"gemm|cutlass|xmma|cublas|sm\d\d_|matmul|aten::(mm|addmm|bmm|baddbmm|linear|matmul)$", "gemm"),
    (r"softmax", "softmax"), (r"norm", "norm"), (r"reduce|sum|mean|argmax|max_kernel", "reduction")]]


@dataclass
class KinetoImport:
    ops: list[Op]
    measured_step_s: float
    window: str


@dataclass
class _Item:
    key: tuple
    start: float
    fields: dict
    deps: list = field(default_factory=list)


def _kind(name: str) -> str:
    for pattern, kind in KINDS:
        if pattern.search(name):
            return kind
    return "elementwise"


def gemm_shape(op_name: str, dims: Any) -> tuple[int, int, int, int] | None:
    """(m, n, k, batch) of a GEMM-like ATen operator from its recorded Input Dims."""
    if not isinstance(dims, list) or not all(isinstance(d, list) for d in dims):
        return None
    shapes = [d for d in dims if d]
    if len(shapes) < 2 or not all(isinstance(x, int) and x > 0 for d in shapes for x in d):
        return None
    if op_name in ("aten::addmm", "aten::baddbmm") and len(dims) >= 3:
        a, b = dims[1], dims[2]
    else:
        a, b = dims[0], dims[1]
    if op_name == "aten::linear":
        return (math.prod(a[:-1]), b[0], a[-1], 1) if len(b) == 2 else None
    if len(a) == 2 and len(b) == 2:
        return a[0], b[1], a[1], 1
    if len(a) == len(b) >= 3 and a[:-2] == b[:-2]:
        return a[-2], b[-1], a[-1], math.prod(a[:-2])
    if len(a) >= 3 and len(b) == 2:
        return math.prod(a[:-1]), b[1], a[-1], 1
    return None


def _gemm_fields(call: Call | None, reprice: bool, dtype: str | None) -> dict:
    """GEMM fields for an op whose CPU operator recorded its input shapes."""
    from sim.hardware.specs import DTYPE_BYTES
    if call is None or not isinstance(call.extra, tuple):
        return {}
    shape = gemm_shape(call.name, call.extra[0])
    if shape is None:
        return {}
    m, n, k, batch = shape
    types = call.extra[1] if isinstance(call.extra[1], list) else []
    recorded = DTYPES.get(types[0]) if types and isinstance(types[0], str) else None
    chosen = dtype or recorded
    width = DTYPE_BYTES.get(chosen or "bf16", 2)
    # the element type matters only to the kernel model: measured ops keep no dtype, so they
    # replay on any device (an fp32 GEMM has no tensor-core peak on an A100, say)
    fields = {"op": "gemm", "m": m, "n": n, "k": k, "batch": batch, "dtype": chosen if reprice else None,
              "flops": 2.0 * m * n * k * batch,
              "bytes_read": float(width * batch * (m * k + k * n)), "bytes_written": float(width * batch * m * n)}
    if reprice:
        fields["duration_s"] = None
    return fields


def _window(events: RankEvents, step: int | None) -> tuple[float, float, Any, str]:
    """(start, end, main thread, description) of the imported window."""
    steps = sorted(events.steps)
    if step is not None:
        chosen = [s for s in steps if s[0] == step]
        if not chosen:
            have = ", ".join(str(s[0]) for s in steps) or "none"
            raise TraceImportError(f"{events.path}: no ProfilerStep#{step} (profiled steps: {have})")
        steps = chosen
    if steps:
        start = min(s[2] for s in steps)
        end = max(s[2] + s[3] for s in steps)
        label = (f"ProfilerStep#{steps[0][0]}" if len(steps) == 1
                 else f"ProfilerStep#{steps[0][0]}..#{steps[-1][0]}")
        return start, end, steps[0][1], label
    calls = events.runtime + events.cpu
    start = min([c.ts for c in calls] + [g.ts for g in events.gpu])
    end = max([c.end for c in calls] + [g.ts + g.dur for g in events.gpu])
    return start, end, (calls[0].tid if calls else None), "whole trace"


class _RankBuilder:
    """The items (ops before numbering) of one rank's trace."""

    def __init__(self, rank: int, events: RankEvents, step: int | None, reprice: bool, dtype: str | None):
        self.rank, self.events, self.reprice, self.dtype = rank, events, reprice, dtype
        self.start, self.end, self.main, self.label = _window(events, step)
        self.items: list[_Item] = []
        self.threads: dict[Any, int] = {self.main: 0}
        self.by_external = {c.external: c for c in events.cpu if c.external is not None and c.extra is not None}
        self.last_end = self.end

    def thread(self, tid: Any) -> int:
        return self.threads.setdefault(tid, len(self.threads))

    def add(self, key: tuple, start: float, deps: list, **fields) -> _Item:
        fields.setdefault("flops", 0.0)
        fields.setdefault("bytes_read", 0.0)
        fields.setdefault("bytes_written", 0.0)
        item = _Item(key, start - self.start, {"rank": self.rank, **fields}, deps)
        self.items.append(item)
        return item

    def host(self, tid: Any, begin: float, finish: float, deps: list) -> tuple:
        index = self.thread(tid)
        key = ("host", self.rank, index, len(self.items))
        self.add(key, begin, deps, name=f"host (thread {tid})", op="host", duration_s=max(0.0, finish - begin) / 1e6,
                 stream=HOST_STREAM_BASE + index)
        return key


def _cpu_rank(b: _RankBuilder) -> None:
    """A CPU run: leaf operators on their threads, host time between them."""
    by_thread: dict[Any, list[Call]] = {}
    for call in b.events.cpu:
        if call.ts >= b.start and call.end <= b.end:
            by_thread.setdefault(call.tid, []).append(call)
    for tid in sorted(by_thread, key=lambda t: (t != b.main, str(t))):
        index = b.thread(tid)
        cursor, previous = b.start, []
        for call in _cpu_units(sorted(by_thread[tid], key=lambda c: (c.ts, -c.dur))):
            segment = b.host(tid, cursor, call.ts, previous)
            fields = {"name": call.name, "op": _kind(call.name), "duration_s": call.dur / 1e6, "stream": index}
            fields.update(_gemm_fields(call, b.reprice, b.dtype))
            key = ("op", b.rank, call.index)
            b.add(key, call.ts, [segment], **fields)
            cursor, previous = call.end, [key]
        if tid == b.main and b.end > cursor:
            b.host(tid, cursor, b.end, previous)


def _cpu_units(calls: list[Call]) -> list[Call]:
    """The operators of a CPU thread that become ops: leaves (no operator inside
    them) and the primitive GEMMs (aten::mm, addmm, bmm, baddbmm) whole, with
    the small operators they call (resolve_conj, expand, copy_ of the bias)
    folded in, so that their recorded shapes stay with their time."""
    units, inside = [], (math.inf, -math.inf)
    for call, nxt in zip(calls, calls[1:] + [None]):
        if call.ts >= inside[0] and call.end <= inside[1]:
            continue
        if call.name in PRIMITIVE_GEMMS:
            units.append(call)
            inside = (call.ts, call.end)
        elif nxt is None or nxt.ts >= call.end:
            units.append(call)
    return units


def _gpu_launches(b: _RankBuilder) -> tuple[dict, list[Gpu]]:
    """Launch call of each kept GPU op, and the kept GPU ops (launched in the window)."""
    events = b.events
    by_corr = {c.correlation: c for c in events.runtime if c.correlation is not None}
    devices = sorted({g.device for g in events.gpu})
    if len(devices) > 1:
        raise TraceImportError(f"{events.path}: GPU events on devices {devices}; expected one GPU per file "
                               f"(one file per rank)")
    launches, kept = {}, []
    for gpu in events.gpu:
        correlation = gpu.correlation
        if correlation is None:
            correlation = events.flow_end.get((gpu.device, gpu.stream, gpu.ts))
        call = by_corr.get(correlation)
        if call is None and correlation is not None and correlation in events.flow_start:
            tid, ts = events.flow_start[correlation]
            call = Call(-1, "launch", tid, ts, 0.0, correlation)
        moment = call.ts if call is not None else gpu.ts
        if b.start <= moment <= b.end:
            kept.append(gpu)
            if call is not None:
                launches[gpu.index] = call
    kept.sort(key=lambda g: (g.ts, g.index))
    return launches, kept


def _comm(gpu: Gpu, b: _RankBuilder) -> dict | None:
    comm = gpu.comm
    if comm is None and gpu.external is not None:
        call = b.by_external.get(gpu.external)
        comm = call.extra if call is not None and isinstance(call.extra, dict) else None
    if comm is None and gpu.name.startswith("nccl"):
        raise TraceImportError(f"{b.events.path}: traceEvents[{gpu.index}] ({gpu.name[:60]}): an NCCL kernel "
                               f"without its communication parameters ('Collective name', 'In msg nelems', "
                               f"'Process Group Ranks'); record the trace with PyTorch >= 2.2")
    return comm


def _gpu_rank(b: _RankBuilder, collectives: list) -> None:
    launches, kept = _gpu_launches(b)
    last_on_stream: dict[int, tuple] = {}
    key_of = {}
    for gpu in kept:
        key = ("op", b.rank, gpu.index)
        key_of[gpu.index] = key
        deps = [last_on_stream[gpu.stream]] if gpu.stream in last_on_stream else []
        comm = _comm(gpu, b) if gpu.kind == "kernel" else None
        if comm is not None:  # a placeholder collecting its deps; merged across ranks later
            b.add(key, gpu.ts, deps, name=gpu.name, op="allreduce", group=(b.rank,), stream=gpu.stream)
            collectives.append((b, gpu, key, comm))
        elif gpu.kind == "gpu_memcpy":
            src, dst = _copy_tiers(gpu.name)
            b.add(key, gpu.ts, deps, name=gpu.name, op="copy", bytes_read=gpu.nbytes, bytes_written=gpu.nbytes,
                  src_tier=src, dst_tier=dst, stream=gpu.stream)
        else:
            fields = {"name": gpu.name, "op": _kind(gpu.name), "duration_s": gpu.dur / 1e6, "stream": gpu.stream}
            b.add(key, gpu.ts, deps, **fields)
        last_on_stream[gpu.stream] = key
        b.last_end = max(b.last_end, gpu.ts + gpu.dur)
    _attach_shapes(b, kept, key_of)
    _host_threads(b, kept, launches, key_of)
    _stream_waits(b, kept, launches, key_of)


def _copy_tiers(name: str) -> tuple[str, str]:
    text = name.replace(" ", "")
    if "HtoD" in text:
        return "host", "hbm"
    if "DtoH" in text:
        return "hbm", "host"
    if "HtoH" in text:
        return "host", "host"
    return "hbm", "hbm"


def _attach_shapes(b: _RankBuilder, kept: list[Gpu], key_of: dict) -> None:
    """GEMM shapes onto the longest kernel of each CPU operator that recorded them."""
    items = {item.key: item for item in b.items}
    longest: dict[int, Gpu] = {}
    for gpu in kept:
        if gpu.kind == "kernel" and gpu.external in b.by_external and key_of[gpu.index] in items:
            best = longest.get(gpu.external)
            if best is None or gpu.dur > best.dur:
                longest[gpu.external] = gpu
    for external, gpu in longest.items():
        items[key_of[gpu.index]].fields.update(_gemm_fields(b.by_external[external], b.reprice, b.dtype))


def _host_threads(b: _RankBuilder, kept: list[Gpu], launches: dict, key_of: dict) -> None:
    """Host ops on each launching thread, cut at launches and blocking calls."""
    items = {item.key: item for item in b.items}
    marks: dict[Any, list] = {}
    for gpu in kept:
        call = launches.get(gpu.index)
        if call is not None:
            marks.setdefault(call.tid, []).append((call.ts, 0, call, key_of[gpu.index]))
    for call in b.events.runtime:
        if call.name in SYNC_CALLS and b.start <= call.ts <= b.end:
            marks.setdefault(call.tid, []).append((call.ts, 1, call, None))
    ends = sorted(((gpu.ts + gpu.dur, launches[gpu.index].ts, key_of[gpu.index]) for gpu in kept
                   if gpu.index in launches), key=lambda e: e[0])
    end_times = [e[0] for e in ends]
    for tid in sorted(set(marks) | {b.main}, key=lambda t: (t != b.main, str(t))):
        cursor, previous, waited = b.start, [], []
        for ts, kind, call, key in sorted(marks.get(tid, []), key=lambda m: (m[0], m[1])):
            if kind == 0:
                if items.get(key) is not None and ts >= cursor:
                    segment = b.host(tid, cursor, ts, previous + waited)
                    previous, waited, cursor = [segment], [], ts
                if key in items:
                    items[key].deps.append(previous[0] if previous else None)
            else:
                segment = b.host(tid, cursor, max(cursor, call.ts), previous + waited)
                waited = _released(ends, end_times, call)
                previous, cursor = [segment], max(cursor, call.end)
        if tid == b.main and b.end > cursor:
            b.host(tid, cursor, b.end, previous + waited)
    for item in b.items:
        item.deps = [d for d in item.deps if d is not None]


def _released(ends: list, end_times: list, call: Call) -> list:
    """The GPU op whose end released a blocking call: the latest-ending op
    launched before the call that ended by the call's end (1 ns slack)."""
    position = bisect.bisect_right(end_times, call.end + 1e-3) - 1
    while position >= 0:
        if ends[position][1] < call.ts:
            return [ends[position][2]]
        position -= 1
    return []


def _stream_waits(b: _RankBuilder, kept: list[Gpu], launches: dict, key_of: dict) -> None:
    """cudaStreamWaitEvent: the waiting stream's next op after the recorded stream's op."""
    if not b.events.waits:
        return
    items = {item.key: item for item in b.items}
    per_stream: dict[int, tuple[list, list]] = {}   # stream -> (launch correlations ascending, keys)
    for corr, stream, key in sorted((launches[g.index].correlation, g.stream, key_of[g.index]) for g in kept
                                    if g.index in launches and launches[g.index].correlation is not None):
        corrs, keys = per_stream.setdefault(stream, ([], []))
        corrs.append(corr)
        keys.append(key)
    for stream, correlation, on_stream, record in b.events.waits:
        if stream not in per_stream or on_stream not in per_stream:
            continue
        before = bisect.bisect_left(per_stream[on_stream][0], record) - 1
        after = bisect.bisect_right(per_stream[stream][0], correlation)
        if before >= 0 and after < len(per_stream[stream][1]) and per_stream[stream][1][after] in items:
            items[per_stream[stream][1][after]].deps.append(per_stream[on_stream][1][before])


def _group(comm: dict, where: str, world: int) -> tuple[int, ...]:
    ranks = comm.get("Process Group Ranks")
    if isinstance(ranks, str):
        try:
            ranks = ast.literal_eval(ranks)
        except (ValueError, SyntaxError):
            raise TraceImportError(f"{where}: 'Process Group Ranks' {ranks!r}: expected a list of ranks") from None
    if ranks is None and isinstance(comm.get("Group size"), int):
        ranks = list(range(comm["Group size"]))
    if not isinstance(ranks, (list, tuple)) or not ranks or not all(isinstance(r, int) for r in ranks):
        raise TraceImportError(f"{where}: expected 'Process Group Ranks' (or 'Group size'), got {ranks!r}")
    if any(not 0 <= r < world for r in ranks):
        raise TraceImportError(f"{where}: a collective on ranks {list(ranks)}, but only {world} trace file(s) "
                               f"were given; pass one file per rank, in rank order")
    return tuple(ranks)


def _comm_size(comm: dict, op: str, where: str) -> float:
    width = COMM_DTYPE_BYTES.get(str(comm.get("dtype", "")).split(".")[-1])
    key = "Out msg nelems" if op in ("allgather", "gather") else "In msg nelems"
    count = comm.get(key, comm.get("In msg nelems"))
    if width is None or isinstance(count, bool) or not isinstance(count, (int, float)) or count < 0:
        raise TraceImportError(f"{where}: expected '{key}' and a known 'dtype', got {count!r} and "
                               f"{comm.get('dtype')!r}")
    return float(count) * width


def _merge_collectives(collectives: list, world: int) -> tuple[list[_Item], dict]:
    """One collective op per (process group, k-th call in every member's trace);
    removes each rank's placeholder item, whose deps the collective takes."""
    keys = {entry[2] for entry in collectives}
    placeholders = {}
    for b in {id(entry[0]): entry[0] for entry in collectives}.values():
        placeholders.update((item.key, item) for item in b.items if item.key in keys)
        b.items = [item for item in b.items if item.key not in keys]
    per_group: dict[tuple, dict[int, list]] = {}
    for b, gpu, key, comm in collectives:
        deps = placeholders[key].deps
        where = f"{b.events.path}: traceEvents[{gpu.index}] ({gpu.name[:60]})"
        name = str(comm.get("Collective name", ""))
        if name not in COLLECTIVES:
            raise TraceImportError(f"{where}: unknown 'Collective name' {name!r}; expected one of "
                                   f"{sorted(set(COLLECTIVES))}")
        op = COLLECTIVES[name]
        group = _group(comm, where, world)
        if b.rank not in group:
            raise TraceImportError(f"{where}: rank {b.rank} runs a collective on ranks {list(group)}")
        entry = (b, gpu, key, deps, op, _comm_size(comm, op, where), where)
        per_group.setdefault((str(comm.get("Process Group Name", "")), group), {}).setdefault(b.rank, []).append(entry)
    merged, alias = [], {}
    for number, ((pg, group), by_rank) in enumerate(sorted(per_group.items())):
        label = pg or list(group)

        def count_error(few, many, counts, by_rank=by_rank, label=label):
            return TraceImportError(f"{by_rank[many][counts[few]][6]}: rank {many} runs {counts[many]} "
                                    f"collectives on process group {label} but rank {few} runs {counts[few]}; "
                                    f"every member must run each")

        def mismatch_error(k, call, first, label=label):
            return TraceImportError(f"{call[6]}: collective {k} on process group {label} is {call[4]} of "
                                    f"{call[5]:.0f} bytes here but {first[4]} of {first[5]:.0f} bytes on rank "
                                    f"{first[0].rank} ({first[6]})")

        for k, calls in enumerate(match_across_ranks(group, by_rank, lambda c: (c[4], c[5]), count_error,
                                                     mismatch_error)):
            first = calls[0]
            key = ("coll", pg, group, k)
            deps = [d for call in calls for d in call[3]]
            start = min(call[1].ts - call[0].start for call in calls)
            merged.append(_Item(key, start, {"name": first[1].name, "op": first[4], "flops": 0.0,
                                             "bytes_read": first[5], "bytes_written": first[5],
                                             "group": group, "rank": group[0],
                                             "stream": COMM_STREAM_BASE + number}, deps))
            for call in calls:
                alias[call[2]] = key
    return merged, alias


def convert(files: Sequence[str | Path], reprice: bool = False, dtype: str | None = None,
            step: int | None = None, progress: bool = False) -> KinetoImport:
    """The ops of one Kineto trace per rank (see the module docstring)."""
    from sim.hardware.specs import DTYPE_BYTES
    if dtype is not None and dtype not in DTYPE_BYTES:
        raise TraceImportError(f"--dtype {dtype!r}: expected one of {sorted(DTYPE_BYTES)}")
    ranks = _read_all(files, progress)
    if progress:
        import sys
        kept = sum(len(r.gpu) + len(r.runtime) + len(r.cpu) for r in ranks)
        print(f"converting {kept} kept events of {sum(r.events for r in ranks)}", file=sys.stderr)
    builders, collectives = [], []
    for rank, events in enumerate(ranks):
        b = _RankBuilder(rank, events, step, reprice, dtype)
        (_gpu_rank(b, collectives) if events.gpu else _cpu_rank(b))
        builders.append(b)
    merged, alias = _merge_collectives(collectives, len(ranks))
    items = [item for b in builders for item in b.items] + merged
    ops = _number(items, alias)
    measured = max(b.last_end - b.start for b in builders)
    return KinetoImport(ops, measured / 1e6, builders[0].label)


def _number(items: list[_Item], alias: dict) -> list[Op]:
    """Items in measured start order become ops 0, 1, ...; deps through aliases."""
    items.sort(key=lambda item: (item.start, str(item.key)))
    ids = {item.key: i for i, item in enumerate(items)}
    for key, target in alias.items():
        ids[key] = ids[target]
    ops = []
    for i, item in enumerate(items):
        deps = tuple(dict.fromkeys(ids[d] for d in item.deps if d in ids and ids[d] != i))
        ops.append(Op(id=i, deps=deps, **item.fields))
    return ops


def _read_all(files: Sequence[str | Path], progress: bool) -> list[RankEvents]:
    bar = None
    if progress:
        from tqdm import tqdm
        total = sum(Path(f).stat().st_size for f in files if Path(f).is_file())
        bar = tqdm(total=total, unit="B", unit_scale=True, desc="reading", leave=False)
    try:
        return [read_trace(f, bar.update if bar is not None else None) for f in files]
    finally:
        if bar is not None:
            bar.close()
