"""Data parallelism (PyTorch DDP, Li et al., "PyTorch Distributed", VLDB 2020).

Each microbatch's batch is copied from host memory to the device at the
start of its forward, on the compute stream, as Megatron-LM's ``get_batch``
hands it to the stages that use it: the first stage token and position ids
(int64 each), the last stage labels (int64) and loss mask (fp32).

Gradients are synchronised over the replicas of a (stage, TP rank) in
buckets of ``dp_bucket_bytes`` (DDP's ``bucket_cap_mb``, 25 MiB) as layers
(and the embeddings and LM head, Megatron-LM's ``finalize_model_grads``)
finish their last backward, on stream 2, overlapping the rest of the
backward; the collective is an all-reduce, or a reduce-scatter when ZeRO
shards the optimizer state (sim.parallel.emit.zero). With
``parallel.overlap_grad_reduce: false`` one collective of the whole gradient
buffer starts after the stage's last backward op, as Megatron-LM's local DDP
of 2021 did: ``train_step`` called ``model.allreduce_gradients()``, one
all-reduce per contiguous gradient buffer, after ``forward_backward_func``
returned (NVIDIA/Megatron-LM megatron/training.py, megatron/model/distributed.py;
per-bucket overlap arrived with Megatron-Core's ``--overlap-grad-reduce``).
"""

from __future__ import annotations

from sim.parallel.emit.builder import Iteration, Stage
from sim.parallel.experts import moe_layer_params
from sim.parallel.memory import layer_params, root_params

BATCH_BYTES_PER_TOKEN = {"inputs": 8 + 8, "targets": 8 + 4}
DP_STREAM = 2


def load_batch(stage: Stage, label: str, bytes_per_token: int) -> None:
    """Ordered on the compute stream only: the copy does not wait for the
    activations the unit receives, which the first layer waits for. Nothing
    if the device has no host memory tier."""
    it = stage.it
    tokens = it.plan.microbatch_size * it.cfg.seq_len // it.plan.cp  # a context-parallel rank's share
    for rank in stage.ranks.values():
        spec = it.spec_of_rank(rank)
        host = next((t.name for t in spec.memory if t.kind in ("host", "ddr")), None)
        if host is not None:
            stage.bld.copy(rank, f"{stage.prefix}.{label}", float(tokens * bytes_per_token), host,
                           spec.default_tier, (), phase="fwd", **stage.tag)


def load_inputs(stage: Stage, c: int) -> None:
    """The batch copies a forward unit starts with (first and last stage)."""
    it = stage.it
    if not it.cfg.vocab:
        return
    if stage.s == 0 and c == 0:
        load_batch(stage, "load_inputs", BATCH_BYTES_PER_TOKEN["inputs"])
    if stage.s == it.plan.pp - 1 and c == it.plan.virtual_stages - 1:
        load_batch(stage, "load_targets", BATCH_BYTES_PER_TOKEN["targets"])


def gradients_ready(stage: Stage, layer: int | str) -> None:
    """Record that ``layer``'s gradients (``"root"``: the embeddings' and LM
    head's) are complete after each rank's last compute op."""
    for j, rank in stage.ranks.items():
        stage.it.grads_ready.setdefault((stage.s, j), {}).setdefault(layer, []).append(
            stage.bld.last_compute[rank])


def _grad_bytes(it: Iteration, s: int, layer: int | str, dense_layer: float) -> float:
    """Gradient bytes of one layer (its dense part for a MoE layer: attention,
    router, shared experts) or of the root unit, over the data-parallel group."""
    if layer == "root":
        return root_params(it.cfg, it.plan, s) * it.cfg.dtype_bytes
    if it.cfg.moe is not None and it.cfg.moe.is_moe(layer):
        return moe_layer_params(it.cfg, it.plan)[0] * it.cfg.dtype_bytes
    return dense_layer


def gradient_buckets(it: Iteration, kind: str) -> dict[tuple[int, int], list[int]]:
    """The bucketed gradient collectives of each (stage, TP rank); their ops."""
    plan, bld = it.plan, it.bld
    grad_per_layer = layer_params(it.cfg) / plan.tp * it.cfg.dtype_bytes
    ops: dict[tuple[int, int], list[int]] = {}
    if plan.replicas == 1:
        return ops
    for (s, j), layers in sorted(it.grads_ready.items()):
        group = [plan.rank(d, s, j) for d in range(plan.replicas)]
        mirror = bld.mirrors(lambda dd, jj: [plan.rank(x, s, jj) for x in range(plan.replicas)], "t")
        bucket, deps, done = 0.0, [], []
        items = list(layers.items())
        for index, (layer, ready) in enumerate(items):
            deps += ready
            bucket += _grad_bytes(it, s, layer, grad_per_layer)
            if (plan.overlap_grad_reduce and bucket >= plan.dp_bucket_bytes) or index == len(items) - 1:
                done.append(bld.collective(kind, f"s{s}.dp.{kind}.L{layer}", bucket, group, mirror,
                                           deps, DP_STREAM, "dp", plan.dp_algorithm, stage=s))
                bucket, deps = 0.0, []
        ops[(s, j)] = done
    return ops
