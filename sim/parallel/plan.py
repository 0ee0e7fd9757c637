"""The parallel plan: how a training iteration is split over the cluster.

Rank mapping: ``mapping`` lists the dimensions from innermost (consecutive
ranks) to outermost; the default ``tp,pp,dp`` puts a tensor-parallel group
inside a node, consecutive pipeline stages on consecutive nodes, and data
parallel replicas outermost, as Megatron-LM does (Narayanan et al., SC'21,
Sec. 3.3). A context-parallel dimension ``cp`` goes right after ``tp`` unless
the mapping places it (Megatron-Core's order tp-cp-ep-dp-pp).

Context-parallel ranks hold the same weights and split each sequence, so the
expansion treats a stage's ranks as ``replicas = dp x cp`` copies of the
model (the group its gradients are reduced and ZeRO shards over, as
Megatron-Core's data-parallel-with-context-parallel group) of which each
consecutive ``cp`` share sequences; replica r is (data-parallel index r // cp,
context-parallel index r % cp).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Mapping, Optional

from pydantic import BeforeValidator, model_validator
from pydantic_core import PydanticCustomError

from sim.errors import ScenarioError
from sim.schema import (Bool, Name, NonNegativeFloat, PositiveBytes, StrictModel, choice, int_range,
                        join_location, validate)
from sim.workload.transformer import ATTENTION_KINDS, MODEL_DTYPES, RECOMPUTE_MODES, ModelConfig
from sim.workload.moe import PRESETS, MoEConfig
from sim.parallel.schedules import SPLIT_BACKWARD

OPTIMIZERS = ("fused", "megatron_fp16")   # sim.parallel.emit.zero.OPTIMIZER_BYTES_PER_PARAM
SCHEDULES = ("gpipe", "1f1b", "interleaved", "zb-h1", "zb-h2")
# PyTorch FSDP's ShardingStrategy names -> ZeRO stage (HYBRID_SHARD: stage 3 within shard_group)
FSDP_STRATEGIES = {"no_shard": 0, "shard_grad_op": 2, "full_shard": 3, "hybrid_shard": 3}


@dataclass(frozen=True)
class ParallelPlan:
    """``microbatches`` is per pipeline per iteration (global batch / (dp x microbatch_size)).

    ``dp_bucket_bytes``: gradients are all-reduced in buckets of this size as
    backward produces them (25 MiB, PyTorch DDP's default ``bucket_cap_mb``).
    ``tp_algorithm`` / ``dp_algorithm``: collective algorithm for TP and DP
    (and pipeline) communication; ``nccl`` (default) picks the fastest of the
    algorithms NCCL implements, ``auto`` of all of ours.
    ``zero``: ZeRO stage (Rajbhandari et al. SC'20): 1 shards the optimizer
    state over the data-parallel group, 2 the gradients too, 3 the parameters
    too (PyTorch FSDP's SHARD_GRAD_OP is stage 2, FULL_SHARD stage 3).
    ``shard_group``: with stage 2 or 3, the number of data-parallel replicas a
    shard group spans (0: all of them); the groups are replicated and their
    gradient shards all-reduced across (FSDP HYBRID_SHARD, ZeRO++ hpZ).
    ``zero_prefetch``: ZeRO-3 parameter all-gathers in flight ahead of the
    layer computing (FSDP's forward / backward prefetch of the next unit).
    ``offload_optimizer``: the optimizer state lives in host memory and the
    Adam step runs on the host (ZeRO-Offload, Ren et al. ATC'21).
    ``ep``: expert-parallel degree of MoE layers, carved from the dp x tp
    ranks of a stage; ``ep_placement``: ``contiguous`` or ``strided`` groups
    (sim.parallel.experts); ``ep_algorithm``: the all-to-all's algorithm.
    ``cp``: context-parallel degree (each rank takes seq_len / cp tokens of
    every sequence); ``cp_algorithm``: ``ring`` (ring attention, KV blocks
    passed around the CP group) or ``allgather`` (K and V all-gathered, Llama
    3); ``cp_load_balance``: each rank takes chunks i and 2cp - 1 - i of 2cp,
    balancing causal attention (sim.parallel.emit.context).
    ``overlap_grad_reduce``: the data-parallel gradient buckets are reduced
    while the backward runs (PyTorch DDP; Megatron-Core's
    ``--overlap-grad-reduce``); false: one collective of the whole gradient
    buffer after the stage's last backward op, as Megatron-LM's local DDP of
    2021 did (``allreduce_gradients`` after ``forward_backward_func``).
    ``async_tp_allreduce``: in backward the TP collective of a block's input
    gradient overlaps its weight-gradient GEMMs (Megatron-LM's
    ``--async-tensor-model-parallel-allreduce``, and the reduce-scatter with
    sequence parallelism); false: it follows them, as autograd ran it in 2021
    (the backward of ``copy_to_tensor_model_parallel_region``).
    ``optimizer``: how the mixed-precision Adam step touches memory
    (sim.parallel.emit.zero): ``fused`` (one kernel, 28 bytes per parameter)
    or ``megatron_fp16`` (Megatron-LM's Float16OptimizerWithFloat16Params of
    2021-22, its separate passes: 52 bytes per parameter).
    """

    dp: int = 1
    tp: int = 1
    pp: int = 1
    virtual_stages: int = 1
    microbatch_size: int = 1
    microbatches: int = 1
    schedule: str = "1f1b"
    sequence_parallel: bool = False
    zero: int = 0
    recompute: str = "none"
    mapping: tuple[str, ...] = ("tp", "pp", "dp")
    dp_bucket_bytes: int = 25 * 2**20
    tp_algorithm: str = "nccl"
    dp_algorithm: str = "nccl"
    shard_group: int = 0
    zero_prefetch: int = 1
    offload_optimizer: bool = False
    ep: int = 1
    ep_placement: str = "contiguous"
    ep_algorithm: str = "nccl"
    cp: int = 1
    cp_algorithm: str = "ring"
    cp_load_balance: bool = True
    overlap_grad_reduce: bool = True
    async_tp_allreduce: bool = True
    optimizer: str = "fused"

    @property
    def shards(self) -> int:
        """How many ways ZeRO shards the model states (1 without ZeRO)."""
        return (self.shard_group or self.replicas) if self.zero else 1

    @property
    def replicas(self) -> int:
        """Copies of each stage's weights: data- times context-parallel ranks."""
        return self.dp * self.cp

    @property
    def world(self) -> int:
        return self.dp * self.tp * self.pp * self.cp

    @property
    def global_batch(self) -> int:
        return self.dp * self.microbatch_size * self.microbatches

    def rank(self, dp: int, stage: int, tp: int) -> int:
        """Cluster rank of (replica, pipeline stage, tensor-parallel index);
        replica r is data-parallel index r // cp, context-parallel index r % cp."""
        index = {"dp": dp // self.cp, "cp": dp % self.cp, "pp": stage, "tp": tp}
        size = {"dp": self.dp, "cp": self.cp, "pp": self.pp, "tp": self.tp}
        mapping = self.mapping
        if "cp" not in mapping:
            mapping = (mapping[:mapping.index("tp") + 1] + ("cp",) + mapping[mapping.index("tp") + 1:])
        rank, stride = 0, 1
        for dim in mapping:
            rank += index[dim] * stride
            stride *= size[dim]
        return rank


# Bounds that keep a generated iteration finite in memory and time (far above
# any published model or plan; the op-count estimate in sim.runtime.scenario
# bounds their product).
MAX_RANKS = 2**20
MAX_LAYERS = 100_000
MAX_MICROBATCHES = 2**20


def _algorithm(value: Any) -> str:
    from sim.network.collectives import CollectiveError, normalize_algorithm
    if not isinstance(value, str):
        raise PydanticCustomError("accsim", f"expected a collective algorithm name, got {value!r}")
    try:
        return normalize_algorithm(value)
    except CollectiveError as exc:
        raise PydanticCustomError("accsim", str(exc)) from None


def _mapping(value: Any) -> tuple[str, ...]:
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, (list, tuple)) or any(not isinstance(p, str) for p in parts) \
            or sorted(p.strip() for p in parts) not in (["dp", "pp", "tp"], ["cp", "dp", "pp", "tp"]):
        raise PydanticCustomError("accsim", f"expected an order of tp, pp, dp (and optionally cp) such as "
                                            f"'tp,pp,dp', got {value!r}")
    return tuple(p.strip() for p in parts)


Algorithm = Annotated[str, BeforeValidator(_algorithm)]
Mapping3 = Annotated[tuple[str, ...], BeforeValidator(_mapping)]


class ParallelSchema(StrictModel):
    """The ``parallel:`` block of a training scenario (see ParallelPlan)."""

    dp: int_range(1, MAX_RANKS) = 1
    tp: int_range(1, MAX_RANKS) = 1
    pp: int_range(1, MAX_RANKS) = 1
    virtual_stages: int_range(1, 1024) = 1
    microbatch_size: int_range(1, 2**20) = 1
    global_batch: Optional[int_range(1, 2**40)] = None
    microbatches: Optional[int_range(1, MAX_MICROBATCHES)] = None
    schedule: choice(*SCHEDULES) = "1f1b"
    sequence_parallel: Bool = False
    zero: int_range(0, 3) = 0
    fsdp: Optional[choice(*FSDP_STRATEGIES)] = None
    shard_group: Optional[int_range(1, MAX_RANKS)] = None
    zero_prefetch: Optional[int_range(0, 64)] = None
    offload_optimizer: Bool = False
    recompute: choice(*RECOMPUTE_MODES) = "none"
    mapping: Mapping3 = ("tp", "pp", "dp")
    dp_bucket_bytes: PositiveBytes = 25 * 2**20
    tp_algorithm: Algorithm = "nccl"
    dp_algorithm: Algorithm = "nccl"
    ep: int_range(1, MAX_RANKS) = 1
    ep_placement: choice("contiguous", "strided") = "contiguous"
    ep_algorithm: Algorithm = "nccl"
    cp: int_range(1, MAX_RANKS) = 1
    cp_algorithm: choice("ring", "allgather") = "ring"
    cp_load_balance: Bool = True
    overlap_grad_reduce: Bool = True
    async_tp_allreduce: Bool = True
    optimizer: choice(*OPTIMIZERS) = "fused"


PositiveNumber = Annotated[float, BeforeValidator(lambda v: _positive_number(v))]


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise PydanticCustomError("accsim", f"expected a positive number, got {value!r}")
    return float(value)


class MoESchema(StrictModel):
    """The ``model.moe:`` block: one field per field of sim.workload.moe.MoEConfig."""

    experts: int_range(1, 2**16)
    top_k: int_range(1, 2**16) = 2
    expert_ffn_hidden: Optional[int_range(1, 2**22)] = None
    shared_experts: int_range(0, 64) = 0
    layer_freq: int_range(1, MAX_LAYERS) = 1
    first_dense_layers: int_range(0, MAX_LAYERS) = 0
    capacity_factor: Optional[PositiveNumber] = None
    routing_alpha: Optional[PositiveNumber] = None
    routing_seed: int_range(0, 2**31) = 0

    @model_validator(mode="after")
    def _fits(self) -> "MoESchema":
        if self.top_k > self.experts:
            raise PydanticCustomError("accsim", f"top_k {self.top_k} is more than the {self.experts} experts")
        return self


def _preset(raw: Any) -> Any:
    """``model: NAME`` or ``model: {preset: NAME, ...}``: a preset of
    sim.workload.moe.PRESETS, the keys given replacing its own (``moe`` key by key)."""
    if isinstance(raw, str):
        raw = {"preset": raw}
    if not isinstance(raw, Mapping) or "preset" not in raw:
        return raw
    name = raw["preset"]
    if name not in PRESETS:
        raise PydanticCustomError("accsim", f"preset: expected one of {', '.join(PRESETS)}, got {name!r}")
    merged = {**PRESETS[name], **{k: v for k, v in raw.items() if k != "preset"}}
    if isinstance(raw.get("moe"), Mapping):
        merged["moe"] = {**PRESETS[name].get("moe", {}), **raw["moe"]}
    return merged


class ModelSchema(StrictModel):
    """The ``model:`` block of a training scenario: one field per field of
    ModelConfig (sim.workload.transformer), which it builds. A new model
    option is a field here and there (tests/test_parallel.py checks both
    agree)."""

    name: Name = "model"
    layers: int_range(1, MAX_LAYERS)
    hidden: int_range(1, 2**20)
    heads: int_range(1, 2**16)
    seq_len: int_range(1, 2**24)
    vocab: int_range(0, 2**24) = 0
    kv_heads: Optional[int_range(1, 2**16)] = None
    ffn_hidden: Optional[int_range(1, 2**22)] = None
    gated_mlp: Bool = False
    dtype: choice(*MODEL_DTYPES) = "bf16"
    attention: choice(*ATTENTION_KINDS) = "flash"
    fused_kernels: Bool = True
    dropout: NonNegativeFloat = 0.0
    bias: Bool = True
    gradient_accumulation_fusion: Bool = True
    moe: Optional[MoESchema] = None

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, raw: Any) -> Any:
        return _preset(raw)

    @model_validator(mode="after")
    def _shapes(self) -> "ModelSchema":
        if self.hidden % self.heads:
            raise PydanticCustomError("accsim", f"hidden {self.hidden} is not a multiple of heads {self.heads}")
        if self.kv_heads is not None and self.heads % self.kv_heads:
            raise PydanticCustomError("accsim", f"heads {self.heads} is not a multiple of kv_heads {self.kv_heads}")
        if self.dropout >= 1:
            raise PydanticCustomError("accsim", f"dropout: expected a probability below 1, got {self.dropout}")
        if self.moe is not None and self.moe.first_dense_layers >= self.layers:
            raise PydanticCustomError("accsim", f"moe.first_dense_layers {self.moe.first_dense_layers} leaves "
                                                f"none of the {self.layers} layers for experts")
        return self


def _fail(where: str, key: str, message: str) -> ScenarioError:
    return ScenarioError(f"{join_location(where, key)}: {message}" if key else f"{where}: {message}")


def _check_algorithms(plan: ParallelPlan, where: str) -> None:
    """Each algorithm must implement the collectives the plan issues with it."""
    from sim.network.collectives import algorithms_for
    used = {"tp_algorithm": (plan.tp_algorithm, plan.tp > 1,
                             ("reduce_scatter", "allgather") if plan.sequence_parallel else ("allreduce",)),
            "dp_algorithm": (plan.dp_algorithm, plan.dp > 1,
                             ("reduce_scatter", "allgather") if plan.zero else ("allreduce",))}
    for key, (algorithm, active, ops) in used.items():
        if not active or algorithm in ("auto", "nccl"):
            continue
        for op in ops:
            if algorithm not in algorithms_for(op):
                raise _fail(where, key, f"{algorithm} does not implement {op}, which this plan issues; "
                                        f"expected one of {['auto', 'nccl'] + algorithms_for(op)}")


def _check_overlap(plan: ParallelPlan, where: str) -> None:
    """The plans the 2021-22 Megatron-LM variants are modelled for."""
    if not plan.overlap_grad_reduce and plan.zero >= 2:
        raise _fail(where, "overlap_grad_reduce", f"ZeRO stage {plan.zero} reduces each layer's gradients as "
                                                  f"they are produced; false needs zero: 0 or 1")
    if plan.optimizer != "fused" and plan.offload_optimizer:
        raise _fail(where, "optimizer", f"{plan.optimizer} is a step on the device; offload_optimizer runs "
                                        f"Adam on the host (use optimizer: fused)")
    if not plan.async_tp_allreduce and (plan.schedule in SPLIT_BACKWARD or plan.cp > 1):
        raise _fail(where, "async_tp_allreduce", "false (the input-gradient collective after the weight "
                                                 "gradients) is modelled for a whole backward without context "
                                                 "parallelism; not with zb-h1/zb-h2 or cp > 1")


def plan_from_dict(raw: Mapping[str, Any], model: ModelConfig, world: int,
                   where: str = "parallel") -> ParallelPlan:
    """Validate a ``parallel:`` block against the model and the cluster size."""
    p = validate(ParallelSchema, raw, where)
    dp, tp, pp, v, mbs = p.dp, p.tp, p.pp, p.virtual_stages, p.microbatch_size
    if p.schedule != "interleaved" and v != 1:
        raise _fail(where, "virtual_stages", f"{v} virtual stages need schedule: interleaved")
    if dp * tp * pp * p.cp != world:
        sizes = f"dp x tp x pp = {dp} x {tp} x {pp} = {dp * tp * pp}" if p.cp == 1 else \
            f"dp x tp x pp x cp = {dp} x {tp} x {pp} x {p.cp} = {dp * tp * pp * p.cp}"
        raise _fail(where, "", f"{sizes} does not match the cluster's {world} devices")
    if p.cp > 1 and model.attention != "flash":
        raise _fail(where, "cp", "context parallelism runs blockwise FlashAttention (Transformer Engine's); "
                                 "set model.attention: flash")
    chunks = p.cp * (2 if p.cp_load_balance and p.cp > 1 else 1)
    if model.seq_len % chunks:
        raise _fail(where, "cp", f"{p.cp} does not divide the sequence: seq_len {model.seq_len} is not a "
                                 f"multiple of {chunks}" + (" (2 x cp chunks with cp_load_balance)" if chunks > p.cp
                                                            else ""))
    if model.layers % (pp * v):
        raise _fail(where, "", f"{model.layers} layers do not divide into pp x virtual_stages = "
                               f"{pp} x {v} = {pp * v} stages")
    if model.heads % tp or model.ffn % tp or (model.kv_heads or model.heads) % tp:
        raise _fail(where, "tp", f"{tp} does not divide the model's heads ({model.heads}), "
                                 f"KV heads ({model.kv_heads or model.heads}) and FFN size ({model.ffn})")
    if p.microbatches is not None and p.global_batch is not None:
        raise _fail(where, "", "give either microbatches or global_batch, not both")
    if p.global_batch is not None:
        if p.global_batch % (dp * mbs):
            raise _fail(where, "global_batch", f"{p.global_batch} is not a multiple of dp x "
                                               f"microbatch_size = {dp * mbs}")
        m = p.global_batch // (dp * mbs)
        if m > MAX_MICROBATCHES:
            raise _fail(where, "global_batch", f"{m} microbatches per pipeline; at most {MAX_MICROBATCHES}")
    else:
        m = p.microbatches or 1
    if p.schedule == "interleaved" and m % pp:
        raise _fail(where, "microbatches", f"the interleaved schedule needs a multiple of "
                                           f"pp = {pp} microbatches per pipeline, got {m}")
    zero, shard_group, prefetch = _sharding(p, dp * p.cp, where)
    plan = ParallelPlan(dp=dp, tp=tp, pp=pp, virtual_stages=v, microbatch_size=mbs, microbatches=m,
                        schedule=p.schedule, sequence_parallel=p.sequence_parallel, zero=zero,
                        recompute=p.recompute, mapping=p.mapping,  # type: ignore[arg-type]
                        dp_bucket_bytes=p.dp_bucket_bytes, tp_algorithm=p.tp_algorithm,
                        dp_algorithm=p.dp_algorithm, shard_group=shard_group, zero_prefetch=prefetch,
                        offload_optimizer=p.offload_optimizer, cp=p.cp, cp_algorithm=p.cp_algorithm,
                        cp_load_balance=p.cp_load_balance, overlap_grad_reduce=p.overlap_grad_reduce,
                        async_tp_allreduce=p.async_tp_allreduce, optimizer=p.optimizer,
                        **_expert_parallel(p, model, zero, where))
    _check_algorithms(plan, where)
    _check_overlap(plan, where)
    return plan


def _sharding(p: "ParallelSchema", dp: int, where: str) -> tuple[int, int, int]:
    """(ZeRO stage, shard group (0: all of dp), prefetch) from ``zero`` or
    ``fsdp`` and their options, which must agree."""
    zero = p.zero
    if p.fsdp is not None:
        if "zero" in p.model_fields_set and zero != FSDP_STRATEGIES[p.fsdp]:
            raise _fail(where, "fsdp", f"{p.fsdp} is ZeRO stage {FSDP_STRATEGIES[p.fsdp]}, but zero: {zero} "
                                       f"is set; give one of them")
        zero = FSDP_STRATEGIES[p.fsdp]
    if p.fsdp == "hybrid_shard" and p.shard_group is None:
        raise _fail(where, "shard_group", "fsdp: hybrid_shard needs the size of a shard group (the "
                                          "data-parallel replicas sharing one copy, e.g. those in a node)")
    if p.shard_group is not None and zero < 2:
        raise _fail(where, "shard_group", f"sharding groups need zero: 2 or 3, got zero: {zero}")
    if p.shard_group is not None and dp % p.shard_group:
        raise _fail(where, "shard_group", f"{p.shard_group} does not divide the {dp} data-parallel (x context-"
                                          f"parallel) replicas")
    if p.zero_prefetch is not None and zero < 3:
        raise _fail(where, "zero_prefetch", f"prefetching parameters needs zero: 3, got zero: {zero}")
    if p.offload_optimizer and zero < 1:
        raise _fail(where, "offload_optimizer", "offloading the optimizer state needs zero: 1, 2 or 3 "
                                                "(ZeRO-Offload partitions it first)")
    shard_group = 0 if p.shard_group in (None, dp) else p.shard_group
    return zero, shard_group, 1 if p.zero_prefetch is None else p.zero_prefetch


def model_from_dict(raw: Mapping[str, Any], where: str = "model") -> ModelConfig:
    """Validate a ``model:`` block (ModelSchema) and build the ModelConfig."""
    values = validate(ModelSchema, raw, where).model_dump()
    if values["moe"] is not None:
        values["moe"] = MoEConfig(**values["moe"])
    return ModelConfig(**values)


def _expert_parallel(p: "ParallelSchema", model: ModelConfig, zero: int, where: str) -> dict:
    """``ep``, ``ep_placement``, ``ep_algorithm`` checked against the model and the plan."""
    moe = model.moe
    if moe is None:
        if p.ep > 1:
            raise _fail(where, "ep", f"expert parallelism needs a MoE model (model.moe), got ep = {p.ep}")
        return {}
    if moe.experts % p.ep:
        raise _fail(where, "ep", f"{p.ep} does not divide the model's {moe.experts} experts")
    if (p.dp * p.cp * p.tp) % p.ep:
        raise _fail(where, "ep", f"{p.ep} does not divide dp x cp x tp = {p.dp * p.cp * p.tp}, the ranks it is "
                                 f"carved from")
    if p.tp > 1 and not p.sequence_parallel:
        raise _fail(where, "sequence_parallel", "MoE layers with tp > 1 need sequence_parallel: true (each "
                                                "TP rank routes its own share of the tokens, as Megatron-Core "
                                                "requires)")
    if zero >= 2:
        raise _fail(where, "zero", f"ZeRO stage {zero} with MoE layers is not modelled (expert parameters "
                                   f"would shard over their expert-data-parallel group); use zero: 0 or 1")
    return {"ep": p.ep, "ep_placement": p.ep_placement, "ep_algorithm": p.ep_algorithm}
