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
)
# Names an axis may not take: they would collide with a results column.
RESERVED = frozenset([name for name, _ in STATUS_FIELDS] + [name for name, _ in METRICS] + ["sweep_id"])
