"""Simulating a serving scenario: build replicas, run the request stream, collect the tables.

Data flow::

    ServingScenario --build--> replicas (StagePricers, KV budgets, one engine per
        pipeline stage with its scheduler) on one Environment, routers, KV transfers
    arrivals (a SimPy process) --router--> engine queues (or ``rejected``)
    engines (SimPy processes): schedule -> price -> timeout -> complete
    --> RequestState + Records --> requests / iterations / timeline / bubbles /
        utilization / memory tables and summary.json (sim.serving.tables, .metrics)
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from sim.engine.calendar import Environment
from sim.engine.fluid import VectorFluidNetwork
from sim.errors import ScenarioError
from sim.network.runtime import NetworkRuntime
from sim.reports.network import link_units
from sim.serving.comm import CollectivePricer
from sim.serving.disagg import KvTransfers
from sim.serving.kvcache import BlockManager, activation_bytes, kv_budget, kv_bytes_per_token, stage_layers
from sim.serving.offload import InterleavedDecode, RemoteAttention
from sim.serving.pricing import StagePricer
from sim.serving.replica import Engine, Records, Replica
from sim.serving.router import ROUTERS
from sim.serving.scenario import PoolPlan, ServingScenario
from sim.serving.schedulers import POLICY_CLASSES
from sim.serving.state import FINISHED, REJECTED, RequestState
from sim.serving import tables
from sim.serving.metrics import serving_summary, stats
from sim.units import format_bytes

ProgressFn = Callable[[int, int], None]
CONTRIBUTION = {"unified": ("prompt", "output"), "prefill": ("prompt",), "decode": ("output",)}


def _stages(scenario: ServingScenario, pool: PoolPlan, ranks: tuple[int, ...], network) -> list[StagePricer]:
    model, section = scenario.model, scenario.section
    where = f"{scenario.path}: serving"
    stages = []
    for s in range(pool.pp):
        group = ranks[s * pool.tp:(s + 1) * pool.tp]
        allreduce = CollectivePricer(network, "allreduce", group, section.tp_algorithm, where) \
            if pool.tp > 1 else None
        send = None
        if s < pool.pp - 1:
            send = CollectivePricer(network, "sendrecv", (group[0], ranks[(s + 1) * pool.tp]), "ring", where)
        stages.append(StagePricer(model, pool.spec, pool.tp, stage_layers(model, pool.pp, s), s == 0,
                                  s == pool.pp - 1, scenario.precision, allreduce, send, where))
    return stages


def _budget(scenario: ServingScenario, pool: PoolPlan, stages: list[StagePricer]):
    """The pool's KV budget: the tightest stage decides (every stage holds every token)."""
    model, kv = scenario.model, scenario.section.kv_cache
    spec = pool.spec
    hbm = spec.tier(spec.default_tier).capacity_bytes
    limits = scenario.limits
    act = kv.activation_reserve_bytes
    if act is None:
        act = activation_bytes(model, limits.max_num_batched_tokens, limits.max_num_seqs, pool.tp,
                               scenario.precision.act_bytes)
    budgets = []
    for stage in stages:
        per_token = kv_bytes_per_token(model, stage.layers, pool.tp, scenario.precision.kv_bytes)
        budgets.append(kv_budget(hbm, kv.gpu_memory_utilization, stage.weights_bytes, act, kv.block_size,
                                 per_token, kv.swap_space_bytes, kv.watermark, share=pool.pp))
    budget = min(budgets, key=lambda b: b.num_gpu_blocks)
    if pool.attention_spec is not None:
        # attention offloaded to memory-rich devices: the KV cache lives there, one device per
        # TP rank holding its KV heads; the GPUs keep weights and activations only
        if hbm * kv.gpu_memory_utilization < stages[0].weights_bytes + act:
            raise ScenarioError(
                f"{scenario.path}: serving: the weights ({format_bytes(stages[0].weights_bytes)}) and "
                f"activations ({format_bytes(act)}) per GPU do not fit in {spec.name}'s {format_bytes(hbm)} x "
                f"gpu_memory_utilization {kv.gpu_memory_utilization}")
        att = pool.attention_spec
        per_token = kv_bytes_per_token(model, model.layers, pool.tp, scenario.precision.kv_bytes)
        budget = kv_budget(att.tier(att.default_tier).capacity_bytes, kv.gpu_memory_utilization, 0.0, 0.0,
                           kv.block_size, per_token, kv.swap_space_bytes, kv.watermark)
        spec = att
    if budget.num_gpu_blocks < 1:
        worst = max(stages, key=lambda st: st.weights_bytes)
        raise ScenarioError(
            f"{scenario.path}: serving: no room for a KV cache on {spec.name}: weights "
            f"{format_bytes(worst.weights_bytes)} + activations {format_bytes(act)} per GPU against "
            f"{format_bytes(hbm)} x gpu_memory_utilization {kv.gpu_memory_utilization}; add tensor or "
            f"pipeline parallelism, quantize the weights, or raise serving.kv_cache.gpu_memory_utilization")
    return budget


