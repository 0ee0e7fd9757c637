"""Expansion of (model, parallel plan, cluster) into one training iteration's trace.

The result is an ordinary operator trace (sim.workload.trace) with ranks and
collective ops, so generated models and user traces take the same path
through the simulator. Per stage and per (microbatch, chunk) of its schedule
(sim.parallel.schedules) it emits, on the stage's compute stream:

- forward: per layer an attention segment and an MLP segment, each followed
  by the tensor-parallel all-reduce of its output (Megatron-LM SC'21 Sec. 3.2;
  with sequence parallelism an all-gather before and a reduce-scatter after,
  Korthikanti et al.); embedding lookup on the first stage, LM head and loss
  on the last; before them, the copy of the microbatch's batch from host
  memory (first stage: token and position ids; last stage: labels and loss
  mask), as Megatron-LM's ``get_batch`` does on the compute stream;
- backward: per layer, in reverse, the input-gradient (dgrad) and the
  weight-gradient (wgrad) GEMMs as separate ops, the TP all-reduce of the
  input gradient overlapping the wgrad GEMMs as Megatron does; with full
  recomputation the layer's forward (with its TP collectives) first, with
  selective recomputation the attention core;
- pipeline sends of activations (forward) and gradients (backward) to the
  neighbouring stage, b s h / t bytes each (Megatron's scatter-gather
  optimization, SC'21 Sec. 4.1), on a send stream;
- in the last backward of each chunk, data-parallel gradient all-reduces in
  buckets of ``dp_bucket_bytes`` as layers finish (reduce-scatter with ZeRO-1),
  overlapping the remaining backward; the embedding / LM-head gradient
  all-reduce between first and last stage; then the optimizer step (and with
  ZeRO-1 the parameter all-gather).

Segments are fused ops whose ``duration_s`` is the sum of the isolated times
of their GEMMs and pointwise ops on the stage's device (tile/wave or fold
quantization and the roofline, sim.hardware.cost) and whose flops and bytes
are the sums, so a layer costs a handful of ops rather than forty.

Fidelity: ``full`` simulates every rank, each collective once for its group;
``folded`` simulates one representative rank per stage (data-parallel replica
0, tensor-parallel rank 0) and gives each collective the groups of the
symmetric replicas as ``mirror_groups``, so their traffic still loads the
topology at the same time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from sim.engine.device import bind_op, isolated_seconds
from sim.hardware.specs import DeviceSpec
from sim.parallel.memory import chunk_activation_bytes, layer_params, stage_memory, stage_params
from sim.parallel.plan import ParallelPlan
from sim.parallel.schedules import stage_order
from sim.workload.trace import MATRIX_OPS, Op
from sim.workload.transformer import ModelConfig, OpBuilder

FIDELITIES = ("folded", "full")
OPTIMIZER_FLOPS_PER_PARAM = 10.0
OPTIMIZER_BYTES_PER_PARAM = 28.0  # Adam: read bf16 grad, fp32 master/m/v; write those and bf16 weights
# Bytes per token of a microbatch's batch copied from host memory, as Megatron-LM's
# get_batch (pretrain_gpt.py) hands them to the stages that use them: the first stage
# token ids and position ids (int64 each), the last stage labels (int64) and loss mask (fp32).
BATCH_BYTES_PER_TOKEN = {"inputs": 8 + 8, "targets": 8 + 4}


@dataclass(frozen=True)
class Segment:
    """A fused op: several GEMMs and pointwise ops priced on one device."""

    name: str
    flops: float
    matrix_flops: float
    bytes_read: float
    bytes_written: float
    duration_s: float
    parts: int


def _fuse(name: str, ops: list[Op], spec: DeviceSpec) -> Segment:
    seconds = sum(isolated_seconds(bind_op(op, spec, "model"), spec) for op in ops)
    return Segment(name, sum(o.flops for o in ops), sum(o.flops for o in ops if o.op in MATRIX_OPS),
                   sum(o.bytes_read for o in ops), sum(o.bytes_written for o in ops), seconds, len(ops))


def layer_segments(cfg: ModelConfig, plan: ParallelPlan, spec: DeviceSpec) -> dict[str, Segment]:
    """The segments of one layer on one TP rank, with tensor-parallel shapes:
    QKV and fc1 split their output columns, projection and fc2 their input
    rows, attention its heads, by t (Megatron-LM SC'21 Sec. 3.2). Pointwise
    ops on the full hidden state are replicated, or split by t with sequence
    parallelism."""
    b, s, h, t = plan.microbatch_size, cfg.seq_len, cfg.hidden, plan.tp
    tokens = b * s
    heads = cfg.heads // t
    hd = cfg.head_dim
    qkv = (h + 2 * cfg.kv_dim) // t
    fc1 = (2 * cfg.ffn if cfg.gated_mlp else cfg.ffn) // t
    ffn = cfg.ffn // t
    point = tokens // t if plan.sequence_parallel else tokens
    g = OpBuilder(cfg.dtype)

    def gemm(name, m, n, k, batch=1, shared=True):
        g.gemm(name, m, n, k, batch=batch, shared_b=shared)
        return g.ops[-1]

    def pw(name, kind, elements, reads, flops):
        g.pointwise(name, kind, elements, reads, flops)
        return g.ops[-1]

    core = [gemm("scores", s, s, hd, b * heads, False), pw("softmax", "softmax", b * heads * s * s, 1, 5.0),
            gemm("values", s, hd, s, b * heads, False)]
    fwd_attn = [pw("ln1", "norm", point * h, 1, 5.0), gemm("qkv", tokens, qkv, h), *core,
                gemm("proj", tokens, h, h // t)]
    fwd_mlp = [pw("residual1", "elementwise", point * h, 2, 1.0), pw("ln2", "norm", point * h, 1, 5.0),
               gemm("fc1", tokens, fc1, h), pw("act", "elementwise", tokens * ffn, 2 if cfg.gated_mlp else 1, 8.0),
               gemm("fc2", tokens, h, ffn), pw("residual2", "elementwise", point * h, 2, 1.0)]
    bwd_mlp_dgrad = [pw("residual2_bwd", "elementwise", point * h, 1, 1.0), gemm("fc2_dgrad", tokens, ffn, h),
                     pw("act_bwd", "elementwise", tokens * ffn, 2, 8.0), gemm("fc1_dgrad", tokens, h, fc1),
                     pw("ln2_bwd", "norm", point * h, 2, 5.0)]
    bwd_mlp_wgrad = [gemm("fc2_wgrad", ffn, h, tokens), gemm("fc1_wgrad", h, fc1, tokens)]
    bwd_attn_dgrad = [gemm("proj_dgrad", tokens, h // t, h), gemm("values_dgrad", s, s, hd, b * heads, False),
                      gemm("values_wgrad", s, hd, s, b * heads, False),
                      pw("softmax_bwd", "softmax", b * heads * s * s, 2, 5.0),
                      gemm("scores_dq", s, hd, s, b * heads, False), gemm("scores_dk", s, hd, s, b * heads, False),
                      gemm("qkv_dgrad", tokens, h, qkv), pw("ln1_bwd", "norm", point * h, 2, 5.0)]
    bwd_attn_wgrad = [gemm("proj_wgrad", h // t, h, tokens), gemm("qkv_wgrad", h, qkv, tokens)]
    segments = {
        "fwd.attn": _fuse("attn", fwd_attn, spec),
        "fwd.mlp": _fuse("mlp", fwd_mlp, spec),
        "bwd.mlp.dgrad": _fuse("mlp.dgrad", bwd_mlp_dgrad, spec),
        "bwd.mlp.wgrad": _fuse("mlp.wgrad", bwd_mlp_wgrad, spec),
        "bwd.attn.dgrad": _fuse("attn.dgrad", bwd_attn_dgrad, spec),
        "bwd.attn.wgrad": _fuse("attn.wgrad", bwd_attn_wgrad, spec),
        "recompute.core": _fuse("attn.core", core, spec),
    }
    if cfg.vocab:
        v = cfg.vocab // t
        segments["fwd.head"] = _fuse("lm_head", [gemm("logits", tokens, v, h),
                                                 pw("loss", "softmax", tokens * v, 1, 5.0)], spec)
        segments["bwd.head"] = _fuse("lm_head.bwd", [pw("loss_bwd", "softmax", tokens * v, 1, 5.0),
                                                     gemm("logits_dgrad", tokens, h, v),
                                                     gemm("logits_wgrad", h, v, tokens)], spec)
        segments["fwd.embed"] = _fuse("embedding", [pw("embed", "elementwise", point * h, 1, 0.0)], spec)
        segments["bwd.embed"] = _fuse("embedding.bwd", [pw("embed_bwd", "elementwise", point * h, 1, 1.0)], spec)
    return segments


@dataclass
class Expansion:
    """The generated trace and what reports need to know about it."""

    ops: list[Op]
    resident: dict[int, dict[str, tuple[str, int]]]
    stage_of_rank: dict[int, int]
    hardware_flops: float = 0.0
    info: dict = field(default_factory=dict)


class _TraceBuilder:
    """Appends ops with fresh ids; send ids can be reserved by their receiver first."""

    def __init__(self, cfg: ModelConfig, plan: ParallelPlan, folded: bool):
        self.cfg, self.plan, self.folded = cfg, plan, folded
        self.next_id = 0
        self.reserved: dict[tuple, int] = {}
        self.ops: list[Op] = []
        self.last_compute: dict[int, int] = {}
        self.hardware_flops = 0.0
        self._mirror_cache: dict[tuple, tuple] = {}

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def reserve(self, key: tuple) -> int:
        if key not in self.reserved:
            self.reserved[key] = self.new_id()
        return self.reserved[key]

    def compute(self, rank: int, seg: Segment, name: str, deps, **extra) -> int:
        op_id = self.new_id()
        self.hardware_flops += seg.matrix_flops
        self.ops.append(Op(id=op_id, name=name, op="gemm" if seg.matrix_flops else "elementwise",
                           flops=seg.flops, bytes_read=seg.bytes_read, bytes_written=seg.bytes_written,
                           duration_s=seg.duration_s, rank=rank, stream=0, deps=tuple(deps),
                           dtype=self.cfg.dtype, **extra))
        self.last_compute[rank] = op_id
        return op_id

    def load_batch(self, rank: int, spec: DeviceSpec, name: str, nbytes: float, deps, **extra) -> int | None:
        """Copy ``nbytes`` of a microbatch's batch from the host tier to the
        device's default tier, on the compute stream. None if the device has
        no host memory tier."""
        host = next((t.name for t in spec.memory if t.kind in ("host", "ddr")), None)
        if host is None:
            return None
        op_id = self.new_id()
        self.ops.append(Op(id=op_id, name=name, op="copy", flops=0.0, bytes_read=nbytes,
                           bytes_written=nbytes, src_tier=host, dst_tier=spec.default_tier,
                           rank=rank, stream=0, deps=tuple(deps), phase="fwd", **extra))
        self.last_compute[rank] = op_id
        return op_id

    def collective(self, kind: str, name: str, nbytes: float, group, mirror_groups, deps, stream: int,
                   phase: str, algorithm: str = "nccl", op_id: int | None = None, **extra) -> int:
        op_id = self.new_id() if op_id is None else op_id
        self.ops.append(Op(id=op_id, name=name, op=kind, flops=0.0, bytes_read=nbytes, bytes_written=nbytes,
                           group=tuple(group), mirror_groups=mirror_groups,
                           deps=tuple(dict.fromkeys(deps)), rank=group[0], stream=stream, phase=phase,
                           algorithm=algorithm, **extra))
        return op_id

    def mirrors(self, group_of: Callable[[int, int], list[int]], dims: str,
                key: tuple | None = None) -> tuple[tuple[int, ...], ...]:
        """In folded runs, the groups of the replicas that are not simulated:
        ``dims`` says which of (data-parallel replica, TP rank) vary among them.
        Cached under ``key`` when given."""
        if not self.folded:
            return ()
        cache = self._mirror_cache
        if key is not None and key in cache:
            return cache[key]
        plan = self.plan
        dps = range(plan.dp) if "d" in dims else [0]
        tps = range(plan.tp) if "t" in dims else [0]
        groups = tuple(tuple(group_of(d, j)) for d in dps for j in tps if (d, j) != (0, 0))
        if key is not None:
            cache[key] = groups
        return groups


def _neighbour(kind: str, stage: int, chunk: int, pp: int, v: int) -> tuple[int, int] | None:
    """Where a unit's output goes: activations forward, gradients backward,
    wrapping between the last and first stage across chunks (interleaving)."""
    if kind == "F":
        if stage < pp - 1:
            return stage + 1, chunk
        return (0, chunk + 1) if chunk < v - 1 else None
    if stage > 0:
        return stage - 1, chunk
    return (pp - 1, chunk - 1) if chunk > 0 else None


def expand_training(cfg: ModelConfig, plan: ParallelPlan, spec_of_rank: Callable[[int], DeviceSpec],
                    fidelity: str = "folded", optimizer_step: bool = True) -> Expansion:
    """One training iteration as a trace (see the module docstring).
    ``optimizer_step=False`` leaves out the optimizer step (for closed-form
    checks of the pipeline alone)."""
    if fidelity not in FIDELITIES:
        raise ValueError(f"fidelity: expected one of {FIDELITIES}, got {fidelity!r}")
    folded = fidelity == "folded"
    dps = [0] if folded else list(range(plan.dp))
    tps = [0] if folded else list(range(plan.tp))
    pp, v, t = plan.pp, plan.virtual_stages, plan.tp
    layers_per_chunk = cfg.layers // (pp * v)
    width = cfg.dtype_bytes
    act_bytes = float(plan.microbatch_size * cfg.seq_len * cfg.hidden * width)
    p2p_bytes = act_bytes / t
    alloc = chunk_activation_bytes(cfg, plan)
    bld = _TraceBuilder(cfg, plan, folded)
    segments_by_spec: dict[str, dict[str, Segment]] = {}
    resident: dict[int, dict[str, tuple[str, int]]] = {}
    stage_of_rank: dict[int, int] = {}
    # (stage, tp rank) -> layer -> wgrad op ids (one per simulated replica), in backward order
    grads_ready: dict[tuple[int, int], dict[int, list[int]]] = {}
    final_op: dict[tuple[int, int, int], int] = {}

    def segments(rank: int) -> dict[str, Segment]:
        spec = spec_of_rank(rank)
        if spec.name not in segments_by_spec:
            segments_by_spec[spec.name] = layer_segments(cfg, plan, spec)
        return segments_by_spec[spec.name]

    for d in dps:
        for s in range(pp):
            ranks = {j: plan.rank(d, s, j) for j in tps}
            memory = stage_memory(cfg, plan, s)
            for rank in ranks.values():
                stage_of_rank[rank] = s
                tier = spec_of_rank(rank).default_tier
                resident[rank] = {"weights": (tier, int(memory.weights_bytes)),
                                  "gradients": (tier, int(memory.gradients_bytes)),
                                  "optimizer": (tier, int(memory.optimizer_bytes))}
            seg = segments(ranks[tps[0]])
            order = stage_order(plan.schedule, s, pp, plan.microbatches, v)
            last_backward = {c: m for kind, m, c in order if kind == "B"}
            tp_group = [plan.rank(d, s, j) for j in range(t)]
            tp_mirrors = bld.mirrors(lambda dd, jj: [plan.rank(dd, s, x) for x in range(t)], "d")
            waits: dict[int, list[int]] = {j: [] for j in tps}

            for kind, m, c in order:
                tag = {"stage": s, "microbatch": m, "chunk": c}
                prefix = f"s{s}.{kind}{m}.c{c}"
                # a forward's input comes from where a backward would send its gradient, and vice versa
                source = _neighbour("B" if kind == "F" else "F", s, c, pp, v)
                if source is not None:
                    for j in tps:
                        waits[j].append(bld.reserve((kind, m, c, source, d, j)))

                def tp_collective(collective_kind: str, label: str) -> None:
                    deps = [x for j in tps for x in waits[j] + [bld.last_compute.get(ranks[j])]
                            if x is not None]
                    op_id = bld.collective(collective_kind, f"{prefix}.{label}.{collective_kind}", act_bytes,
                                           tp_group, tp_mirrors, deps, 3, "tp", plan.tp_algorithm, **tag)
                    for j in tps:
                        waits[j] = [op_id]

                def run(seg_name: str, label: str, phase: str, sync: bool = False, **extra) -> None:
                    if sync and t > 1 and plan.sequence_parallel:
                        tp_collective("allgather", label)
                    for j in tps:
                        bld.compute(ranks[j], seg[seg_name], f"{prefix}.{label}", waits[j],
                                    phase=phase, **tag, **extra)
                        waits[j] = []
                    if sync and t > 1:
                        tp_collective("reduce_scatter" if plan.sequence_parallel else "allreduce", label)

                def load_batch(label: str, bytes_per_token: int) -> None:
                    """Ordered on the compute stream only: the copy does not wait for the
                    activations the unit receives, which the first layer waits for."""
                    tokens = plan.microbatch_size * cfg.seq_len
                    for j in tps:
                        bld.load_batch(ranks[j], spec_of_rank(ranks[j]), f"{prefix}.{label}",
                                       float(tokens * bytes_per_token), (), **tag)

                def run_overlapped(seg_name: str, label: str, **extra) -> None:
                    """Weight-gradient GEMMs run while the TP collective before them is in flight."""
                    pending = {j: waits[j] for j in tps}
                    for j in tps:
                        waits[j] = []
                    run(seg_name, label, "bwd", **extra)
                    for j in tps:
                        waits[j] = pending[j]

                first_layer = (c * pp + s) * layers_per_chunk
                chunk_layers = list(range(first_layer, first_layer + layers_per_chunk))
                holds = {"tensor": f"act.m{m}.c{c}", "alloc_bytes": alloc}
                frees = {"frees": (f"act.m{m}.c{c}",)}
                if kind == "F":
                    if s == 0 and c == 0 and cfg.vocab:
                        load_batch("load_inputs", BATCH_BYTES_PER_TOKEN["inputs"])
                    if s == pp - 1 and c == v - 1 and cfg.vocab:
                        load_batch("load_targets", BATCH_BYTES_PER_TOKEN["targets"])
                    if s == 0 and c == 0 and cfg.vocab:
                        run("fwd.embed", "embed", "fwd", **holds)
                        holds = {}
                    for layer in chunk_layers:
                        run("fwd.attn", f"L{layer}.attn", "fwd", sync=True, layer=layer, **holds)
                        holds = {}
                        run("fwd.mlp", f"L{layer}.mlp", "fwd", sync=True, layer=layer)
                    if s == pp - 1 and c == v - 1 and cfg.vocab:
                        run("fwd.head", "head", "fwd")
                else:
                    if s == pp - 1 and c == v - 1 and cfg.vocab:
                        run("bwd.head", "head.bwd", "bwd")
                    for layer in reversed(chunk_layers):
                        if plan.recompute == "full":
                            run("fwd.attn", f"L{layer}.recompute.attn", "recompute", sync=True, layer=layer)
                            run("fwd.mlp", f"L{layer}.recompute.mlp", "recompute", sync=True, layer=layer)
                        run("bwd.mlp.dgrad", f"L{layer}.mlp.dgrad", "bwd", sync=True, layer=layer)
                        run_overlapped("bwd.mlp.wgrad", f"L{layer}.mlp.wgrad", layer=layer)
                        if plan.recompute == "selective":
                            run("recompute.core", f"L{layer}.recompute.core", "recompute", layer=layer)
                        run("bwd.attn.dgrad", f"L{layer}.attn.dgrad", "bwd", sync=True, layer=layer)
                        last_of_unit = layer == chunk_layers[0] and not (s == 0 and c == 0 and cfg.vocab)
                        run_overlapped("bwd.attn.wgrad", f"L{layer}.attn.wgrad", layer=layer,
                                       **(frees if last_of_unit else {}))
                        if m == last_backward.get(c):
                            for j in tps:
                                grads_ready.setdefault((s, j), {}).setdefault(layer, []).append(
                                    bld.last_compute[ranks[j]])
                    if s == 0 and c == 0 and cfg.vocab:
                        run("bwd.embed", "embed.bwd", "bwd", **frees)
                target = _neighbour(kind, s, c, pp, v)
                for j in tps:
                    final_op[(d, s, j)] = bld.last_compute[ranks[j]]
                    if target is None:
                        continue
                    ts, tc = target
                    mirror = bld.mirrors(lambda dd, jj: [plan.rank(dd, s, jj), plan.rank(dd, ts, jj)], "dt",
                                         key=("pp", s, ts))
                    op_id = bld.reserve((kind, m, tc, (s, c), d, j))
                    bld.collective("sendrecv", f"{prefix}.send", p2p_bytes, [ranks[j], plan.rank(d, ts, j)],
                                   mirror, [bld.last_compute[ranks[j]]] + waits[j], 1, "pp", op_id=op_id, **tag)

    _gradient_sync_and_optimizer(bld, cfg, plan, spec_of_rank, dps, tps, grads_ready, final_op,
                                 optimizer_step)
    return Expansion(bld.ops, resident, stage_of_rank, bld.hardware_flops,
                     {"layers_per_chunk": layers_per_chunk})


def _gradient_sync_and_optimizer(bld: _TraceBuilder, cfg: ModelConfig, plan: ParallelPlan,
                                 spec_of_rank: Callable[[int], DeviceSpec], dps, tps, grads_ready,
                                 final_op, optimizer_step: bool = True) -> None:
    """DP gradient buckets as layers finish their last backward, the embedding
    gradient all-reduce between first and last stage, the optimizer step and,
    with ZeRO-1, the parameter all-gather."""
    pp, t, width = plan.pp, plan.tp, cfg.dtype_bytes
    grad_per_layer = layer_params(cfg) / t * width
    zero = plan.zero >= 1
    dp_ops: dict[tuple[int, int], list[int]] = {}
    if plan.dp > 1:
        for (s, j), layers in sorted(grads_ready.items()):
            group = [plan.rank(d, s, j) for d in range(plan.dp)]
            mirror = bld.mirrors(lambda dd, jj: [plan.rank(x, s, jj) for x in range(plan.dp)], "t")
            kind = "reduce_scatter" if zero else "allreduce"
            bucket, deps, done = 0.0, [], []
            items = list(layers.items())
            for index, (layer, ready) in enumerate(items):
                deps += ready
                bucket += grad_per_layer
                if bucket >= plan.dp_bucket_bytes or index == len(items) - 1:
                    done.append(bld.collective(kind, f"s{s}.dp.{kind}.L{layer}", bucket, group, mirror,
                                               deps, 2, "dp", plan.dp_algorithm, stage=s))
                    bucket, deps = 0.0, []
            dp_ops[(s, j)] = done
    emb_ops: dict[tuple[int, int], int] = {}
    if pp > 1 and cfg.vocab:
        nbytes = cfg.vocab * cfg.hidden / t * width
        for d in dps:
            for j in tps:
                first, last = plan.rank(d, 0, j), plan.rank(d, pp - 1, j)
                mirror = bld.mirrors(lambda dd, jj: [plan.rank(dd, 0, jj), plan.rank(dd, pp - 1, jj)], "dt")
                emb_ops[(d, j)] = bld.collective("allreduce", "embedding.grad_sync", nbytes, [first, last],
                                                 mirror, [final_op[(d, 0, j)], final_op[(d, pp - 1, j)]],
                                                 2, "embedding_sync")
    optimizer_ops: dict[tuple[int, int], list[int]] = {}
    for d in (dps if optimizer_step else []):
        for s in range(pp):
            for j in tps:
                rank = plan.rank(d, s, j)
                spec = spec_of_rank(rank)
                params = stage_params(cfg, plan, s) / (plan.dp if zero else 1)
                bandwidth = spec.tier(spec.default_tier).bandwidth_bytes_per_s
                seg = Segment("optimizer", OPTIMIZER_FLOPS_PER_PARAM * params, 0.0,
                              OPTIMIZER_BYTES_PER_PARAM / 2 * params, OPTIMIZER_BYTES_PER_PARAM / 2 * params,
                              OPTIMIZER_BYTES_PER_PARAM * params / bandwidth, 1)
                deps = list(dp_ops.get((s, j), []))
                if (d, j) in emb_ops and s in (0, pp - 1):
                    deps.append(emb_ops[(d, j)])
                optimizer_ops.setdefault((s, j), []).append(
                    bld.compute(rank, seg, f"s{s}.optimizer", deps, stage=s, phase="optimizer"))
    if zero and plan.dp > 1:
        for (s, j), deps in sorted(optimizer_ops.items()):
            group = [plan.rank(d, s, j) for d in range(plan.dp)]
            mirror = bld.mirrors(lambda dd, jj: [plan.rank(x, s, jj) for x in range(plan.dp)], "t")
            bld.collective("allgather", f"s{s}.dp.param_allgather", stage_params(cfg, plan, s) * width,
                           group, mirror, deps, 2, "dp", plan.dp_algorithm, stage=s)
