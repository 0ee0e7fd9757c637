"""Context parallelism: each of the ``cp`` ranks of a context-parallel group
takes seq_len / cp tokens of every sequence; everything but attention is
local, and attention needs every rank's keys and values.

- ``ring`` (ring attention: Liu et al., "Ring Attention with Blockwise
  Transformers", 2023; Megatron-Core / Transformer Engine's context
  parallelism): cp steps; in step k a rank runs FlashAttention of its queries
  against the KV block it holds while it passes that block to the next rank
  of the ring (stream 8, phase ``cp``), so the exchange overlaps the blockwise
  attention. The backward passes the KV block and the accumulated dK, dV on
  (twice the bytes) in cp - 1 steps around the ring;
- ``allgather`` (Llama 3, Dubey et al. 2024, Sec. 3.3.2): K and V are
  all-gathered over the group before the local queries attend all of them;
  the backward all-gathers them again and reduce-scatters dK, dV.

Causal load balancing (``cp_load_balance``, both): the sequence is cut into
2cp chunks of c tokens and rank i takes chunks i and 2cp - 1 - i, so every
rank does the same causal work: in ring step 0 a causal 2c x 2c block, in
each later step two full c x c blocks (a c x 2c kernel); all-gather: the 2c
local queries against the whole sequence, causal. Without it rank i takes
chunk i (2c tokens) and attends chunks <= i only: ring step k gives it a full
2c x 2c block if its KV block came from a lower rank and nothing otherwise,
so the last rank works every step and the others wait for it. Folded runs
give the simulated rank the group's mean FLOPs and the busiest rank's time
per step. Context parallelism runs FlashAttention blocks (Transformer
Engine), so it needs ``attention: flash``; the causal mask halves a
diagonal block's work (FlashAttention's count, sim.hardware.kernels).

The rest of the layer runs the kernels of sim.workload.layer_kernels for the
rank's seq_len / cp tokens; the attention segments are split around the core
(``fwd.attn.pre`` / ``.post``, ``bwd.attn.dgrad.pre`` / ``.post``).
"""

from __future__ import annotations

from dataclasses import replace

from sim.hardware.gemm import precision
from sim.hardware.kernels import AttentionShape, Kernel
from sim.hardware.specs import DeviceSpec
from sim.parallel.emit import tensor
from sim.parallel.emit.builder import Iteration, Stage
from sim.parallel.emit.sequence import tp_collectives
from sim.parallel.expand import Segment, fuse
from sim.parallel.plan import ParallelPlan
from sim.workload.layer_kernels import layer_kernels
from sim.workload.transformer import ModelConfig

CP_STREAM = 8
_SPLIT = ("fwd.attn", "bwd.attn.dgrad")


