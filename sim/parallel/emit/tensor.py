"""Tensor parallelism (Megatron-LM, Shoeybi et al. 2019; Narayanan et al.
SC'21 Sec. 3.2).

Each layer's attention and MLP blocks split their GEMMs over the t ranks of
the TP group (the shapes are in ``layer_segments``) and end with an
all-reduce of the block's output, b s h bytes in the model's dtype, on
stream 3; with sequence parallelism an all-gather before and a
reduce-scatter after (sim.parallel.emit.sequence). In backward the
all-reduce of a block's input gradient follows its dgrad GEMMs and the
wgrad GEMMs run while it is in flight, as Megatron overlaps them
(``ColumnParallelLinearWithAsyncAllreduce``, ``--async-tensor-model-parallel-
allreduce``); with ``parallel.async_tp_allreduce: false`` it follows the wgrad
GEMMs and the next block waits for it, as in Megatron-LM of 2021, where the
all-reduce was the autograd backward of ``copy_to_tensor_model_parallel_region``
and ran after the linear layer's whole backward (NVIDIA/Megatron-LM
megatron/mpu/layers.py, mappings.py).
"""

from __future__ import annotations

from typing import Callable

from sim.parallel.emit.builder import Stage
from sim.parallel.emit.sequence import tp_collectives

TP_STREAM = 3


def activation_bytes(stage: Stage) -> float:
    """A microbatch's hidden states on one context-parallel rank: b (s / cp) h elements."""
    cfg, plan = stage.it.cfg, stage.it.plan
    return float(plan.microbatch_size * (cfg.seq_len // plan.cp) * cfg.hidden * cfg.dtype_bytes)


def collective(stage: Stage, kind: str, label: str) -> None:
    """A TP collective of the unit's activations after every simulated rank's
    pending work; the ranks' next compute waits for it."""
    nbytes = stage.tp_bytes
    if nbytes is None:
        nbytes = stage.tp_bytes = activation_bytes(stage)
    s, m, c = stage.unit
    op_id = stage.bld.collective(kind, f"{stage.prefix}.{label}.{kind}", nbytes, stage.tp_group, stage.tp_mirrors,
                                 stage.last_ops(), TP_STREAM, "tp", stage.it.plan.tp_algorithm, None, s, m, c)
    stage.set_waits(op_id)


def run(stage: Stage, seg_name: str, label: str, phase: str, sync: bool = False, **extra) -> None:
    """A segment; with ``sync`` a tensor-parallel region, wrapped in its collectives
    (``stage.tp_before`` / ``tp_after``: sim.parallel.emit.sequence.tp_collectives)."""
    parallel = sync and stage.it.plan.tp > 1
    if parallel and stage.tp_before:
        collective(stage, stage.tp_before, label)
    stage.compute(seg_name, label, phase, **extra)
    if parallel:
        collective(stage, stage.tp_after, label)


def backward(stage: Stage, block: str, layer: int, dgrad: Callable[..., None] | None = None,
             **wgrad_extra) -> None:
    """A block's input-gradient (``bwd.<block>.dgrad``, a tensor-parallel
    region) and weight-gradient (``bwd.<block>.wgrad``) segments; ``dgrad``
    replaces the plain dgrad region (attention with context parallelism)."""
    label = f"L{layer}.{block}"
    if stage.it.plan.async_tp_allreduce:
        if dgrad is None:
            run(stage, f"bwd.{block}.dgrad", f"{label}.dgrad", "bwd", sync=True, layer=layer)
        else:
            dgrad()
        run_overlapped(stage, f"bwd.{block}.wgrad", f"{label}.wgrad", layer=layer, **wgrad_extra)
        return
    before, after = tp_collectives(stage.it.plan)
    parallel = stage.it.plan.tp > 1
    if parallel and before:
        collective(stage, before, f"{label}.dgrad")
    stage.compute(f"bwd.{block}.dgrad", f"{label}.dgrad", "bwd", layer=layer)
    stage.compute(f"bwd.{block}.wgrad", f"{label}.wgrad", "bwd", layer=layer, **wgrad_extra)
    if parallel:
        collective(stage, after, f"{label}.dgrad")


def run_overlapped(stage: Stage, seg_name: str, label: str, **extra) -> None:
    """Weight-gradient GEMMs: they do not wait for the TP collective in flight
    before them; the next segment still does."""
    pending = dict(stage.waits)
    for j in stage.waits:
        stage.waits[j] = []
    run(stage, seg_name, label, "bwd", **extra)
    stage.waits.update(pending)
