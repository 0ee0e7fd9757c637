"""Explicit offload and prefetch ops between memory tiers.

Two generators of single-device traces whose copies run as real transfers
on the device's tiers (sim.engine.fluid), overlapping compute when the
dependencies and the bandwidth allow:

``coe_switching_ops``: model switching in a composition-of-experts
deployment (Samba-CoE on SN40L: Prabhakar et al., arXiv:2405.07518, 2024):
every expert's weights live in the capacity tier (DDR); HBM caches
``hbm_slots`` experts, least recently used out; a request for an expert not
in HBM streams its weights DDR -> HBM before its decode steps, each of which
reads the expert's weights from HBM (decode is bandwidth-bound). With
``prefetch`` the next request's expert is loaded while the current request
decodes (the router's queue is known one request ahead); without it the
load starts when the previous request has finished.

``zero_offload_ops``: a training iteration with ZeRO-Offload's placement
(Ren et al., "ZeRO-Offload: Democratizing Billion-Scale Model Training",
USENIX ATC 2021): each layer's gradients (2 bytes per parameter, bf16) go
GPU -> host as the backward pass produces them, the Adam step runs on the
host (fp32 master weights, momentum and variance: 16 bytes read and 12
written per parameter, bound by host memory bandwidth), and the updated
bf16 parameters come back host -> GPU; optionally each layer's activations
are offloaded after its forward and prefetched one layer ahead of its
backward. ``offload_copy`` is the building block other generators (the
parallel expansion) can call: one copy op with its tensor bookkeeping.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from sim.workload.trace import Op


class _Ops:
    def __init__(self):
        self.ops: list[Op] = []

    def add(self, **fields) -> int:
        op = Op(id=len(self.ops), **fields)
        self.ops.append(op)
        return op.id


def offload_copy(ops: list[Op], name: str, nbytes: float, src_tier: str, dst_tier: str,
                 deps: Sequence[int] = (), stream: int = 1, tensor: str | None = None,
                 frees: Sequence[str] = (), **fields) -> int:
    """Append a copy of ``nbytes`` from ``src_tier`` to ``dst_tier`` (an offload
    or a prefetch) to ``ops`` with the next id; ``tensor`` is allocated on
    ``dst_tier`` when it starts, ``frees`` released when it ends. Returns its id."""
    op_id = (ops[-1].id + 1) if ops else 0
    ops.append(Op(id=op_id, name=name, op="copy", flops=0.0, bytes_read=float(nbytes),
                  bytes_written=float(nbytes), deps=tuple(deps), stream=stream, src_tier=src_tier,
                  dst_tier=dst_tier, tensor=tensor, frees=tuple(frees), **fields))
    return op_id


def coe_switching_ops(requests: Sequence[int], expert_params: float, tokens_per_request: int,
                      batch: int, hbm_slots: int, prefetch: bool = True, dtype_bytes: int = 2,
                      weight_tier: str = "ddr", cache_tier: str = "hbm") -> list[Op]:
    """Decode ``tokens_per_request`` tokens for each request (routed to expert
    ``requests[i]``), switching experts through an HBM cache of ``hbm_slots``."""
    weight_bytes = expert_params * dtype_bytes
    ops: list[Op] = []
    cache: OrderedDict[int, int] = OrderedDict()        # expert -> op id of its last use
    loaded_by: dict[int, int] = {}
    previous_end: int | None = None
    for index, expert in enumerate(requests):
        deps: list[int] = []
        if expert not in cache:
            load_deps: list[int] = []
            if len(cache) >= hbm_slots:
                victim, last_use = cache.popitem(last=False)
                load_deps.append(offload_copy(ops, f"evict expert{victim}", 0.0, cache_tier, cache_tier,
                                              deps=[last_use], stream=1, frees=[f"expert{victim}"],
                                              phase="evict"))
            if not prefetch and previous_end is not None:
                load_deps.append(previous_end)
            loaded_by[expert] = offload_copy(ops, f"load expert{expert}", weight_bytes, weight_tier,
                                             cache_tier, deps=load_deps, stream=1,
                                             tensor=f"expert{expert}", phase="switch")
            cache[expert] = loaded_by[expert]
        deps.append(loaded_by[expert])
        for token in range(tokens_per_request):
            step = len(ops)
            ops.append(Op(id=step, name=f"req{index}.expert{expert}.token{token}", op="gemm",
                          flops=2.0 * expert_params * batch, bytes_read=weight_bytes,
                          bytes_written=float(batch * 8192 * dtype_bytes), deps=tuple(deps),
                          stream=0, tier=cache_tier, layer=expert, phase="decode"))
            deps = [step]
        cache[expert] = deps[0]
        cache.move_to_end(expert)
        previous_end = deps[0]
    return ops


def zero_offload_ops(layers: int, hidden: int, seq_len: int, microbatch: int,
                     offload_activations: bool = True, dtype_bytes: int = 2,
                     device_tier: str = "hbm", host_tier: str = "host") -> list[Op]:
    """One training iteration of ``layers`` GPT layers with ZeRO-Offload's
    gradient / optimizer / parameter traffic (module docstring).

    Per layer: params 12 h^2; forward one GEMM of (b s) x 12h x h (24 b s h^2
    FLOPs, Megatron-LM's per-layer GEMM FLOPs without the s^2 attention term),
    backward two (dgrad and wgrad); activations 34 s b h bytes (Korthikanti et
    al., MLSys 2023, Table 2, no recomputation, without the attention-score term).
    """
    h, tokens = hidden, seq_len * microbatch
    params = 12 * h * h
    act_bytes = 34.0 * seq_len * microbatch * h
    ops: list[Op] = []

    def gemm(name: str, m: int, n: int, k: int, deps: list[int], layer: int, phase: str, **kw) -> int:
        op_id = len(ops)
        ops.append(Op(id=op_id, name=name, op="gemm", flops=2.0 * m * n * k,
                      bytes_read=float(dtype_bytes * (m * k + k * n)), bytes_written=float(dtype_bytes * m * n),
                      deps=tuple(deps), stream=0, m=m, n=n, k=k, layer=layer, phase=phase,
                      tier=device_tier, **kw))
        return op_id

    previous: list[int] = []
    forward_end: dict[int, int] = {}
    offloaded: dict[int, int] = {}
    for layer in range(layers):
        op = gemm(f"L{layer}.fwd", tokens, 12 * h, h, previous, layer, "fwd",
                  tensor=f"L{layer}.act", alloc_bytes=act_bytes)
        forward_end[layer] = op
        if offload_activations:
            offloaded[layer] = offload_copy(ops, f"L{layer}.act offload", act_bytes, device_tier, host_tier,
                                            deps=[op], stream=1, frees=[f"L{layer}.act"], layer=layer,
                                            phase="offload")
        previous = [op]
    prefetched: dict[int, int] = {}

    def prefetch(layer: int, after: list[int]) -> None:
        if offload_activations and layer >= 0 and layer not in prefetched:
            prefetched[layer] = offload_copy(
                ops, f"L{layer}.act prefetch", act_bytes, host_tier, device_tier,
                deps=[offloaded[layer]] + after, stream=1, tensor=f"L{layer}.act", layer=layer,
                phase="prefetch")

    last_param_load = []
    prefetch(layers - 1, [])
    for layer in reversed(range(layers)):
        prefetch(layer - 1, previous)        # one layer ahead of the backward pass
        deps = previous + ([prefetched[layer]] if offload_activations else [])
        dgrad = gemm(f"L{layer}.dgrad", tokens, h, 12 * h, deps, layer, "bwd")
        wgrad = gemm(f"L{layer}.wgrad", 12 * h, h, tokens, deps, layer, "bwd",
                     frees=(f"L{layer}.act",))
        grads = offload_copy(ops, f"L{layer}.grad offload", dtype_bytes * params, device_tier, host_tier,
                             deps=[wgrad], stream=2, layer=layer, phase="offload")
        step = len(ops)
        ops.append(Op(id=step, name=f"L{layer}.adam (host)", op="elementwise", flops=12.0 * params,
                      bytes_read=16.0 * params, bytes_written=12.0 * params, deps=(grads,), stream=3,
                      tier=host_tier, dtype="fp32", layer=layer, phase="optimizer"))
        last_param_load.append(offload_copy(ops, f"L{layer}.param load", dtype_bytes * params, host_tier,
                                            device_tier, deps=[step], stream=2, layer=layer,
                                            phase="prefetch"))
        previous = [dgrad]
    return ops
