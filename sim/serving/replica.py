"""Replicas as SimPy processes: where simulated time passes.

A replica is tp x pp GPUs holding one copy of the model. Each of its
engines (one per pipeline stage, as vLLM runs ``pipeline_parallel_size``
virtual engines, each with its own scheduler and 1/pp of the KV blocks) is
a SimPy process that loops: ask its scheduler for a batch; if there is none,
sleep until a request arrives or memory frees (or a static batch's timeout);
otherwise run the iteration and apply its results. An iteration first moves
the blocks preemption swapped out or in over the host link (the device's
``host`` tier bandwidth, PCIe: each GPU moves its own share), then passes
through the pipeline stages in order, each stage a SimPy resource one
iteration holds at a time, so up to pp iterations of different engines are
in flight on a replica, as in a real pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import simpy

from sim.serving.kvcache import BlockManager, KvBudget, kv_bytes_per_token
from sim.serving.pricing import Cost, StagePricer, bucket
from sim.serving.schedulers import Batch, Scheduler


@dataclass
class Records:
    """What the run keeps for the output tables (appended to as iterations end)."""

    iterations: list[tuple] = field(default_factory=list)
    stages: list[tuple] = field(default_factory=list)
    memory: list[tuple] = field(default_factory=list)
    links: list[tuple] = field(default_factory=list)


class Replica:
    """One model replica: its GPUs' ranks, stage pricers, engines and KV budget."""

    def __init__(self, env: simpy.Environment, index: int, name: str, role: str, ranks: tuple[int, ...],
                 tp: int, pp: int, stages: list[StagePricer], budget: KvBudget, host_bytes_per_s: float,
                 offload=None, kv_shipping=None):
        self.env = env
        self.index = index
        self.name = name
        self.role = role
        self.ranks = ranks
        self.tp = tp
        self.pp = pp
        self.stages = stages
        self.budget = budget
        self.host_bytes_per_s = host_bytes_per_s
        self.offload = offload
        self.kv_shipping = kv_shipping
        self.engines: list[Engine] = []
        self.resources = [simpy.Resource(env, capacity=1) for _ in stages] if pp > 1 else []
        self.outstanding = 0
        self._last_kv = -1

    @property
    def gpus(self) -> int:
        return self.tp * self.pp

    def engine_for(self) -> "Engine":
        """The engine with the fewest unfinished requests (vLLM's choice of virtual engine)."""
        return min(self.engines, key=lambda e: (e.load(), e.index))

    def stage_costs(self, batch: Batch) -> list[Cost]:
        shape = batch.shape
        if self.offload is not None and shape.decode_seqs and not shape.prefill_tokens:
            costs = []
            for stage, offload in zip(self.stages, self.offload):
                key = bucket(shape.decode_seqs)
                costs.append(offload.cost(shape.decode_seqs, shape.decode_context)
                             + stage.extras(key) + stage.head(shape.sampled))
            return costs
        costs = [stage.iteration(shape) for stage in self.stages]
        if self.kv_shipping is not None and shape.prefill_tokens:
            # the prefill's new K and V go to the attention devices, layer by layer as they are
            # computed: the iteration lasts as long as the longer of the two
            stage = self.stages[0]
            nbytes = shape.prefill_tokens * kv_bytes_per_token(stage.model, stage.layers, self.tp, stage.p.kv_bytes)
            cost = costs[0]
            costs[0] = Cost(max(cost.seconds, self.kv_shipping.seconds(nbytes)), cost.flops, cost.bytes)
        return costs

    def note_memory(self, now: float, records: Records) -> None:
        engines = self.engines
        used = engines[0].scheduler.kv.used if len(engines) == 1 else sum(e.scheduler.kv.used for e in engines)
        if used != self._last_kv:
            self._last_kv = used
            block = self.budget.block_bytes
            total = sum(e.scheduler.kv.total for e in self.engines)
            records.memory.append((self.name, now, int(used * block), int(total * block)))


class Engine:
    """One scheduler's iteration loop on a replica."""

    def __init__(self, env: simpy.Environment, replica: Replica, index: int, scheduler: Scheduler,
                 records: Records, on_finish, on_handoff=None, before_schedule=None, on_batch=None):
        self.env = env
        self.replica = replica
        self.index = index
        self.scheduler = scheduler
        self.records = records
        self.on_finish = on_finish
        self.on_handoff = on_handoff
        self.before_schedule = before_schedule
        self.on_batch = on_batch
        self.wakeup: simpy.Event | None = None
        self.incoming = 0           # requests being transferred in (disaggregated decode)
        self.iterations = 0
        self.busy_s = 0.0
        env.process(self.loop())

    def load(self) -> int:
        return self.scheduler.unfinished() + self.incoming

    def kv(self) -> BlockManager:
        return self.scheduler.kv

    def wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.triggered:
            self.wakeup.succeed()

    def loop(self):
        env, replica, scheduler = self.env, self.replica, self.scheduler
        iterations = self.records.iterations
        stages = self.records.stages
        block_bytes, host = replica.budget.block_bytes, replica.host_bytes_per_s
        single = replica.pp == 1
        tp = replica.tp
        while True:
            if self.before_schedule is not None:
                self.before_schedule(self)
            batch = scheduler.schedule(env._now)
            if batch is None:
                self.wakeup = env.event()
                if scheduler.retry_at is not None and scheduler.retry_at > env.now:
                    yield self.wakeup | env.timeout(scheduler.retry_at - env.now)
                else:
                    yield self.wakeup
                self.wakeup = None
                continue
            start = env._now
            costs = replica.stage_costs(batch)
            if self.on_batch is not None:
                self.on_batch(self, batch, start)
            if batch.swap_blocks:
                yield env.timeout(batch.swap_blocks * block_bytes / host)
            if single:      # one stage: its row in the timeline is the iteration's (see tables)
                cost = costs[0]
                yield env.timeout(cost.seconds)
                flops, moved = cost.flops * tp, cost.bytes * tp
            else:
                for s, (resource, cost) in enumerate(zip(replica.resources, costs)):
                    with resource.request() as slot:
                        yield slot
                        begin = env._now
                        yield env.timeout(cost.seconds)
                        stages.append((replica.index, s, self.iterations, begin, env._now,
                                       cost.flops, cost.bytes, batch.size))
                flops = sum(c.flops for c in costs) * tp
                moved = sum(c.bytes for c in costs) * tp
            end = env._now
            self.busy_s += end - start
            shape = batch.shape
            iterations.append((replica.index, self.index, start, end, shape.prefill_tokens, shape.decode_seqs,
                               batch.size, batch.kv_blocks_used, batch.preempted, batch.swap_blocks, flops,
                               moved))
            self.iterations += 1
            finished = scheduler.complete(batch, end)
            replica.note_memory(end, self.records)
            for r in finished:
                self.on_finish(self, r)
            if scheduler.handoffs:
                handed, scheduler.handoffs = scheduler.handoffs, []
                for r in handed:
                    self.on_handoff(self, r)
