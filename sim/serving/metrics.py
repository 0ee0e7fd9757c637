"""Summary metrics of a serving run (summary.json).

Definitions (as vLLM's ``benchmarks/benchmark_serving.py`` reports them):
TTFT = first token - arrival; TPOT = (finish - first token) / (output tokens
- 1), for requests with at least two output tokens; end-to-end latency =
finish - arrival; queueing delay = first scheduled - arrival. Percentiles are
numpy's linear interpolation over finished requests.

- ``throughput_tokens_per_s``: output tokens of finished requests / the
  served span (first arrival to last finish); ``requests_per_s`` likewise;
- ``goodput_requests_per_s``: finished requests meeting every SLO the
  scenario gives (``serving.slo``: ttft, tpot, e2e, each with its unit) per
  second of the span (Zhong et al., DistServe, OSDI 2024); with no SLO every
  finished request counts;
- ``mfu`` and ``mbu``: FLOPs and bytes the iterations' kernels moved,
  divided by what the GPUs' peak matrix throughput and memory bandwidth
  could have done while the replicas were busy (sum over iterations of
  duration x GPUs; Databricks' definition of MBU during decode, "LLM
  Inference Performance Engineering: Best Practices", 2023, extended to
  every iteration). Busy time excludes idle gaps, so these say how well the
  iterations use the hardware; ``busy_fraction`` says how often it was busy;
- ``kv_peak_utilization``: the largest fraction of a replica's KV blocks in
  use at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def stats(values: np.ndarray) -> dict[str, float | None]:
    """{mean, p50, p90, p99} of the finite values; nulls when there are none."""
    values = values[np.isfinite(values)]
    if not len(values):
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}


def goodput_mask(times: dict[str, np.ndarray], slo) -> np.ndarray:
    """Finished requests that meet every SLO given (a request with one output token has no TPOT)."""
    ok = times["finished"].copy()
    if slo.ttft is not None:
        ok &= times["ttft"] <= slo.ttft
    if slo.tpot is not None:
        ok &= ~(times["tpot"] > slo.tpot)
    if slo.e2e is not None:
        ok &= times["e2e"] <= slo.e2e
    return ok


def serving_summary(times: dict[str, np.ndarray], iterations, stage_busy_s: dict[int, float], slo,
                    replicas, extra: dict[str, Any]) -> dict[str, Any]:
    """``stage_busy_s``: per replica, the summed busy time of its pipeline stages
    (each stage is tp GPUs)."""
    finished = times["finished"]
    arrival = times["arrival"]
    finish = times["finish"][finished]
    start = float(arrival.min()) if len(arrival) else 0.0
    end = float(finish.max()) if len(finish) else start
    span = end - start
    per_s = (lambda x: x / span) if span > 0 else (lambda x: 0.0)
    output_tokens = int(times["output"][finished].sum())
    good = goodput_mask(times, slo)
    busy_gpu_s = peak_flops_s = peak_bytes_s = 0.0
    for replica in replicas:
        gpu_s = stage_busy_s.get(replica.index, 0.0) * replica.tp
        spec = replica.stages[0].spec
        busy_gpu_s += gpu_s
        peak_flops_s += gpu_s * spec.matrix_peak_flops_per_s(replica.stages[0].p.compute_dtype)
        peak_bytes_s += gpu_s * spec.tier(spec.default_tier).bandwidth_bytes_per_s
    flops = float(iterations["flops"].to_numpy().sum())
    moved = float(iterations["bytes"].to_numpy().sum())
    kv_peak = max((e.scheduler.kv.peak / e.scheduler.kv.total for r in replicas for e in r.engines
                   if e.scheduler.kv.total), default=0.0)
    total_gpus = sum(r.gpus for r in replicas)
    return {
        "requests": int(len(arrival)),
        "finished": int(finished.sum()),
        "rejected": int(len(arrival) - finished.sum()),
        "makespan_s": end,
        "span_s": span,
        "ttft_s": stats(times["ttft"]),
        "tpot_s": stats(times["tpot"]),
        "e2e_s": stats(times["e2e"]),
        "queue_s": stats(times["queue"]),
        "throughput_tokens_per_s": per_s(output_tokens),
        "requests_per_s": per_s(int(finished.sum())),
        "goodput_requests_per_s": per_s(int(good.sum())),
        "slo": {"ttft_s": slo.ttft, "tpot_s": slo.tpot, "e2e_s": slo.e2e},
        "slo_attainment": float(good.sum() / finished.sum()) if finished.sum() else 0.0,
        "mfu": flops / peak_flops_s if peak_flops_s > 0 else 0.0,
        "mbu": moved / peak_bytes_s if peak_bytes_s > 0 else 0.0,
        "busy_fraction": busy_gpu_s / (span * total_gpus) if span > 0 and total_gpus else 0.0,
        "kv_peak_utilization": kv_peak,
        "iterations": int(iterations.num_rows),
        "mean_batch_size": float(iterations["batch_size"].to_numpy().mean()) if iterations.num_rows else 0.0,
        "preemptions": int(times["preemptions"].sum()),
        "output_tokens": output_tokens,
        "prompt_tokens": int(times["prompt"][finished].sum()),
        **extra,
    }
