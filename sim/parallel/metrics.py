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
- ``exposed_comm_s``: per device, the time a collective of that kind is in
  flight while the device computes nothing; mean over the simulated devices.
  Kinds are the phases the expansion gives collectives: ``tp`` (tensor
  parallel), ``pp`` (pipeline sends), ``dp`` (data-parallel gradient
  reduction and ZeRO parameter all-gather) and ``embedding_sync`` (the
  all-reduce of the tied embedding's gradient between the first and last
  stage, present with pp > 1 even when dp = 1); plans with expert or context
  parallelism add ``ep`` (MoE dispatch and combine all-to-alls) and ``cp``
  (context-parallel KV exchanges). A kind the plan does not issue is 0.
- ``bubble_s_by_cause_per_device``: each device's idle time on its compute
  units by cause, averaged over the simulated devices (the run summary's
  ``bubble_s_by_cause`` is the sum over them); ``bubble_aggregation`` says so
  in the summary itself.
"""

from __future__ import annotations

from itertools import repeat
from typing import Any

import numpy as np

from sim.reports.arrays import to_numpy
from sim.reports.tables import merge_intervals, op_values, string_codes
from sim.workload.transformer import ModelConfig

# Kinds of collective a training iteration issues (the ``phase`` of its ops).
COMM_KINDS = ("tp", "pp", "dp", "embedding_sync")
# kinds only plans using them report: MoE all-to-alls, context-parallel KV exchanges
OPTIONAL_KINDS = {"ep": lambda plan: plan.ep > 1, "cp": lambda plan: plan.cp > 1}


def forward_flops(cfg: ModelConfig, tokens: int, sequences: int) -> tuple[float, float, float]:
    """(layer GEMM FLOPs, attention-core FLOPs, LM-head FLOPs) of one forward pass."""
    h, s = cfg.hidden, cfg.seq_len
    fc1 = 2 * cfg.ffn if cfg.gated_mlp else cfg.ffn
    dense = 2.0 * tokens * (h * (h + 2 * cfg.kv_dim) + h * h + h * fc1 + cfg.ffn * h)
    core = 4.0 * sequences * s * s * h
    head = 2.0 * tokens * h * cfg.vocab
    if cfg.moe is not None:  # MoE layers: the router, shared and top-k experts in place of the MLP
        from sim.workload.moe import mlp_forward_flops_per_token
        moe_layers = sum(cfg.moe.is_moe(layer) for layer in range(cfg.layers))
        mlp = 2.0 * tokens * (h * fc1 + cfg.ffn * h)
        return (cfg.layers * dense + moe_layers * (tokens * mlp_forward_flops_per_token(cfg) - mlp),
                cfg.layers * core, head)
    return cfg.layers * dense, cfg.layers * core, head


def training_flops(cfg: ModelConfig, global_batch: int, recompute: str) -> tuple[float, float]:
    """(model FLOPs, hardware FLOPs) of one iteration. Materialized attention
    computes the whole s x s scores (Megatron-LM's Eq. 3 counts them). Causal
    FlashAttention does half of that work in each pass, and its backward
    counts 2.5 times its forward (it recomputes the scores; Dao, 2023, as
    sim.hardware.kernels counts it): the model needs 0.5 + 1 of the core's
    full forward, the hardware runs 0.5 + 1.25 (+ 0.5 replayed with full
    recomputation; selective recomputation replays nothing)."""
    dense, core, head = forward_flops(cfg, global_batch * cfg.seq_len, global_batch)
    if getattr(cfg, "attention", "materialized") == "flash":
        model = 3.0 * (dense + head) + 1.5 * core
        hardware = 3.0 * (dense + head) + 1.75 * core + (dense + 0.5 * core if recompute == "full" else 0.0)
        return model, hardware
    model = 3.0 * (dense + core + head)
    extra = {"none": 0.0, "selective": core, "full": dense + core}[recompute]
    return model, model + extra


def _union(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(starts) == 0:
        return np.empty(0), np.empty(0)
    s, e, _ = merge_intervals(starts, ends)
    return s, e


def _uncovered(outer: tuple[np.ndarray, np.ndarray], inner: tuple[np.ndarray, np.ndarray]) -> float:
    """Length of the union ``outer`` not covered by the union ``inner`` (both
    sorted and disjoint): |outer| - |outer intersect inner|."""
    a0, a1 = outer
    b0, b1 = inner
    total = float(np.sum(a1 - a0))
    if len(a0) == 0 or len(b0) == 0:
        return total
    # overlap of each outer interval with the inner union, by prefix sums over inner
    cum = np.concatenate([[0.0], np.cumsum(b1 - b0)])

    def covered_before(t: np.ndarray) -> np.ndarray:
        """Inner length in (-inf, t]."""
        k = np.searchsorted(b0, t, side="right")
        part = np.where(k > 0, np.minimum(t, b1[np.maximum(k - 1, 0)]) - b0[np.maximum(k - 1, 0)], 0.0)
        return cum[np.maximum(k - 1, 0)] * (k > 0) + np.maximum(part, 0.0)

    return total - float(np.sum(covered_before(a1) - covered_before(a0)))


def _compute_and_comm_rows(timeline) -> tuple[np.ndarray, np.ndarray]:
    """Bool masks of a timeline's compute rows and of its devices' ``comm`` rows
    (category and unit ``comm``), from the columns' int32 codes: the numbers
    are then read with numpy from those rows, where filtering a table of the
    columns read (device strings, op ids, starts, ends) made Arrow copies and
    then numpy copies of each (about 40 MB at once on GPT 1T)."""
    category, categories = string_codes(timeline["category"])
    named = lambda names, name: names.index(name) if name in names else -1     # noqa: E731
    is_compute = category == named(categories, "compute")
    is_comm = category == named(categories, "comm")
    del category
    unit, units = string_codes(timeline["unit"])
    is_comm &= unit == named(units, "comm")
    return is_compute, is_comm


def _device_numbers(column, devices: list[str]) -> np.ndarray:
    """Per row of a device column: the index of its device in ``devices``, -1 for others."""
    codes, names = string_codes(column)
    index = {name: i for i, name in enumerate(devices)}
    return np.array([index.get(name, -1) for name in names] + [-1], dtype=np.int64)[codes]


def _groups(codes: np.ndarray, count: int):
    """A function: group number (0..count-1) -> the ascending positions of the
    rows whose code is that number (one stable sort rather than a mask over
    every row per group)."""
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(count + 1)).tolist()
    return lambda number: order[bounds[number]:bounds[number + 1]]


def training_summary(scenario, result) -> dict[str, Any]:
    training = scenario.training
    cfg, plan = training.model, training.plan
    T = result.summary["makespan_s"]
    gpus = plan.world
    model_flops, hardware_flops = training_flops(cfg, plan.global_batch, plan.recompute)
    peak = scenario.device.matrix_peak_flops_per_s()
    timeline = result.timeline
    trace = scenario.trace
    names = scenario.cluster.ranks
    stage_of = training.expansion.stage_of_rank
    simulated_ranks = sorted(stage_of)
    simulated = [names[rank] for rank in simulated_ranks]
    is_compute, is_comm = _compute_and_comm_rows(timeline)
    device_codes = _device_numbers(timeline["device"], simulated)
    compute_codes, comm_codes = device_codes[is_compute], device_codes[is_comm]
    del device_codes
    comm_kinds = COMM_KINDS + tuple(kind for kind, used in OPTIONAL_KINDS.items() if used(plan))
    code = {kind: index for index, kind in enumerate(comm_kinds)}
    phases = op_values(trace.ops, trace.positions_of(to_numpy(timeline["op_id"])[is_comm]), "phase")
    kinds = np.fromiter(map(code.get, phases, repeat(len(comm_kinds))), dtype=np.int64, count=len(phases))
    starts = to_numpy(timeline["start_s"])
    c_start, m_start = starts[is_compute], starts[is_comm]
    del starts
    ends = to_numpy(timeline["end_s"])
    c_end, m_end = ends[is_compute], ends[is_comm]
    del ends, is_compute, is_comm
    # each device's rows (and each device's and kind's) in row order, by one stable sort
    compute_rows = _groups(compute_codes, len(simulated))
    comm_rows = _groups(np.where(comm_codes >= 0, comm_codes * (len(comm_kinds) + 1) + kinds, -1),
                        len(simulated) * (len(comm_kinds) + 1))
    per_stage: dict[int, list[float]] = {}
    exposed = {kind: 0.0 for kind in comm_kinds}
    for index, device in enumerate(simulated):
        rows = compute_rows(index)
        busy = _union(c_start[rows], c_end[rows])
        idle = T - float(np.sum(busy[1] - busy[0]))
        stage = stage_of[simulated_ranks[index]]
        per_stage.setdefault(stage, []).append(idle / T if T > 0 else 0.0)
        for number, kind in enumerate(comm_kinds):
            rows = comm_rows(index * (len(comm_kinds) + 1) + number)
            exposed[kind] += max(0.0, _uncovered(_union(m_start[rows], m_end[rows]), busy))  # no -1e-16
    for kind in exposed:
        exposed[kind] /= max(len(simulated), 1)
    stage_bubbles = [float(np.mean(per_stage[s])) for s in sorted(per_stage)]
    memory = [stage.as_dict() for stage in training.memory]
    worst = max(training.memory, key=lambda m: m.total_bytes)
    return {
        "model": cfg.name,
        "gpus": gpus,
        "parallel": {"dp": plan.dp, "tp": plan.tp, "pp": plan.pp, "virtual_stages": plan.virtual_stages,
                     "microbatch_size": plan.microbatch_size, "microbatches": plan.microbatches,
                     "global_batch": plan.global_batch, "schedule": plan.schedule,
                     "sequence_parallel": plan.sequence_parallel, "zero": plan.zero,
                     "recompute": plan.recompute, "ep": plan.ep, "cp": plan.cp},
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
        "bubble_s_by_cause_per_device": {cause: seconds / max(len(simulated), 1) for cause, seconds
                                         in result.summary["bubble_s_by_cause"].items()},
        "bubble_aggregation": {
            "bubble_fraction": "mean over pipeline stages of the fraction of the iteration a stage's "
                               "compute units are idle (each stage: mean over its simulated devices)",
            "bubble_fraction_per_stage": "per stage, mean over its simulated devices",
            "bubble_s_by_cause": f"sum over the {len(simulated)} simulated devices and their compute units",
            "bubble_s_by_cause_per_device": f"bubble_s_by_cause / {len(simulated)} simulated devices"},
        "exposed_comm_s": exposed,
        "memory_per_gpu": {"peak_bytes": worst.total_bytes, "worst_stage": worst.stage,
                           "weights_bytes": worst.weights_bytes, "gradients_bytes": worst.gradients_bytes,
                           "optimizer_bytes": worst.optimizer_bytes,
                           "activations_bytes": worst.activations_bytes, "stages": memory},
    }
