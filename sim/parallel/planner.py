"""A plan search (``accsim plan``): judge, simulate, rank.

``judge`` takes every candidate of sim.parallel.search, validates it as a
``parallel:`` block of the scenario (sim.parallel.plan, the same rules as a
run) and estimates its memory per stage (sim.parallel.fit, the dry run):
rejected candidates keep their one-line reason. ``simulate`` runs the
survivors at folded fidelity as the design points of a sweep on Dask
(sim.sweeps.runner) in a temporary directory. ``rank`` orders the simulated
plans by the objective: ``throughput`` by tokens/s, highest first (with a
fixed model and global batch, the same order as model FLOP/s per GPU);
``memory`` by the simulated peak memory per GPU, lowest first, then by
tokens/s. Equal plans keep the enumeration order. ``table_of`` builds the
``candidates`` table (schema ``CANDIDATE_SCHEMA``, docs/architecture.md).

Candidate statuses: ``ok`` (simulated), ``oom`` (the memory estimate exceeds
a device's capacity), ``invalid`` (the plan rules refuse it, or the
simulation did), ``too_large`` (too many ops to simulate), ``error`` (the
simulation failed or timed out).
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import pyarrow as pa

from sim.errors import AccsimError
from sim.parallel.search import Candidate, SearchSpace, enumerate_candidates, resolved_space

# keys of the scenario's parallel: block the search sets, or drops because they
# are tied to the scenario's own plan (its microbatch count, FSDP group sizes)
DROPPED_KEYS = ("microbatches", "fsdp", "shard_group", "zero_prefetch")
RESULT_METRICS = ("iteration_time_s", "tokens_per_s", "model_flops_per_gpu_per_s", "mfu", "hfu",
                  "bubble_fraction", "peak_memory_per_gpu_bytes")

CANDIDATE_SCHEMA = pa.schema(
    [("candidate_id", pa.int64()), ("rank", pa.int64()), ("status", pa.string()), ("reason", pa.string())]
    + [(name, pa.int64()) for name in ("dp", "tp", "pp", "cp", "ep", "virtual_stages", "microbatch_size",
                                       "microbatches")]
    + [("schedule", pa.string()), ("zero", pa.int64()), ("recompute", pa.string()),
       ("sequence_parallel", pa.bool_()), ("estimated_peak_bytes", pa.float64()),
       ("estimated_worst_stage", pa.int64()), ("capacity_bytes", pa.float64())]
    + [(name, pa.float64()) for name in RESULT_METRICS])


@dataclass(frozen=True)
class Judged:
    """A candidate after the dry run: ``reason`` is why it is rejected (None: simulate it)."""

    id: int
    candidate: Candidate
    status: Optional[str] = None
    reason: Optional[str] = None
    peak_bytes: Optional[float] = None
    worst_stage: Optional[int] = None
    capacity_bytes: Optional[float] = None


@dataclass(frozen=True)
class Ranked:
    judged: Judged
    status: str
    reason: Optional[str]
    result: dict = field(default_factory=dict)
    rank: Optional[int] = None

    @property
    def candidate(self) -> Candidate:
        return self.judged.candidate


def base_parallel(setup) -> dict:
    """The scenario's ``parallel:`` block without the keys the search sets or drops."""
    raw = dict(setup.raw.get("parallel") or {})
    return {k: v for k, v in raw.items() if k not in DROPPED_KEYS}


def judge(setup, space: SearchSpace = SearchSpace()) -> list[Judged]:
    """Every candidate of ``space`` for the scenario, validated and checked for memory."""
    from sim.parallel.fit import ops_bound_message, overflow_message, plan_fit
    from sim.parallel.plan import plan_from_dict
    base = base_parallel(setup)
    batch = setup.plan.global_batch
    out = []
    candidates = enumerate_candidates(setup.model, setup.world, batch, space, setup.plan.schedule,
                                      setup.plan.cp_load_balance)
    for index, candidate in enumerate(candidates):
        try:
            plan = plan_from_dict({**base, **candidate.parallel(batch)}, setup.model, setup.world)
        except AccsimError as exc:
            out.append(Judged(index, candidate, "invalid", str(exc)))
            continue
        fit = plan_fit(setup.model, plan, setup.spec_of_rank)
        worst = fit.worst
        sizes = {"peak_bytes": worst.memory.total_bytes, "worst_stage": worst.memory.stage,
                 "capacity_bytes": worst.capacity_bytes}
        if not fit.fits:
            out.append(Judged(index, candidate, "oom", overflow_message(fit), **sizes))
            continue
        too_large = ops_bound_message(setup.model, plan, "folded")
        out.append(Judged(index, candidate, "too_large" if too_large else None, too_large, **sizes))
    return out