def _host_bandwidth(scenario: ServingScenario, pool: PoolPlan) -> float:
    """Swaps cross the host link of the device holding the KV cache."""
    holder = pool.attention_spec or pool.spec
    hosts = [t for t in holder.memory if t.kind == "host"]
    if hosts:
        return hosts[0].bandwidth_bytes_per_s
    if scenario.section.kv_cache.preemption == "swap":
        raise ScenarioError(f"{scenario.path}: serving.kv_cache.preemption: swap needs a host memory tier "
                            f"on {pool.spec.name} (its PCIe link); it has none")
    return float("inf")


class ServingRun:
    """One simulation of a serving scenario."""

    def __init__(self, scenario: ServingScenario, progress: ProgressFn | None = None):
        self.scenario = scenario
        self.progress = progress
        if hasattr(progress, "unit"):        # sim.progress.Progress: count requests, not ops
            progress.unit = "request"
        self.env = Environment()
        self.network = NetworkRuntime(self.env, scenario.cluster, VectorFluidNetwork(self.env, {}),
                                      record=False)
        self.state = RequestState(scenario.requests)
        self.records = Records()
        self.replicas: list[Replica] = []
        self.pools: dict[str, list[Replica]] = {}
        self.names: list[str] = []
        self.transfers: KvTransfers | None = None
        self.done = 0
        self.report_every = max(1, len(scenario.requests) // 100)
        self._build()

    def _build(self) -> None:
        scenario, section = self.scenario, self.scenario.section
        if section.disaggregation is not None:
            self.transfers = KvTransfers(
                self.env, self.network, self.state, [], ROUTERS[section.router](),
                kv_bytes_per_token(scenario.model, scenario.model.layers, 1, scenario.precision.kv_bytes),
                scenario.model.layers, section.disaggregation.kv_transfer, self.records,
                scenario.record_links)
        for pool in scenario.pools:
            stages = _stages(scenario, pool, pool.replicas[0], self.network)
            budget = _budget(scenario, pool, stages)
            host = _host_bandwidth(scenario, pool)
            offload = self._offload(pool, stages)
            members = []
            for number, ranks in enumerate(pool.replicas):
                name = f"replica{number}" if pool.role == "unified" else f"{pool.role}{number}"
                replica = Replica(self.env, len(self.replicas), name, pool.role, ranks, pool.tp, pool.pp,
                                  stages, budget, host, offload, self._kv_shipping(pool))
                self._engines(replica, budget)
                self.replicas.append(replica)
                self.names.append(name)
                members.append(replica)
            self.pools[pool.role] = members
        if self.transfers is not None:
            self.transfers.decode_replicas = self.pools["decode"]

    def _offload(self, pool: PoolPlan, stages: list[StagePricer]):
        """Pricers of decode iterations with offloaded attention (None without offload)."""
        attention = self.scenario.section.attention
        if attention.offload == "pim":
            return [InterleavedDecode(stage, attention.sub_batches) for stage in stages]
        if attention.offload == "device":
            remote = RemoteAttention(pool.attention_spec, self.scenario.cluster, pool.replicas[0][0],
                                     pool.attention_ranks[0][0])
            return [InterleavedDecode(stage, attention.sub_batches, remote) for stage in stages]
        return None

    def _kv_shipping(self, pool: PoolPlan):
        """With attention on other devices, prefills send their new KV there (a pricer), else None."""
        if pool.attention_spec is None:
            return None
        return CollectivePricer(self.network, "sendrecv", (pool.replicas[0][0], pool.attention_ranks[0][0]),
                                "ring", f"{self.scenario.path}: serving.attention")

    def _engines(self, replica: Replica, budget) -> None:
        scenario, section = self.scenario, self.scenario.section
        policy = POLICY_CLASSES[section.scheduler.policy]
        transfers = self.transfers
        for index in range(replica.pp):
            kv = BlockManager(budget, section.kv_cache.prefix_caching and replica.role != "decode")
            scheduler = policy(self.state, kv, scenario.limits, handoff=replica.role == "prefill")
            engine = Engine(self.env, replica, index, scheduler, self.records, self._finished,
                            on_handoff=self._handoff if replica.role == "prefill" else None,
                            before_schedule=transfers.before_schedule if replica.role == "decode" else None,
                            on_batch=transfers.on_batch if replica.role == "prefill" else None)
            replica.engines.append(engine)

    # ------------------------------------------------------------ events

    def _contribution(self, replica: Replica, r: int) -> int:
        state = self.state
        return sum(getattr(state, key)[r] for key in CONTRIBUTION[replica.role])

    def _finished(self, engine: Engine, r: int) -> None:
        replica = engine.replica
        replica.outstanding -= self._contribution(replica, r)
        if replica.role == "prefill":       # finished at its first token: never handed over
            self.state.decode_replica[r] = -1
        self._count()

    def _handoff(self, engine: Engine, r: int) -> None:
        engine.replica.outstanding -= self._contribution(engine.replica, r)
        self.transfers.on_handoff(engine, r)

    def _count(self) -> None:
        self.done += 1
        if self.progress is not None and (self.done % self.report_every == 0
                                          or self.done == len(self.scenario.requests)):
            self.progress(self.done, len(self.scenario.requests))

    def arrivals(self):
        env, state, scenario = self.env, self.state, self.scenario
        pool = self.pools["prefill"] if "prefill" in self.pools else self.pools["unified"]
        router = ROUTERS[scenario.section.router]()
        too_long = scenario.too_long.tolist()
        for r in range(state.count):
            wait = state.arrival[r] - env.now
            if wait > 0:
                yield env.timeout(wait)
            if too_long[r]:
                state.reject(r, f"prompt + output tokens exceed the model's context ({scenario.max_model_len})")
                self._count()
                continue
            replica = router.pick(pool, r)
            engine = replica.engine_for()
            state.replica[r] = replica.index
            state.engine[r] = engine.index
            reason = engine.scheduler.can_ever_fit(r)
            if reason is not None:
                state.reject(r, reason)
                self._count()
                continue
            replica.outstanding += self._contribution(replica, r)
            engine.scheduler.enqueue(r)
            engine.wake()

    # ------------------------------------------------------------ the run

    def run(self):
        from sim.runtime.simulate import Result

        wall_start = time.perf_counter()
        self.env.process(self.arrivals())
        self.env.run()
        wall_s = time.perf_counter() - wall_start
        unserved = [r for r in range(self.state.count) if self.state.status[r] not in (FINISHED, REJECTED)]
        if unserved:
            raise RuntimeError(f"{len(unserved)} requests never finished (first: {unserved[0]}): "
                               f"the serving simulation stalled")
        return self._result(wall_s, Result)

    def _result(self, wall_s: float, result_class) -> Any:
        scenario, records = self.scenario, self.records
        times = tables.request_times(self.state)
        requests = tables.requests_table(self.state, times)
        iterations = tables.iterations_table(records.iterations)
        tp_of = [r.tp for r in self.replicas]
        stage_rows = self._stage_rows()
        timeline = tables.timeline_table(stage_rows, records.links, self.names, tp_of)
        finish = times["finish"][times["finished"]]
        makespan = float(finish.max()) if len(finish) else 0.0
        makespan = max(makespan, max((row[3] for row in records.iterations), default=0.0))
        units = [(r.name, f"stage{s}") for r in self.replicas for s in range(r.pp)]
        bubbles = tables.bubbles_table(timeline, makespan, units)
        util_units = [(r.name, f"stage{s}", "compute",
                       r.stages[s].spec.matrix_peak_flops_per_s(scenario.precision.compute_dtype) * r.tp,
                       r.stages[s].spec.tier(r.stages[s].spec.default_tier).bandwidth_bytes_per_s * r.tp)
                      for r in self.replicas for s in range(r.pp)]
        if records.links:
            util_units += link_units(self.network, rows=[("network", link) for link, *_ in records.links])
        utilization = tables.serving_utilization(timeline, makespan, util_units)
        memory = tables.memory_table(records.memory)
        stage_busy: dict[int, float] = {}
        for row in stage_rows:
            stage_busy[row[0]] = stage_busy.get(row[0], 0.0) + (row[4] - row[3])
        summary = {"scenario": scenario.name, "kind": "serving", "model": scenario.model.name,
                   "device": scenario.device.name, "devices": sum(r.gpus for r in self.replicas),
                   **serving_summary(times, iterations, stage_busy, scenario.section.slo, self.replicas,
                                     self._extra(wall_s))}
        return result_class(timeline, bubbles, utilization, memory, summary,
                            extra_tables={"requests": requests, "iterations": iterations})

    def _stage_rows(self) -> list[tuple]:
        """(replica, stage, iteration, start, end, flops, bytes, batch) per stage interval;
        single-stage replicas record none while running: their iterations are the rows."""
        single = {r.index for r in self.replicas if r.pp == 1}
        tp = [r.tp for r in self.replicas]
        rows = list(self.records.stages)
        counters: dict[tuple[int, int], int] = {}
        for row in self.records.iterations:
            if row[0] in single:
                key = (row[0], row[1])
                number = counters.get(key, 0)
                counters[key] = number + 1
                rows.append((row[0], 0, number, row[2], row[3], row[10] / tp[row[0]], row[11] / tp[row[0]],
                             row[6]))
        return rows

    def _extra(self, wall_s: float) -> dict[str, Any]:
        scenario, section = self.scenario, self.scenario.section
        replicas = []
        for pool in scenario.pools:
            members = self.pools[pool.role]
            budget = members[0].budget
            replicas.append({
                "role": pool.role, "replicas": len(members), "tp": pool.tp, "pp": pool.pp,
                "device": pool.spec.name, "kv_blocks": budget.num_gpu_blocks * pool.pp,
                "kv_block_bytes": budget.block_bytes, "kv_cpu_blocks": budget.num_cpu_blocks * pool.pp,
                "weights_bytes_per_gpu": max(s.weights_bytes for s in members[0].stages),
                "activation_bytes_per_gpu": budget.activation_bytes,
                "kv_capacity_tokens": budget.num_gpu_blocks * pool.pp * budget.block_size})
        extra = {
            "policy": section.scheduler.policy, "router": section.router,
            "max_num_seqs": scenario.limits.max_num_seqs,
            "max_num_batched_tokens": scenario.limits.max_num_batched_tokens,
            "pools": replicas,
            "prefix_cache_hit_tokens": int(sum(self.state.prefix_hit_tokens)),
            "events": self.env.scheduled(), "wall_s": wall_s,
        }
        if self.transfers is not None:
            extra["kv_transfer_s"] = stats(np.array(self.state.kv_transfer_s))
            extra["kv_transfer_bytes"] = self.transfers.moved_bytes
        return extra


def simulate(scenario: ServingScenario, progress: ProgressFn | None = None):
    """Run a serving scenario; returns a sim.runtime.simulate.Result whose
    ``extra_tables`` hold ``requests`` and ``iterations``."""
    return ServingRun(scenario, progress).run()
