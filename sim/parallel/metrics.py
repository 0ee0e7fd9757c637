"""Training metrics of a run: iteration time, throughput, MFU / HFU, bubbles,
exposed communication and memory.

Definitions:
- ``model_flops``: 3 x the forward FLOPs of the whole model for the global
  batch (forward, and backward at twice the forward), no recomputation; for
  GPT-style models 72 B s l h^2 (1 + s/(6h) + V/(12 l h)) (Korthikanti et al.).
- ``hardware_flops``: what the GPUs execute, recomputation included; with full
  recomputation and GPT shapes this is Megatron-LM's Eq. 3,
  96 B s l h^2 (1 + s/(6h) + V/(16 l h)), and ``model_flops_per_gpu_per_s`` is
  hardware_flops / (iteration time x GPUs): the per-GPU throughput Megatron-LM
  reports (SC'21 Sec. 5.1: 140 TFLOP/s for GPT-3 175B on 1,024 A100s).
- ``mfu`` = model_flops / (time x GPUs x peak); ``hfu`` the same with hardware_flops.
- ``bubble_fraction``: per stage, the time its compute unit is idle over the
  iteration time; the summary gives the mean over stages and each stage.
- ``exposed_comm_s``: per device, the time a collective of that kind (tp, pp,
  dp) is in flight while the device computes nothing; mean over the
  simulated devices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sim.reports.tables import merge_intervals
from sim.workload.transformer import ModelConfig


def forward_flops(cfg: ModelConfig, tokens: int, sequences: int) -> tuple[float, float, float]:
    """(layer GEMM FLOPs, attention-core FLOPs, LM-head FLOPs) of one forward pass."""
    h, s = cfg.hidden, cfg.seq_len
    fc1 = 2 * cfg.ffn if cfg.gated_mlp else cfg.ffn
    dense = 2.0 * tokens * (h * (h + 2 * cfg.kv_dim) + h * h + h * fc1 + cfg.ffn * h)
    core = 4.0 * sequences * s * s * h
    head = 2.0 * tokens * h * cfg.vocab
    return cfg.layers * dense, cfg.layers * core, head


def training_flops(cfg: ModelConfig, global_batch: int, recompute: str) -> tuple[float, float]:
    """(model FLOPs, hardware FLOPs) of one iteration."""
    dense, core, head = forward_flops(cfg, global_batch * cfg.seq_len, global_batch)
    model = 3.0 * (dense + core + head)
    extra = {"none": 0.0, "selective": core, "full": dense + core}[recompute]
    return model, model + extra


def _busy_union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if not intervals:
        return []
    starts = np.array([a for a, _ in intervals])
    ends = np.array([b for _, b in intervals])
    s, e, _ = merge_intervals(starts, ends)
    return list(zip(s.tolist(), e.tolist()))


def _minus_length(outer: list[tuple[float, float]], inner: list[tuple[float, float]]) -> float:
    """Length of the union ``outer`` not covered by the union ``inner`` (both sorted, disjoint)."""
    total, j = 0.0, 0
    for a, b in outer:
        covered = 0.0
        while j < len(inner) and inner[j][1] <= a:
            j += 1
        k = j
        while k < len(inner) and inner[k][0] < b:
            covered += min(b, inner[k][1]) - max(a, inner[k][0])
            k += 1
        total += (b - a) - covered
    return total


def training_summary(scenario, result) -> dict[str, Any]:
    training = scenario.training
    cfg, plan = training.model, training.plan
    T = result.summary["makespan_s"]
    gpus = plan.world
    model_flops, hardware_flops = training_flops(cfg, plan.global_batch, plan.recompute)
    peak = scenario.device.matrix_peak_flops_per_s()
    timeline = result.timeline
    trace = scenario.trace
    devices = timeline["device"].to_pylist()
    units = timeline["unit"].to_pylist()
    cats = timeline["category"].to_pylist()
    starts = timeline["start_s"].to_pylist()
    ends = timeline["end_s"].to_pylist()
    op_ids = timeline["op_id"].to_pylist()
    compute: dict[str, list] = {}
    comm: dict[tuple[str, str], list] = {}
    for device, unit, cat, a, b, op_id in zip(devices, units, cats, starts, ends, op_ids):
        if cat == "compute":
            compute.setdefault(device, []).append((a, b))
        elif cat == "comm" and unit == "comm":
            kind = trace.op(op_id).phase or "other"
            kind = "dp" if kind == "embedding_sync" else kind
            comm.setdefault((device, kind), []).append((a, b))
    rank_of = {name: rank for rank, name in enumerate(scenario.cluster.ranks)}
    stage_of = training.expansion.stage_of_rank
    per_stage: dict[int, list[float]] = {}
    busy_of: dict[str, list[tuple[float, float]]] = {}
    for device, intervals in compute.items():
        merged = _busy_union(intervals)
        busy_of[device] = merged
        busy = sum(b - a for a, b in merged)
        per_stage.setdefault(stage_of[rank_of[device]], []).append((T - busy) / T if T > 0 else 0.0)
    stage_bubbles = [float(np.mean(per_stage[s])) for s in sorted(per_stage)]
    exposed = {}
    simulated = len(compute) or 1
    for kind in ("tp", "pp", "dp"):
        total = 0.0
        for device in compute:
            total += _minus_length(_busy_union(comm.get((device, kind), [])), busy_of[device])
        exposed[kind] = total / simulated
    memory = [stage.as_dict() for stage in training.memory]
    worst = max(training.memory, key=lambda m: m.total_bytes)
    return {
        "model": cfg.name,
        "gpus": gpus,
        "parallel": {"dp": plan.dp, "tp": plan.tp, "pp": plan.pp, "virtual_stages": plan.virtual_stages,
                     "microbatch_size": plan.microbatch_size, "microbatches": plan.microbatches,
                     "global_batch": plan.global_batch, "schedule": plan.schedule,
                     "sequence_parallel": plan.sequence_parallel, "zero": plan.zero,
                     "recompute": plan.recompute},
        "fidelity": training.fidelity,
        "iteration_time_s": T,
        "tokens_per_s": plan.global_batch * cfg.seq_len / T if T > 0 else 0.0,
        "model_flops": model_flops,
        "hardware_flops": hardware_flops,
        "model_flops_per_gpu_per_s": hardware_flops / (T * gpus) if T > 0 else 0.0,
        "mfu": model_flops / (T * gpus * peak) if T > 0 else 0.0,
        "hfu": hardware_flops / (T * gpus * peak) if T > 0 else 0.0,
        "bubble_fraction": float(np.mean(stage_bubbles)) if stage_bubbles else 0.0,
        "bubble_fraction_per_stage": stage_bubbles,
        "exposed_comm_s": exposed,
        "memory_per_gpu": {"peak_bytes": worst.total_bytes, "worst_stage": worst.stage,
                           "weights_bytes": worst.weights_bytes, "gradients_bytes": worst.gradients_bytes,
                           "optimizer_bytes": worst.optimizer_bytes,
                           "activations_bytes": worst.activations_bytes, "stages": memory},
    }