def simulate(setup, survivors: list[Judged], workers: int | None = None, timeout_s: float | None = None,
             progress: bool = True, client=None) -> dict[int, dict]:
    """Simulate each survivor (folded fidelity) as a point of a sweep; returns
    the sweep's result row (status, error, metrics) per candidate id."""
    from sim.sweeps.points import SweepSpec, point_id
    from sim.sweeps.runner import sweep
    base = copy.deepcopy(dict(setup.raw))
    base["parallel"] = base_parallel(setup)
    base["training"] = {**(base.get("training") or {}), "fidelity": "folded", "continue_on_oom": False}
    batch = setup.plan.global_batch
    points = [{f"parallel.{k}": v for k, v in j.candidate.parallel(batch).items()} for j in survivors]
    ids = {point_id(base, p): j.id for p, j in zip(points, survivors)}
    spec = SweepSpec(f"plan-{setup.name}", setup.path.resolve(), base, tuple(points),
                     params=tuple(points[0]) if points else ())
    with tempfile.TemporaryDirectory(prefix="accsim-plan-") as folder:
        table = sweep(spec, folder, client=client, workers=workers, timeout_s=timeout_s, progress=progress)
    return {ids[row["point_id"]]: row for row in table.to_pylist()}


def _order_key(objective: str):
    if objective == "memory":
        return lambda r: (r.result["peak_memory_per_gpu_bytes"], -r.result["tokens_per_s"], r.judged.id)
    return lambda r: (-r.result["tokens_per_s"], r.result["peak_memory_per_gpu_bytes"], r.judged.id)


def rank(judged: list[Judged], results: dict[int, dict], objective: str = "throughput") -> list[Ranked]:
    """Simulated plans ranked by ``objective`` (1 = best), then the others in enumeration order."""
    ok, rest = [], []
    for j in judged:
        row = results.get(j.id)
        if j.status is not None:
            rest.append(Ranked(j, j.status, j.reason))
        elif row is None:
            rest.append(Ranked(j, "error", "not simulated (the sweep returned no result)"))
        elif row["status"] == "ok" and all(row.get(m) is not None for m in RESULT_METRICS):
            ok.append(Ranked(j, "ok", None, {m: row[m] for m in RESULT_METRICS}))
        else:
            rest.append(Ranked(j, row["status"] if row["status"] != "ok" else "error",
                               row.get("error") or "the simulation reported no training metrics"))
    ok.sort(key=_order_key(objective))
    ranked = [Ranked(r.judged, r.status, r.reason, r.result, position) for position, r in enumerate(ok, 1)]
    return ranked + sorted(rest, key=lambda r: r.judged.id)


def table_of(ranked: list[Ranked]) -> pa.Table:
    """The ``candidates`` table (CANDIDATE_SCHEMA), one row per candidate, in ``ranked`` order."""
    rows = []
    for r in ranked:
        j = r.judged
        row = {"candidate_id": j.id, "rank": r.rank, "status": r.status, "reason": r.reason,
               **asdict(j.candidate), "estimated_peak_bytes": j.peak_bytes,
               "estimated_worst_stage": j.worst_stage, "capacity_bytes": j.capacity_bytes}
        row.update({m: r.result.get(m) for m in RESULT_METRICS})
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=CANDIDATE_SCHEMA)


def summary_of(setup, ranked: list[Ranked], objective: str, space: SearchSpace) -> dict[str, Any]:
    """summary.json of a plan search: the scenario, the space searched, counts and the best plan."""
    counts = {"enumerated": len(ranked), "rejected": sum(r.judged.status is not None for r in ranked)}
    counts["simulated"] = counts["enumerated"] - counts["rejected"]
    for status in ("ok", "oom", "invalid", "too_large", "error"):
        counts[status] = sum(r.status == status for r in ranked)
    best = next((r for r in ranked if r.rank == 1), None)
    resolved = resolved_space(setup.model, setup.world, space)
    return {"scenario": setup.name, "model": setup.model.name, "gpus": setup.world,
            "global_batch": setup.plan.global_batch, "objective": objective,
            "space": {k: list(v) for k, v in asdict(resolved).items()}, "counts": counts,
            "best": None if best is None else {**asdict(best.candidate), **best.result}}
