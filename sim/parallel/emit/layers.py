"""A model chunk's forward and backward on one stage: the transformer's
structure, with the segments of ``layer_segments``.

Forward: on the first stage the embedding, per layer the attention block and
the MLP block (each a tensor-parallel region), on the last stage the LM head
and loss. The first op of the unit allocates the microbatch's activations of
the chunk (sim.parallel.memory.chunk_activation_bytes) and the unit's last
backward op frees them.

Backward, per layer in reverse: with full recomputation the layer's forward
first (with its TP collectives; Korthikanti et al. MLSys 2023); the MLP's
input-gradient (dgrad) segment, then its weight-gradient (wgrad) segment
overlapping the TP collective (or before it, ``parallel.async_tp_allreduce:
false``; sim.parallel.emit.tensor); with selective recomputation the attention
core before the attention's dgrad; the attention's dgrad and wgrad. After the
last backward of each chunk a layer's gradients are ready for data-parallel
synchronisation.

With a split backward (zero-bubble schedules, Qi et al. ICLR 2024) the B unit
is the backward without the wgrad segments (and without the embedding's
gradient) and the W unit is those, per layer in reverse. The activations are
two tensors then: the part only B needs, freed by B's last op, and the
inputs of the weight GEMMs (sim.parallel.memory.layer_wgrad_input_bytes),
freed by W's last op; with full recomputation B rebuilds the latter, so its
first op allocates them.

A MoE layer's MLP block is the expert emitter's (sim.parallel.emit.expert):
router, dispatch and combine all-to-alls, experts. Sharded data parallelism
(sim.parallel.emit.fsdp) hooks in per layer: its
parameters gathered before a use (forward, or backward / B) and freed by the
use's last op, its gradients reduce-scattered after its wgrad.
"""

from __future__ import annotations

from sim.parallel.emit import context, data, expert, fsdp, tensor
from sim.parallel.emit.builder import Stage
from sim.parallel.memory import chunk_activation_bytes, layer_wgrad_input_bytes
from sim.parallel.schedules import SPLIT_BACKWARD


def _ends(stage: Stage, c: int) -> tuple[bool, bool]:
    """(the unit holds the embedding, the unit holds the LM head)."""
    it = stage.it
    vocab = bool(it.cfg.vocab)
    first = stage.s == 0 and c == 0 and vocab
    last = stage.s == it.plan.pp - 1 and c == it.plan.virtual_stages - 1 and vocab
    return first, last


def _frees(*tensors: str | None) -> dict:
    names = tuple(t for t in tensors if t)
    return {"frees": names} if names else {}


def _w_inputs_bytes(stage: Stage) -> float:
    it = stage.it
    return layer_wgrad_input_bytes(it.cfg, it.plan) * it.layers_per_chunk


def _forward_tensors(stage: Stage, m: int, c: int) -> list[dict]:
    """What the forward's first ops allocate, one mapping per op."""
    it = stage.it
    kept = chunk_activation_bytes(it.cfg, it.plan)
    if it.plan.schedule not in SPLIT_BACKWARD:
        return [{"tensor": f"act.m{m}.c{c}", "alloc_bytes": kept}]
    if it.plan.recompute == "full":
        return [{"tensor": f"act.m{m}.c{c}", "alloc_bytes": kept}]
    w = _w_inputs_bytes(stage)
    return [{"tensor": f"act.m{m}.c{c}", "alloc_bytes": kept - w},
            {"tensor": f"actw.m{m}.c{c}", "alloc_bytes": w}]


def forward(stage: Stage, m: int, c: int) -> None:
    it = stage.it
    first, last = _ends(stage, c)
    holds = _forward_tensors(stage, m, c)

    def hold() -> dict:
        return holds.pop(0) if holds else {}

    data.load_inputs(stage, c)
    if first:
        tensor.run(stage, "fwd.embed", "embed", "fwd", **hold())
    for layer in it.chunk_layers(stage.s, c):
        params = fsdp.gather_layer(stage, layer, f"F{m}.c{c}")
        _attention(stage, layer, "fwd", "", **hold())
        if expert.is_moe(stage, layer):
            expert.forward(stage, layer, m, **hold())
        else:
            tensor.run(stage, "fwd.mlp", f"L{layer}.mlp", "fwd", sync=True, layer=layer, **hold(), **_frees(params))
        fsdp.layer_done(stage)
    if last:
        tensor.run(stage, "fwd.head", "head", "fwd")


def _attention(stage: Stage, layer: int, phase: str, label: str, **extra) -> None:
    """A layer's attention block (with context parallelism, the ring or all-gather's)."""
    if stage.it.plan.cp > 1:
        context.attention(stage, layer, phase, label=label, first=extra)
    else:
        tensor.run(stage, "fwd.attn", f"L{layer}.{label}attn", phase, sync=True, layer=layer, **extra)


def _attention_dgrad(stage: Stage, layer: int, **extra) -> None:
    """The attention block's input gradient; ``extra`` goes to its last op."""
    if stage.it.plan.cp > 1:
        context.attention(stage, layer, "bwd", backward=True, last=extra)
    else:
        tensor.run(stage, "bwd.attn.dgrad", f"L{layer}.attn.dgrad", "bwd", sync=True, layer=layer, **extra)


