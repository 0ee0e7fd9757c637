"""Kineto-format traces of a synthetic data-parallel training step, with a closed-form timeline.

Writes exactly the events torch.profiler writes for a GPU run (ProfilerStep
annotation, ``cpu_op`` with ``Input Dims`` and ``External id``,
``cudaLaunchKernel`` runtime calls with ``correlation``, ``kernel`` events on
CUDA streams, ``ac2g`` flows, NCCL kernels carrying ``Collective name`` /
``In msg nelems`` / ``dtype`` / ``Process Group Ranks``, ``cuda_sync`` Stream
Wait Events, a ``cudaStreamSynchronize``), so tests can check the importer
against a timeline known in closed form and benchmarks/importers.py can make
traces of any size. ``padding`` adds ``python_function`` events and long
argument lists, as real traces recorded with ``with_stack`` have.

Each rank's step (times in microseconds from the step start):
host ``host_us`` before the first launch, then per layer a GEMM kernel (the
``aten::mm`` of m x k times k x n) of ``kernel_us`` on compute stream 7
launched every ``launch_us``; after each layer's kernel an all-reduce of
``grad_bytes`` on stream 20 that waits (cudaStreamWaitEvent) for it; the
compute stream waits for the last all-reduce before a final optimizer kernel
of ``kernel_us``; the host synchronizes on it (cudaStreamSynchronize) and then
spends ``tail_us`` before the step ends. Kernels start as soon as both their
launch and their stream allow (no launch latency), and the all-reduce takes
``allreduce_us`` as measured; ``timeline`` gives every interval and
``expected_step_us`` the step for any all-reduce time.
"""

from __future__ import annotations

import gzip
import itertools
import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Step:
    ranks: int = 2
    layers: int = 4
    host_us: float = 30.0
    launch_us: float = 10.0
    kernel_us: float = 100.0
    allreduce_us: float = 60.0
    tail_us: float = 25.0
    grad_bytes: int = 4 << 20
    m: int = 2048
    n: int = 1024
    k: int = 1024
    steps: int = 1
    padding: int = 0


def timeline(step: Step) -> dict:
    """Measured start and end (us, from the step start) of each rank's kernels and
    the host phases; the same on every rank."""
    t = {"launch": [step.host_us + i * step.launch_us for i in range(step.layers + 1)]}
    kernels, reduces, end = [], [], 0.0
    for i in range(step.layers):
        start = max(t["launch"][i], end)
        end = start + step.kernel_us
        kernels.append((start, end))
        ar_start = max(end, reduces[-1][1] if reduces else 0.0)
        reduces.append((ar_start, ar_start + step.allreduce_us))
    opt_start = max(t["launch"][step.layers], end, reduces[-1][1])
    kernels.append((opt_start, opt_start + step.kernel_us))
    sync_start = t["launch"][step.layers] + step.launch_us
    sync_end = max(sync_start, kernels[-1][1])
    t.update(kernels=kernels, reduces=reduces, sync=(sync_start, sync_end), end=sync_end + step.tail_us)
    return t


def expected_step_us(step: Step, allreduce_us: float) -> float:
    """The step with all-reduces of ``allreduce_us`` (the replay's network time)."""
    return timeline(Step(**{**step.__dict__, "allreduce_us": allreduce_us}))["end"]


def rank_events(step: Step, rank: int) -> list[dict]:
    """The trace events of one rank (correlation ids in launch order)."""
    return list(iter_rank_events(step, rank))


