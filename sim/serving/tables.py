"""Arrow tables of a serving run, with their schemas (docs/architecture.md).

``requests.arrow``   one row per request (REQUESTS_SCHEMA)
``iterations.arrow`` one row per iteration per replica engine (ITERATIONS_SCHEMA)
``timeline.arrow``   the engine's timeline schema: one row per iteration per
                     pipeline stage (device = replica name, unit ``stage{s}``)
                     and, in disaggregated runs, one row per KV-transfer flow
                     per directed link (device ``network``)
``bubbles.arrow``    idle intervals of every replica stage, cause ``idle``
``utilization.arrow`` per replica stage and used link
``memory.arrow``     KV-cache occupancy of each replica over time (tier
                     ``kv_cache``; bytes per GPU: blocks in use x block bytes,
                     capacity = blocks x block bytes)

Times missing for a request (a rejected request has none; TPOT needs at
least two tokens) are nulls, never NaN.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from sim.engine.recorder import TIMELINE_SCHEMA, TimelineRecorder
from sim.reports.tables import BUBBLES_SCHEMA, MEMORY_SCHEMA, utilization_table
from sim.serving.state import FINISHED, REJECTED, RequestState

REQUESTS_SCHEMA = pa.schema([
    pa.field("request_id", pa.int64(), nullable=False),
    pa.field("replica", pa.int64()),
    pa.field("decode_replica", pa.int64()),
    pa.field("arrival_s", pa.float64(), nullable=False),
    pa.field("prompt_tokens", pa.int64(), nullable=False),
    pa.field("output_tokens", pa.int64(), nullable=False),
    pa.field("generated_tokens", pa.int64(), nullable=False),
    pa.field("scheduled_s", pa.float64()),
    pa.field("first_token_s", pa.float64()),
    pa.field("finish_s", pa.float64()),
    pa.field("ttft_s", pa.float64()),
    pa.field("tpot_s", pa.float64()),
    pa.field("e2e_s", pa.float64()),
    pa.field("queue_s", pa.float64()),
    pa.field("itl_max_s", pa.float64()),
    pa.field("preemptions", pa.int64(), nullable=False),
    pa.field("prefix_hit_tokens", pa.int64(), nullable=False),
    pa.field("kv_transfer_s", pa.float64()),
    pa.field("status", pa.string(), nullable=False),
    pa.field("reject_reason", pa.string()),
])

ITERATIONS_SCHEMA = pa.schema([
    pa.field("replica", pa.int64(), nullable=False),
    pa.field("engine", pa.int64(), nullable=False),
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("prefill_tokens", pa.int64(), nullable=False),
    pa.field("decode_tokens", pa.int64(), nullable=False),
    pa.field("batch_size", pa.int64(), nullable=False),
    pa.field("kv_blocks_used", pa.int64(), nullable=False),
    pa.field("preempted", pa.int64(), nullable=False),
    pa.field("swap_blocks", pa.int64(), nullable=False),
    pa.field("flops", pa.float64(), nullable=False),
    pa.field("bytes", pa.float64(), nullable=False),
])


def _nullable(values: np.ndarray) -> pa.Array:
    values = np.asarray(values, dtype=np.float64)
    return pa.array(values, type=pa.float64(), mask=~np.isfinite(values))


def request_times(state: RequestState) -> dict[str, np.ndarray]:
    """Per-request latencies (NaN where undefined), as numpy columns."""
    c = state.columns()
    finished = c["status"] == FINISHED
    nan = np.full(len(finished), np.nan)
    ttft = np.where(finished, c["first_token"] - c["arrival"], nan)
    e2e = np.where(finished, c["finish"] - c["arrival"], nan)
    decode_tokens = c["output"] - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(finished & (decode_tokens > 0), (c["finish"] - c["first_token"]) /
                        np.maximum(decode_tokens, 1), nan)
    queue = np.where(finished, c["scheduled"] - c["arrival"], nan)
    return {**c, "finished": finished, "ttft": ttft, "tpot": tpot, "e2e": e2e, "queue": queue}


def requests_table(state: RequestState, times: dict[str, np.ndarray]) -> pa.Table:
    n = state.count
    status = times["status"]
    replica = times["replica"]
    decode_replica = times["decode_replica"]
    finished = times["finished"]
    itl = np.where(finished & (times["output"] > 1), times["itl_max"], np.nan)
    reasons = [state.reject_reason.get(i) for i in range(n)]
    columns = {
        "request_id": pa.array(np.arange(n, dtype=np.int64)),
        "replica": pa.array(replica, type=pa.int64(), mask=replica < 0),
        "decode_replica": pa.array(decode_replica, type=pa.int64(), mask=decode_replica < 0),
        "arrival_s": pa.array(times["arrival"], type=pa.float64()),
        "prompt_tokens": pa.array(times["prompt"], type=pa.int64()),
        "output_tokens": pa.array(times["output"], type=pa.int64()),
        "generated_tokens": pa.array(times["generated"], type=pa.int64()),
        "scheduled_s": _nullable(np.where(finished, times["scheduled"], np.nan)),
        "first_token_s": _nullable(np.where(finished, times["first_token"], np.nan)),
        "finish_s": _nullable(np.where(finished, times["finish"], np.nan)),
        "ttft_s": _nullable(times["ttft"]), "tpot_s": _nullable(times["tpot"]),
        "e2e_s": _nullable(times["e2e"]), "queue_s": _nullable(times["queue"]),
        "itl_max_s": _nullable(itl),
        "preemptions": pa.array(times["preemptions"], type=pa.int64()),
        "prefix_hit_tokens": pa.array(times["prefix_hit_tokens"], type=pa.int64()),
        "kv_transfer_s": _nullable(times["kv_transfer"]),
        "status": pa.array(np.where(status == REJECTED, "rejected", "finished").tolist(), type=pa.string()),
        "reject_reason": pa.array(reasons, type=pa.string()),
    }
    return pa.table(columns, schema=REQUESTS_SCHEMA)


def iterations_table(rows: list[tuple]) -> pa.Table:
    rows = sorted(rows, key=lambda row: (row[0], row[1], row[2]))
    columns = list(zip(*rows)) if rows else [[] for _ in ITERATIONS_SCHEMA]
    arrays = [pa.array(list(col), type=f.type) for col, f in zip(columns, ITERATIONS_SCHEMA)]
    return pa.Table.from_arrays(arrays, schema=ITERATIONS_SCHEMA)


def timeline_table(stage_rows: list[tuple], link_rows: list[tuple], names: list[str],
                   tp_of: list[int]) -> pa.Table:
    """Stage rows (replica, stage, iteration, start, end, flops, bytes, batch) and link rows
    (link, request, start, end, bytes) in the engine's timeline schema."""
    recorder = TimelineRecorder()
    stage_rows = sorted(stage_rows, key=lambda row: (row[0], row[1], row[3]))
    if stage_rows:
        replica, stage, iteration, start, end, flops, moved, batch = (list(c) for c in zip(*stage_rows))
        count = len(stage_rows)
        tp = [tp_of[r] for r in replica]
        recorder.record_columns({
            "device": [names[r] for r in replica], "unit": [f"stage{s}" for s in stage],
            "op_id": iteration, "name": ["iteration"] * count, "category": ["compute"] * count,
            "start_s": start, "end_s": end, "flops": [f * t for f, t in zip(flops, tp)],
            "bytes": [b * t for b, t in zip(moved, tp)], "stream": [0] * count, "units_held": batch,
            "layer": [None] * count, "stage": stage, "microbatch": [None] * count,
            "phase": ["serving"] * count, "detail": [None] * count})
    for link, request, start, end, nbytes in link_rows:
        recorder.record("network", link, request, f"kv request {request}", "comm", start, end, 0.0, nbytes,
                        0, 1, (None, None, None, "kv_transfer", None))
    return recorder.table() if (stage_rows or link_rows) else TIMELINE_SCHEMA.empty_table()


