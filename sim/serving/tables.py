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
    """Rows (ITERATIONS_SCHEMA order) sorted by replica, engine and start."""
    if not rows:
        return ITERATIONS_SCHEMA.empty_table()
    values = np.array(rows, dtype=np.float64)
    values = values[np.lexsort((values[:, 2], values[:, 1], values[:, 0]))]
    arrays = [pa.array(values[:, i].astype(np.int64) if f.type == pa.int64() else values[:, i], type=f.type)
              for i, f in enumerate(ITERATIONS_SCHEMA)]
    return pa.Table.from_arrays(arrays, schema=ITERATIONS_SCHEMA)


def _stage_columns(stage_rows: list[tuple], names: list[str], tp_of: list[int]) -> pa.Table:
    values = np.array(stage_rows, dtype=np.float64)
    values = values[np.lexsort((values[:, 3], values[:, 1], values[:, 0]))]
    replica = values[:, 0].astype(np.int64)
    stage = values[:, 1].astype(np.int64)
    tp = np.array(tp_of, dtype=np.float64)[replica]
    count = len(values)
    units = np.array([f"stage{s}" for s in range(int(stage.max()) + 1)])
    none_int = pa.nulls(count, pa.int64())
    columns = {
        "device": pa.array(np.array(names)[replica]), "unit": pa.array(units[stage]),
        "op_id": pa.array(values[:, 2].astype(np.int64)), "name": pa.array(np.full(count, "iteration")),
        "category": pa.array(np.full(count, "compute")), "start_s": pa.array(values[:, 3]),
        "end_s": pa.array(values[:, 4]), "flops": pa.array(values[:, 5] * tp),
        "bytes": pa.array(values[:, 6] * tp), "stream": pa.array(np.zeros(count, dtype=np.int64)),
        "units_held": pa.array(values[:, 7].astype(np.int64)), "layer": none_int,
        "stage": pa.array(stage), "microbatch": none_int, "phase": pa.array(np.full(count, "serving")),
        "detail": pa.nulls(count, pa.string()),
    }
    return pa.table([columns[f.name].cast(f.type) for f in TIMELINE_SCHEMA], schema=TIMELINE_SCHEMA)


def timeline_table(stage_rows: list[tuple], link_rows: list[tuple], names: list[str],
                   tp_of: list[int]) -> pa.Table:
    """Stage rows (replica, stage, iteration, start, end, flops, bytes, batch) and link rows
    (link, request, start, end, bytes) in the engine's timeline schema."""
    parts = [_stage_columns(stage_rows, names, tp_of)] if stage_rows else []
    if link_rows:
        recorder = TimelineRecorder()
        for link, request, start, end, nbytes in link_rows:
            recorder.record("network", link, request, f"kv request {request}", "comm", start, end, 0.0, nbytes,
                            0, 1, (None, None, None, "kv_transfer", None))
        parts.append(recorder.table())
    return pa.concat_tables(parts) if parts else TIMELINE_SCHEMA.empty_table()


def bubbles_table(timeline: pa.Table, makespan_s: float, units: list[tuple[str, str]]) -> pa.Table:
    """Idle gaps of each replica stage within [0, makespan] (cause ``idle``)."""
    devices = timeline["device"].to_numpy(zero_copy_only=False)
    names = timeline["unit"].to_numpy(zero_copy_only=False)
    starts = timeline["start_s"].to_numpy()
    ends = timeline["end_s"].to_numpy()
    tolerance = 1e-12 * max(1.0, makespan_s)
    found: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    for device, unit in units:
        mine = (devices == device) & (names == unit)
        s, e = starts[mine], ends[mine]
        order = np.argsort(s, kind="stable")
        s = np.append(s[order], makespan_s)
        reach = np.maximum.accumulate(np.concatenate([[0.0], e[order]]))
        gap = s - reach > tolerance
        found.append((device, unit, reach[gap], s[gap]))
    count = sum(len(g[2]) for g in found)
    begin = np.concatenate([g[2] for g in found]) if found else np.zeros(0)
    finish = np.concatenate([g[3] for g in found]) if found else np.zeros(0)
    columns = {
        "device": pa.array([d for d, _, b, _ in found for _ in range(len(b))], type=pa.string()),
        "unit": pa.array([u for _, u, b, _ in found for _ in range(len(b))], type=pa.string()),
        "start_s": pa.array(begin, type=pa.float64()), "end_s": pa.array(finish, type=pa.float64()),
        "duration_s": pa.array(finish - begin, type=pa.float64()),
        "cause": pa.array(["idle"] * count, type=pa.string()),
        "next_op_id": pa.nulls(count, pa.int64()), "stage": pa.nulls(count, pa.int64()),
        "microbatch": pa.nulls(count, pa.int64()),
    }
    return pa.table([columns[f.name] for f in BUBBLES_SCHEMA], schema=BUBBLES_SCHEMA)


def memory_table(rows: list[tuple]) -> pa.Table:
    if not rows:
        return MEMORY_SCHEMA.empty_table()
    name, time_s, used, capacity = zip(*rows)
    columns = {"device": pa.array(name, type=pa.string()), "tier": pa.array(["kv_cache"] * len(rows)),
               "time_s": pa.array(time_s, type=pa.float64()), "used_bytes": pa.array(used, type=pa.int64()),
               "capacity_bytes": pa.array(capacity, type=pa.int64())}
    return pa.table([columns[f.name] for f in MEMORY_SCHEMA], schema=MEMORY_SCHEMA)


def serving_utilization(timeline: pa.Table, makespan_s: float, units: list[tuple]) -> pa.Table:
    return utilization_table(timeline, makespan_s, units)
