"""The columns of a sweep's results dataset (docs/sweeps.md): status columns,
then one per axis, then the metrics taken from each point's summary."""

from __future__ import annotations

import pyarrow as pa

STATUS_FIELDS = (("point_id", pa.string()), ("status", pa.string()), ("error", pa.string()),
                 ("wall_s", pa.float64()))
# (column, path of keys into the run's summary)
METRICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("makespan_s", ("makespan_s",)),
    ("total_flops", ("total_flops",)),
    ("ops", ("ops",)),
    ("events", ("events",)),
    ("iteration_time_s", ("iteration_time_s",)),
    ("tokens_per_s", ("tokens_per_s",)),
    ("model_flops_per_gpu_per_s", ("model_flops_per_gpu_per_s",)),
    ("mfu", ("mfu",)),
    ("hfu", ("hfu",)),
    ("bubble_fraction", ("bubble_fraction",)),
    ("exposed_comm_tp_s", ("exposed_comm_s", "tp")),
    ("exposed_comm_pp_s", ("exposed_comm_s", "pp")),
    ("exposed_comm_dp_s", ("exposed_comm_s", "dp")),
    ("exposed_comm_embedding_sync_s", ("exposed_comm_s", "embedding_sync")),
    ("peak_memory_per_gpu_bytes", ("memory_per_gpu", "peak_bytes")),
    # serving scenarios (sim.serving; docs/serving.md)
    ("ttft_mean_s", ("ttft_s", "mean")), ("ttft_p50_s", ("ttft_s", "p50")), ("ttft_p99_s", ("ttft_s", "p99")),
    ("tpot_mean_s", ("tpot_s", "mean")), ("tpot_p50_s", ("tpot_s", "p50")), ("tpot_p99_s", ("tpot_s", "p99")),
    ("e2e_mean_s", ("e2e_s", "mean")), ("e2e_p50_s", ("e2e_s", "p50")), ("e2e_p99_s", ("e2e_s", "p99")),
    ("throughput_tokens_per_s", ("throughput_tokens_per_s",)), ("requests_per_s", ("requests_per_s",)),
    ("goodput_requests_per_s", ("goodput_requests_per_s",)), ("mbu", ("mbu",)),
    ("kv_peak_utilization", ("kv_peak_utilization",)), ("rejected", ("rejected",)),
    # energy (sim.energy; docs/energy.md): the whole cluster's joules and power
    ("energy_j", ("energy", "total_j")), ("average_power_w", ("energy", "average_power_w")),
    ("peak_power_w", ("energy", "peak_power_w")), ("j_per_token", ("energy", "j_per_token")),
)
# Names an axis may not take: they would collide with a results column.
RESERVED = frozenset([name for name, _ in STATUS_FIELDS] + [name for name, _ in METRICS] + ["sweep_id"])