def iter_rank_events(step: Step, rank: int):
    """The trace events of one rank, a step at a time."""
    pid = tid = 1000 + rank
    out: list[dict] = []
    counter = itertools.count(1_000_000_000 * rank + 1)

    def x(cat, name, ts, dur, args, p=pid, t=tid):
        out.append({"ph": "X", "cat": cat, "name": name, "pid": p, "tid": t, "ts": round(ts, 3),
                    "dur": round(dur, 3), "args": args})

    def launch(ts, kernel, stream, start, end, external):
        c = next(counter)
        x("cuda_runtime", "cudaLaunchKernel", ts, 2.0, {"correlation": c, "External id": external})
        x("kernel", kernel, start, end - start,
          {"stream": stream, "correlation": c, "External id": external, "device": 0}, p=0, t=stream)
        out.append({"ph": "s", "id": c, "pid": pid, "tid": tid, "ts": round(ts, 3), "cat": "ac2g", "name": "ac2g"})
        out.append({"ph": "f", "id": c, "pid": 0, "tid": stream, "ts": round(start, 3), "cat": "ac2g",
                    "name": "ac2g", "bp": "e"})

    def wait(ts, stream, on_stream, at):
        record, waiting = next(counter), next(counter)
        x("cuda_runtime", "cudaEventRecord", ts, 0.2, {"correlation": record})
        x("cuda_runtime", "cudaStreamWaitEvent", ts + 0.3, 0.2, {"correlation": waiting})
        x("cuda_sync", "Stream Wait Event", at, 0.0,
          {"stream": stream, "correlation": waiting, "wait_on_stream": on_stream,
           "wait_on_cuda_event_record_corr_id": record, "device": 0}, p=0, t=stream)

    comm = {"Collective name": "allreduce", "In msg nelems": step.grad_bytes // 2,
            "Out msg nelems": step.grad_bytes // 2, "dtype": "BFloat16", "Group size": step.ranks,
            "Process Group Name": "0", "Process Group Ranks": str(list(range(step.ranks)))}
    offset = 0.0
    for number in range(step.steps):
        t = timeline(step)
        x("user_annotation", f"ProfilerStep#{number}", offset, t["end"], {})
        for i, (start, end) in enumerate(t["kernels"]):
            ext, ts = 2 * ((step.layers + 1) * number + i) + 1, offset + t["launch"][i]
            last = i == step.layers
            if last:
                wait(ts - 1.0, 7, 20, offset + start)
            x("cpu_op", "aten::_foreach_add_" if last else "aten::mm", ts - 0.5, 3.0,
              {"External id": ext, "Input Dims": [[]] if last else [[step.m, step.k], [step.k, step.n]],
               "Input type": ["c10::BFloat16", "c10::BFloat16"]})
            for pad in range(step.padding):
                x("python_function", f"torch/nn/modules/module.py(1736): _call_impl #{pad}", ts - 0.5, 0.4,
                  {"Python id": pad, "Python parent id": pad - 1, "Ev Idx": 1000 * i + pad})
            launch(ts, "multi_tensor_apply_kernel" if last else "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n",
                   7, offset + start, offset + end, ext)
            if not last:
                a_start, a_end = t["reduces"][i]
                wait(ts + 2.2, 20, 7, offset + a_start)
                x("cpu_op", "record_param_comms", ts + 2.8, 3.0, {"External id": ext + 1, **comm})
                launch(ts + 3.0, "ncclDevKernel_AllReduce_Sum_bf16_RING_LL", 20, offset + a_start,
                       offset + a_end, ext + 1)
        sync_start, sync_end = t["sync"]
        x("cuda_runtime", "cudaStreamSynchronize", offset + sync_start, sync_end - sync_start,
          {"correlation": next(counter)})
        offset += t["end"]
        yield from out
        out.clear()


def write(step: Step, folder: str | Path, stem: str = "rank", gz: bool = False) -> list[Path]:
    """One Kineto JSON per rank (``stem<rank>.json``, or ``.json.gz``); returns the paths."""
    paths = []
    for rank in range(step.ranks):
        path = Path(folder) / f"{stem}{rank}.json{'.gz' if gz else ''}"
        opener = gzip.open if gz else open
        with opener(path, "wt", encoding="utf-8") as fh:
            fh.write('{"schemaVersion": 1, "deviceProperties": [], "traceEvents": [\n')
            for i, event in enumerate(iter_rank_events(step, rank)):
                fh.write(("," if i else "") + json.dumps(event) + "\n")
            fh.write('], "traceName": "synthetic"}\n')
        paths.append(path)
    return paths
