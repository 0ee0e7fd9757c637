"""Streaming read of a PyTorch profiler (Kineto) trace into the few events an import needs.

A Kineto trace is Chrome Trace Event JSON: ``{"traceEvents": [...], ...}``
(torch.profiler ``export_chrome_trace``; plain or gzip). The file is parsed
with ijson's event-driven parser, one event at a time, so memory holds the
kept events' compact tuples rather than the whole document: a 1 GB trace does
not become 10 GB of Python objects (benchmarks/importers.py measures it).

Kept (``ph: "X"`` complete events, times in microseconds):

- GPU activity, ``cat`` ``kernel`` / ``gpu_memcpy`` / ``gpu_memset``:
  ``args.stream``, ``args.correlation`` (the CUDA runtime call that launched
  it), ``args["External id"]`` (the CPU op it belongs to), the NCCL
  parameters PyTorch copies onto collective kernels (``Collective name``,
  ``In msg nelems``, ``Out msg nelems``, ``dtype``, ``Process Group Name``,
  ``Process Group Ranks``, ``Group size``) and ``args.bytes`` of copies;
- CUDA runtime / driver calls that launch work or block (``cat``
  ``cuda_runtime`` / ``cuda_driver``, names with Launch, Memcpy, Memset or
  Synchronize): thread, interval, name and ``args.correlation``;
- CPU operators, ``cat`` ``cpu_op``: thread, interval, name, ``External id``,
  and for GEMM-like operators (``aten::mm``, ``addmm``, ``bmm``, ``baddbmm``,
  ``matmul``, ``linear``) ``Input Dims`` and ``Input type``; for
  ``record_param_comms`` / ``nccl:*`` operators the communication parameters;
- ``ProfilerStep#N`` annotations (``cat`` ``user_annotation``);
- ``cuda_sync`` events named ``Stream Wait Event``: ``args.stream`` waits for
  the CUDA event recorded by the runtime call ``wait_on_cuda_event_record_corr_id``
  on ``wait_on_stream`` (pytorch/kineto ``libkineto/src/CuptiActivity.cpp``,
  ``eventSyncInfo``; recorded with PyTorch's ``enable_cuda_sync_events``);
- ``ac2g`` flow events (``ph`` ``s`` / ``f``): launch -> kernel links, used
  where a GPU event lacks ``args.correlation``.
"""

from __future__ import annotations

import gzip
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sim.importers import TraceImportError

GPU_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
RUNTIME_CATS = ("cuda_runtime", "cuda_driver")
GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear")
COMM_ARGS = ("Collective name", "In msg nelems", "Out msg nelems", "dtype", "Process Group Name",
             "Process Group Ranks", "Group size")
STEP = re.compile(r"ProfilerStep#(\d+)$")
# runtime calls an import uses: launches (kernels, copies, memsets, graphs) and blocking syncs
RUNTIME_KEPT = re.compile(r"Launch|Memcpy|Memset|Synchronize")


@dataclass(frozen=True, slots=True)
class Gpu:
    index: int          # position in traceEvents (for messages)
    kind: str           # kernel | gpu_memcpy | gpu_memset
    name: str
    device: int
    stream: int
    ts: float
    dur: float
    correlation: int | None
    external: int | None
    comm: dict | None   # NCCL parameters, if recorded on the kernel
    nbytes: float


@dataclass(frozen=True, slots=True)
class Call:
    """A CPU-side interval: a CUDA runtime call or a CPU operator."""

    index: int
    name: str
    tid: Any
    ts: float
    dur: float
    correlation: int | None = None
    external: int | None = None
    extra: Any = None   # cpu ops: (Input Dims, Input type) of GEMMs, or comm parameters

    @property
    def end(self) -> float:
        return self.ts + self.dur


@dataclass
class RankEvents:
    path: str
    gpu: list[Gpu] = field(default_factory=list)
    runtime: list[Call] = field(default_factory=list)
    cpu: list[Call] = field(default_factory=list)
    steps: list[tuple[int, Any, float, float]] = field(default_factory=list)   # (step, tid, ts, dur)
    waits: list[tuple[int, int, int, int]] = field(default_factory=list)      # (stream, corr, on stream, record corr)
    flow_start: dict[int, tuple[Any, float]] = field(default_factory=dict)    # id -> (tid, ts)
    flow_end: dict[tuple[int, Any, float], int] = field(default_factory=dict)  # (pid, tid, ts) -> id
    events: int = 0


class _Progress:
    """A file-like wrapper that reports bytes read of the underlying file."""

    def __init__(self, fh, raw, update: Callable[[int], None] | None):
        self.fh, self.raw, self.update, self.last = fh, raw, update, 0

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        if self.update is not None:
            position = self.raw.tell()
            self.update(position - self.last)
            self.last = position
        return data


def _number(event: dict, key: str, where: str, required: bool = True) -> float | None:
    value = event.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise TraceImportError(f"{where}: field {key!r}: expected a non-negative number, got {value!r}")
    return float(value)