def local_model(cfg: ModelConfig, plan: ParallelPlan) -> ModelConfig:
    """The model as one context-parallel rank sees it: seq_len / cp tokens."""
    return cfg if plan.cp == 1 else replace(cfg, seq_len=cfg.seq_len // plan.cp)


def _split(kernels: list[Kernel]) -> tuple[list[Kernel], list[Kernel]]:
    """The kernels before and after the attention core."""
    core = [i for i, k in enumerate(kernels) if k.kind == "attention"]
    return kernels[:core[0]], kernels[core[-1] + 1:]


def layer_segments(cfg: ModelConfig, plan: ParallelPlan, spec: DeviceSpec) -> dict[str, Segment]:
    """A rank's layer segments for its seq_len / cp tokens, the attention core cut out."""
    kernels = layer_kernels(local_model(cfg, plan), plan.microbatch_size, plan.tp, plan.sequence_parallel)
    out = {}
    for key, ks in kernels.items():
        if key in _SPLIT:
            pre, post = _split(ks)
            out[f"{key}.pre"], out[f"{key}.post"] = fuse(f"{key}.pre", pre, spec), fuse(f"{key}.post", post, spec)
        elif ks:
            out[key] = fuse(key, ks, spec)
    return out


def _block(cfg: ModelConfig, plan: ParallelPlan, queries: int, keys: int, causal: bool, backward: bool) -> Kernel:
    """FlashAttention of ``queries`` local queries against ``keys`` keys, on one TP rank."""
    shape = AttentionShape(plan.microbatch_size, cfg.heads // plan.tp, (cfg.kv_heads or cfg.heads) // plan.tp,
                           queries, keys, cfg.head_dim, causal)
    nbytes = shape.hbm_bytes(precision(cfg.dtype).a_bytes, backward)
    return Kernel("cp_attention_bwd" if backward else "cp_attention", "attention", shape.flops(backward),
                  nbytes / 2, nbytes / 2, cfg.dtype, attention=shape, backward=backward)


def step_blocks(cfg: ModelConfig, plan: ParallelPlan, index: int, step: int, backward: bool) -> list[Kernel]:
    """The attention kernels of CP rank ``index`` in ring step ``step`` (or,
    all-gather, step 0 is all of it): the module docstring's causal work."""
    cp, c = plan.cp, cfg.seq_len // (2 * plan.cp)
    block = lambda q, k, causal: _block(cfg, plan, q, k, causal, backward)  # noqa: E731
    if plan.cp_algorithm == "allgather":
        if plan.cp_load_balance:
            return [block(2 * c, cfg.seq_len, True)]
        return ([block(2 * c, 2 * c * index, False)] if index else []) + [block(2 * c, 2 * c, True)]
    if step == 0:
        return [block(2 * c, 2 * c, True)]
    if plan.cp_load_balance:
        return [block(c, 2 * c, False)]
    source = (index - step) % cp
    return [block(2 * c, 2 * c, False)] if source < index else []


def _state(it: Iteration) -> dict:
    return it.extras.setdefault("cp", {})


def _step_segment(stage: Stage, j: int, step: int, backward: bool) -> Segment:
    """The attention segment of a ring step for TP rank j's replica (folded:
    mean FLOPs over the group, the busiest rank's time)."""
    it, plan = stage.it, stage.it.plan
    spec = it.spec_of_rank(stage.ranks[j])
    indices = range(plan.cp) if stage.bld.folded else [stage.d % plan.cp]
    key = (spec.name, tuple(indices), step, backward)
    cache = _state(it)
    if key not in cache:
        each = [fuse("cp_attention", step_blocks(it.cfg, plan, i, step, backward), spec) for i in indices]
        n = len(each)
        cache[key] = Segment("cp_attention", sum(s.flops for s in each) / n, sum(s.matrix_flops for s in each) / n,
                             sum(s.bytes_read for s in each) / n, sum(s.bytes_written for s in each) / n,
                             max(s.duration_s for s in each), max(s.parts for s in each))
    return cache[key]


def kv_bytes(cfg: ModelConfig, plan: ParallelPlan) -> float:
    """K and V of one rank's tokens on one TP rank."""
    return 2.0 * plan.microbatch_size * cfg.seq_len / plan.cp * cfg.kv_dim / plan.tp * cfg.dtype_bytes


def _attention_steps(stage: Stage, key: tuple, label: str, phase: str, backward: bool, layer: int) -> None:
    """The ring's steps (or the all-gather and its kernel) between the
    pre- and post-core segments."""
    it, bld, plan, s = stage.it, stage.bld, stage.it.plan, stage.s
    nbytes = kv_bytes(it.cfg, plan) * (2 if backward else 1)
    if plan.cp_algorithm == "allgather":
        _gathered(stage, key, label, phase, backward, layer)
        return
    incoming: dict[int, int] = {}
    for step in range(plan.cp):
        sends = {}
        if step < plan.cp - 1:
            for j, rank in stage.ranks.items():
                d = stage.d
                to = d - d % plan.cp + (d + 1) % plan.cp
                deps = [incoming[j]] if step else [bld.last_compute[rank]]
                mirror = bld.mirrors(lambda dd, jj: [plan.rank(dd, s, jj),
                                                     plan.rank(dd - dd % plan.cp + (dd + 1) % plan.cp, s, jj)],
                                     "dt", key=("cp", s))
                sends[j] = bld.collective("sendrecv", f"{stage.prefix}.{label}.kv{step}", nbytes,
                                          [rank, plan.rank(to, s, j)], mirror, deps, CP_STREAM, "cp",
                                          op_id=bld.reserve(key + (step, d, j)), **stage.tag)
        for j in stage.ranks:
            if step:
                stage.waits[j].append(incoming[j])
        stage.compute_each({j: _step_segment(stage, j, step, backward) for j in stage.ranks},
                           f"{label}.block{step}", phase, layer=layer)
        for j in sends:
            d = stage.d
            came_from = d if bld.folded else d - d % plan.cp + (d - 1) % plan.cp
            incoming[j] = bld.reserve(key + (step, came_from, j))


def _gathered(stage: Stage, key: tuple, label: str, phase: str, backward: bool, layer: int) -> None:
    """All-gather K and V over the CP group, attend, and in the backward
    reduce-scatter dK and dV."""
    it, bld, plan, s = stage.it, stage.bld, stage.it.plan, stage.s
    full = kv_bytes(it.cfg, plan) * plan.cp
    members = 1 if bld.folded else plan.cp

    def group_collective(kind: str, name: str) -> dict[int, int]:
        ops = {}
        for j, rank in stage.ranks.items():
            first = stage.d - stage.d % plan.cp
            group = [plan.rank(first + x, s, j) for x in range(plan.cp)]
            mirrors = tuple(tuple(plan.rank(g + x, s, jj) for x in range(plan.cp))
                            for g in range(0, plan.replicas, plan.cp) for jj in range(plan.tp)
                            if (g, jj) != (0, 0)) if bld.folded else ()
            ops[j] = bld.shared_collective(("cp", kind, s, group[0], j) + key, members,
                                           stage.waits[j] + [bld.last_compute[rank]], kind,
                                           f"{stage.prefix}.{label}.{name}", full, group, mirrors, CP_STREAM, "cp",
                                           "nccl", **stage.tag)
            stage.waits[j] = [ops[j]]
        return ops

    group_collective("allgather", "kv_allgather")
    stage.compute_each({j: _step_segment(stage, j, 0, backward) for j in stage.ranks}, f"{label}.attention", phase,
                       layer=layer)
    if backward:
        group_collective("reduce_scatter", "dkv_reduce_scatter")


def attention(stage: Stage, layer: int, phase: str, backward: bool = False, label: str = "",
              first: dict | None = None, last: dict | None = None) -> None:
    """A layer's attention block under context parallelism, within its TP
    collectives; ``first`` / ``last``: extra fields of its first and last ops."""
    plan = stage.it.plan
    before, after = tp_collectives(plan)
    name = f"L{layer}.{label}attn" + (".dgrad" if backward else "")
    seg = "bwd.attn.dgrad" if backward else "fwd.attn"
    if plan.tp > 1 and before:
        tensor.collective(stage, before, name)
    stage.compute(f"{seg}.pre", f"{name}.pre", phase, layer=layer, **(first or {}))
    _attention_steps(stage, (phase, stage.prefix, layer), name, phase, backward, layer)
    stage.compute(f"{seg}.post", f"{name}.post", phase, layer=layer, **(last or {}))
    if plan.tp > 1:
        tensor.collective(stage, after, name)
