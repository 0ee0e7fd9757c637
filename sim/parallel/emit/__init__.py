"""Expansion of (model, parallel plan, cluster) into one training iteration's trace.

The result is an ordinary operator trace (sim.workload.trace) with ranks and
collective ops, so generated models and user traces take the same path
through the simulator. Each technique is one module emitting its ops through
the shared builder (``builder``):

- ``layers``: the model's forward and backward per unit of the pipeline
  schedule (embedding, attention and MLP blocks, LM head; dgrad and wgrad as
  separate segments; recomputation);
- ``tensor`` / ``sequence``: the tensor-parallel collectives around each block;
- ``pipeline``: the schedule's order per stage, sends between stages, the
  tied-embedding gradient all-reduce;
- ``data``: the batch copies from host memory, the bucketed gradient
  synchronisation over replicas;
- ``expert``: MoE layers' router, dispatch / combine all-to-alls over the
  expert-parallel group and experts, and the expert gradients' sync;
- ``fsdp``: sharded data parallelism, ZeRO stages 2 and 3 / FSDP: parameters
  gathered per layer, gradients reduce-scattered per layer;
- ``zero``: the optimizer step, its sharding (ZeRO) and offload to the host.

Fidelity: ``full`` simulates every rank, each collective once for its group;
``folded`` simulates one representative rank per stage (data-parallel replica
0, tensor-parallel rank 0) and gives each collective the groups of the
symmetric replicas as ``mirror_groups``, so their traffic still loads the
topology at the same time.
"""

from __future__ import annotations

from typing import Callable

from sim.hardware.specs import DeviceSpec
from sim.parallel.emit import data, expert, fsdp, layers, pipeline, replay, zero
from sim.parallel.emit.builder import Expansion, Iteration, Stage, TraceBuilder
from sim.parallel.expand import FIDELITIES
from sim.parallel.memory import stage_memory
from sim.parallel.plan import ParallelPlan
from sim.parallel.schedules import stage_order
from sim.workload.transformer import ModelConfig

__all__ = ["Expansion", "expand_training"]

# Copy a unit's ops from an earlier microbatch's where they are the same up to the microbatch
# (sim.parallel.emit.replay); tests turn it off to compare with every unit emitted.
TEMPLATES = True


def _resident(it: Iteration, stage: Stage) -> None:
    """Weights, gradients and optimizer state, resident on every rank of the stage."""
    memory = stage_memory(it.cfg, it.plan, stage.s)
    for rank in stage.ranks.values():
        it.stage_of_rank[rank] = stage.s
        tier = it.spec_of_rank(rank).default_tier
        it.resident[rank] = {"weights": (tier, int(memory.weights_bytes)),
                             "gradients": (tier, int(memory.gradients_bytes)),
                             "optimizer": (tier, int(memory.optimizer_bytes))}
        if it.plan.offload_optimizer:
            it.resident[rank]["optimizer"] = (zero.host_tier(it, rank), int(memory.host_bytes))


def _stage(it: Iteration, d: int, s: int) -> None:
    """Every unit of stage ``s`` of replica ``d`` in its schedule's order."""
    plan = it.plan
    stage = Stage(it, d, s)
    _resident(it, stage)
    order = stage_order(plan.schedule, s, plan.pp, plan.microbatches, plan.virtual_stages)
    split = any(kind == "W" for kind, _, _ in order)
    last_of = {k: {c: m for kind, m, c in order if kind == k} for k in "BW"}
    last_backward = last_of["W" if split else "B"]
    first = {k: next((i for i, (kind, _, _) in enumerate(order) if kind == k), None) for k in "BW"}
    fsdp.gather_root(stage)
    templates: dict[tuple[str, int], replay.Template | None] = {}
    copies = TEMPLATES and replay.usable(stage)
    for index, (kind, m, c) in enumerate(order):
        stage.begin_unit(kind, m, c)
        recording = None
        if copies and m != last_backward.get(c) and m != last_of["B"].get(c) and index not in first.values():
            template = templates.get((kind, c), False)
            if template and template.replay(stage, m):
                continue
            if template is not None:        # None: a unit of this kind is not of the form replayed
                recording = replay.Recording(stage, m, c)
        pipeline.receive(stage, kind, m, c)
        if kind == "F":
            layers.forward(stage, m, c)
        elif kind == "W":
            layers.backward_weight(stage, m, c, m == last_backward.get(c), index == first["W"])
        elif split:
            layers.backward_input(stage, m, c, m == last_of["B"].get(c), index == first["B"])
        else:
            layers.backward(stage, m, c, m == last_backward.get(c), index == first["B"])
        pipeline.send(stage, kind, m, c)
        if recording is not None:
            templates[(kind, c)] = recording.finish()
    fsdp.finish_stage(stage)


def expand_training(cfg: ModelConfig, plan: ParallelPlan, spec_of_rank: Callable[[int], DeviceSpec],
                    fidelity: str = "folded", optimizer_step: bool = True) -> Expansion:
    """One training iteration as a trace (see the module docstring).
    ``optimizer_step=False`` leaves out the optimizer step (for closed-form
    checks of the pipeline alone)."""
    if fidelity not in FIDELITIES:
        raise ValueError(f"fidelity: expected one of {FIDELITIES}, got {fidelity!r}")
    folded = fidelity == "folded"
    it = Iteration(cfg, plan, spec_of_rank, TraceBuilder(cfg, plan, folded),
                   dps=[0] if folded else list(range(plan.replicas)), tps=[0] if folded else list(range(plan.tp)))
    for d in it.dps:
        for s in range(plan.pp):
            _stage(it, d, s)
    if plan.zero >= 2:
        dp_ops = {key: list(ops) for key, ops in it.grad_syncs.items()}
    else:
        dp_ops = data.gradient_buckets(it, zero.gradient_collective(it))
        for key, ops in expert.gradient_buckets(it, zero.gradient_collective(it)).items():
            dp_ops.setdefault(key, []).extend(ops)
    emb_ops = pipeline.embedding_sync(it)
    if optimizer_step:
        steps = zero.optimizer_step(it, dp_ops, emb_ops)
        zero.parameter_allgather(it, steps)
        expert.parameter_allgather(it, steps)
    return Expansion(it.bld.ops, it.resident, it.stage_of_rank, it.bld.hardware_flops,
                     {"layers_per_chunk": it.layers_per_chunk})