def _int_arg(args: dict, key: str) -> int | None:
    value = args.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def _keep(event: Any, index: int, out: RankEvents, names: dict) -> None:
    """File one event (a dict) into ``out`` if the import needs it."""
    if not isinstance(event, dict):
        raise TraceImportError(f"{out.path}: traceEvents[{index}]: expected a JSON object, got {event!r:.60}")
    phase, cat = event.get("ph"), event.get("cat")
    if phase in ("s", "f") and cat == "ac2g":
        flow = _int_arg(event, "id")
        ts = _number(event, "ts", f"{out.path}: traceEvents[{index}] (flow)")
        if flow is not None:
            if phase == "s":
                out.flow_start[flow] = (event.get("tid"), ts)
            else:
                out.flow_end[(event.get("pid"), event.get("tid"), ts)] = flow
        return
    if phase != "X" or cat not in (*GPU_CATS, *RUNTIME_CATS, "cpu_op", "user_annotation", "cuda_sync"):
        return
    name = event.get("name")
    name = names.setdefault(name, name) if isinstance(name, str) else str(name)
    where = f"{out.path}: traceEvents[{index}] ({name})"
    ts, dur = _number(event, "ts", where), _number(event, "dur", where)
    args = event.get("args") if isinstance(event.get("args"), dict) else {}
    if cat in GPU_CATS:
        stream = _int_arg(args, "stream")
        if stream is None:
            stream = _int_arg(event, "tid")
        if stream is None:
            raise TraceImportError(f"{where}: a GPU {cat} needs args.stream (its CUDA stream)")
        comm = {k: args[k] for k in COMM_ARGS if k in args} or None
        out.gpu.append(Gpu(index, cat, name, _int_arg(event, "pid") or 0, stream, ts, dur,
                           _int_arg(args, "correlation"), _int_arg(args, "External id"), comm,
                           float(_int_arg(args, "bytes") or 0)))
    elif cat in RUNTIME_CATS:
        if not RUNTIME_KEPT.search(name):
            return
        out.runtime.append(Call(index, name, event.get("tid"), ts, dur, _int_arg(args, "correlation")))
    elif cat == "cpu_op":
        extra = None
        if name in GEMM_OPS and "Input Dims" in args:
            extra = (args.get("Input Dims"), args.get("Input type"))
        elif "Collective name" in args:
            extra = {k: args[k] for k in COMM_ARGS if k in args}
        out.cpu.append(Call(index, name, event.get("tid"), ts, dur, None, _int_arg(args, "External id"), extra))
    elif cat == "user_annotation":
        match = STEP.match(name)
        if match:
            out.steps.append((int(match.group(1)), event.get("tid"), ts, dur))
    elif name == "Stream Wait Event":
        values = [_int_arg(args, k) for k in ("stream", "correlation", "wait_on_stream",
                                              "wait_on_cuda_event_record_corr_id")]
        if None not in values and values[2] >= 0 and values[3] >= 0:
            out.waits.append(tuple(values))


def read_trace(path: str | Path, progress: Callable[[int], None] | None = None) -> RankEvents:
    """Stream ``path`` (``.json`` or gzip) and keep the events an import needs."""
    import ijson

    path = Path(path)
    if not path.is_file():
        raise TraceImportError(f"{path}: trace file not found")
    out = RankEvents(str(path))
    names: dict[str, str] = {}
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        fh = gzip.GzipFile(fileobj=raw) if gzipped else raw
        try:
            first = _first_byte(fh)
            if first != b"{":
                raise TraceImportError(f"{path}: not a PyTorch profiler trace: expected a JSON object with a "
                                       f"'traceEvents' list (torch.profiler export_chrome_trace)")
            stream = _Progress(fh, raw, progress)
            for index, event in enumerate(ijson.items(_Prefixed(first, stream), "traceEvents.item",
                                                      use_float=True)):
                _keep(event, index, out, names)
                out.events = index + 1
        except ijson.JSONError as exc:
            raise TraceImportError(f"{path}: not a PyTorch profiler trace: invalid JSON "
                                   f"({str(exc).splitlines()[0][:120]})") from None
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise TraceImportError(f"{path}: cannot read ({exc})") from None
    if not out.events:
        raise TraceImportError(f"{path}: not a PyTorch profiler trace: no 'traceEvents' (expected "
                               f"{{\"traceEvents\": [...]}} as torch.profiler writes)")
    if not out.gpu and not out.cpu:
        raise TraceImportError(f"{path}: a trace with no GPU kernels and no CPU operators "
                               f"(expected events of cat 'kernel' or 'cpu_op')")
    return out


def _first_byte(fh) -> bytes:
    """The first non-blank byte of the stream (consumed; _Prefixed puts it back)."""
    while True:
        byte = fh.read(1)
        if not byte or not byte.isspace():
            return byte


class _Prefixed:
    """A byte stream with ``prefix`` put back in front."""

    def __init__(self, prefix: bytes, stream):
        self.prefix, self.stream = prefix, stream

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson asks for 0 bytes to learn whether the stream is bytes or text
            return b""
        if self.prefix:
            head, self.prefix = self.prefix, b""
            return head + self.stream.read(size - 1 if size > 0 else -1)
        return self.stream.read(size)