def _recompute_forward(stage: Stage, layer: int, m: int, **extra) -> None:
    _attention(stage, layer, "recompute", "recompute.", **extra)
    if expert.is_moe(stage, layer):
        expert.forward(stage, layer, m, phase="recompute", label="recompute.")
    else:
        tensor.run(stage, "fwd.mlp", f"L{layer}.recompute.mlp", "recompute", sync=True, layer=layer)


def backward(stage: Stage, m: int, c: int, last_microbatch: bool, first_backward: bool) -> None:
    """The whole backward of a unit. ``last_microbatch``: this is the chunk's
    last backward, after which its layers' gradients are complete;
    ``first_backward``: the stage's first."""
    it = stage.it
    first, last = _ends(stage, c)
    act = f"act.m{m}.c{c}"
    recompute = it.plan.recompute
    root_grads = fsdp.root_gradient_buffer(stage, first_backward)
    if last:
        tensor.run(stage, "bwd.head", "head.bwd", "bwd", **root_grads)
        root_grads = {}
        _head_gradients_ready(stage, last_microbatch)
    layers = it.chunk_layers(stage.s, c)
    for layer in reversed(layers):
        params = fsdp.gather_layer(stage, layer, f"B{m}.c{c}")
        if recompute == "full":
            _recompute_forward(stage, layer, m)
        if expert.is_moe(stage, layer):
            expert.backward_input(stage, layer, m, with_weights=True)
        else:
            tensor.backward(stage, "mlp", layer, **fsdp.gradient_buffer(stage, layer, m))
        if recompute == "selective" and "recompute.core" in stage.seg:   # none with flash attention
            tensor.run(stage, "recompute.core", f"L{layer}.recompute.core", "recompute", layer=layer)
        last_of_unit = layer == layers[0] and not first
        tensor.backward(stage, "attn", layer, lambda: _attention_dgrad(stage, layer),
                        **_frees(act if last_of_unit else None, params))
        fsdp.layer_done(stage)
        fsdp.reduce_layer(stage, layer, m)
        if last_microbatch:
            data.gradients_ready(stage, layer)
    if first:
        tensor.run(stage, "bwd.embed", "embed.bwd", "bwd", **_frees(act), **root_grads)
        if last_microbatch:
            data.gradients_ready(stage, "root")


def _head_gradients_ready(stage: Stage, last_microbatch: bool) -> None:
    """The LM head's gradients are complete (a separate copy of the word
    embeddings only when the last stage is not also the first)."""
    if last_microbatch and stage.it.plan.pp > 1:
        data.gradients_ready(stage, "root")


def backward_input(stage: Stage, m: int, c: int, last_microbatch: bool, first_backward: bool) -> None:
    """The B unit of a split backward: input gradients only (the LM head's
    fused segment whole, its weight gradient included)."""
    it = stage.it
    _, last = _ends(stage, c)
    recompute = it.plan.recompute
    if last:
        tensor.run(stage, "bwd.head", "head.bwd", "bwd", **fsdp.root_gradient_buffer(stage, first_backward))
        _head_gradients_ready(stage, last_microbatch)
    layers = it.chunk_layers(stage.s, c)
    rebuild = {"tensor": f"actw.m{m}.c{c}", "alloc_bytes": _w_inputs_bytes(stage)} if recompute == "full" else {}
    for layer in reversed(layers):
        params = fsdp.gather_layer(stage, layer, f"B{m}.c{c}")
        if recompute == "full":
            _recompute_forward(stage, layer, m, **rebuild)
            rebuild = {}
        if expert.is_moe(stage, layer):
            expert.backward_input(stage, layer, m, with_weights=False)
        else:
            tensor.run(stage, "bwd.mlp.dgrad", f"L{layer}.mlp.dgrad", "bwd", sync=True, layer=layer)
        if recompute == "selective" and "recompute.core" in stage.seg:
            tensor.run(stage, "recompute.core", f"L{layer}.recompute.core", "recompute", layer=layer)
        _attention_dgrad(stage, layer, **_frees(f"act.m{m}.c{c}" if layer == layers[0] else None, params))
        fsdp.layer_done(stage)


def backward_weight(stage: Stage, m: int, c: int, last_microbatch: bool, first_backward: bool) -> None:
    """The W unit of a split backward: weight gradients, per layer in reverse,
    then the embedding's on the first stage."""
    first, last = _ends(stage, c)
    actw = f"actw.m{m}.c{c}"
    layers = stage.it.chunk_layers(stage.s, c)
    for layer in reversed(layers):
        if expert.is_moe(stage, layer):
            expert.backward_weight(stage, layer, m)
        else:
            tensor.run(stage, "bwd.mlp.wgrad", f"L{layer}.mlp.wgrad", "bwd", layer=layer,
                       **fsdp.gradient_buffer(stage, layer, m))
        last_of_unit = layer == layers[0] and not first
        tensor.run(stage, "bwd.attn.wgrad", f"L{layer}.attn.wgrad", "bwd", layer=layer,
                   **_frees(actw if last_of_unit else None))
        fsdp.reduce_layer(stage, layer, m)
        if last_microbatch:
            data.gradients_ready(stage, layer)
    if first:
        root_grads = {} if last else fsdp.root_gradient_buffer(stage, first_backward)
        tensor.run(stage, "bwd.embed", "embed.bwd", "bwd", **_frees(actw), **root_grads)
        if last_microbatch:
            data.gradients_ready(stage, "root")