def bubbles_table(timeline: pa.Table, makespan_s: float, units: list[tuple[str, str]]) -> pa.Table:
    """Idle gaps of each replica stage within [0, makespan] (cause ``idle``)."""
    rows: dict[str, list] = {f.name: [] for f in BUBBLES_SCHEMA}
    devices = timeline["device"].to_pylist()
    names = timeline["unit"].to_pylist()
    starts = timeline["start_s"].to_pylist()
    ends = timeline["end_s"].to_pylist()
    per_unit: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for key, s, e in zip(zip(devices, names), starts, ends):
        per_unit.setdefault(key, []).append((s, e))
    tolerance = 1e-12 * max(1.0, makespan_s)
    for key in units:
        cursor = 0.0
        for s, e in sorted(per_unit.get(key, [])) + [(makespan_s, makespan_s)]:
            if s - cursor > tolerance:
                for name, value in zip(("device", "unit", "start_s", "end_s", "duration_s", "cause",
                                        "next_op_id", "stage", "microbatch"),
                                       (key[0], key[1], cursor, s, s - cursor, "idle", None, None, None)):
                    rows[name].append(value)
            cursor = max(cursor, e)
    return pa.table(rows, schema=BUBBLES_SCHEMA)


def memory_table(rows: list[tuple]) -> pa.Table:
    columns = {f.name: [] for f in MEMORY_SCHEMA}
    for name, time_s, used, capacity in rows:
        columns["device"].append(name)
        columns["tier"].append("kv_cache")
        columns["time_s"].append(time_s)
        columns["used_bytes"].append(used)
        columns["capacity_bytes"].append(capacity)
    return pa.table(columns, schema=MEMORY_SCHEMA)


def serving_utilization(timeline: pa.Table, makespan_s: float, units: list[tuple]) -> pa.Table:
    return utilization_table(timeline, makespan_s, units)
