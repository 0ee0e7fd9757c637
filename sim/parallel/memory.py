"""Per-GPU training memory: weights, gradients, optimizer state, activations.

- Parameters per transformer layer 12h^2 + 13h, embeddings V h + s h
  (Megatron-LM SC'21 Eq. 2); the last stage keeps its own copy of the word
  embeddings for the tied LM head, as Megatron does. Each TP rank holds 1/t.
- Mixed-precision Adam: 2 bytes of bf16/fp16 weights, 2 of gradients and
  K = 12 of fp32 master weights, momentum and variance per parameter. ZeRO
  (Rajbhandari et al., "ZeRO", SC'20, Sec. 5, Figure 1) partitions them over
  the N_d ranks of a shard group: per GPU (2 + 2 + K) Psi without it,
  2 Psi + 2 Psi + K Psi / N_d with stage 1 (optimizer states),
  2 Psi + (2 + K) Psi / N_d with stage 2 (and gradients),
  (2 + 2 + K) Psi / N_d with stage 3 (and parameters). With the optimizer
  state offloaded (ZeRO-Offload, Ren et al. ATC'21) its K Psi / N_d bytes are
  in host memory instead.
- Transient buffers of stages 2 and 3 (``buffers_bytes``): stage 3 gathers
  each layer's parameters before it runs, the layer computing and the
  ``zero_prefetch`` layers gathered ahead of it (FSDP's prefetch; each freed
  after use), and keeps the stage's other parameters (embeddings, LM head,
  FSDP's root unit) gathered for the iteration; stages 2 and 3 hold a layer's
  unsharded gradients from its weight-gradient GEMMs until their
  reduce-scatter has run, at most two layers at once (the one being reduced
  while the next is computed), and the root unit's for the iteration.
- Activations per layer and microbatch of b sequences (Korthikanti et al.,
  "Reducing Activation Recomputation in Large Transformer Models", MLSys
  2023, Table 2): no recomputation s b h (10 + 24/t + 5 a s/(h t)) with tensor
  parallelism, s b h (34 + 5 a s / h)/t with sequence parallelism too;
  selective recomputation s b h (10 + 24/t) and 34 s b h / t with sequence
  parallelism; full recomputation keeps only each layer's input, 2 s b h
  (/t with sequence parallelism), plus one layer's full activations while it
  is recomputed. (The paper counts 16-bit activations with 1-byte dropout
  masks; the formulas are in bytes.) With flash attention the 5 a s / h
  term of the scores is not kept.
- A stage holds the activations of as many (microbatch, chunk) pairs as its
  schedule has forwards without their backward yet (sim.parallel.schedules.max_in_flight):
  p - s for 1F1B, m for GPipe.
- With a split backward (zero-bubble schedules) the B pass frees all but the
  inputs of the layer's weight GEMMs, which the W pass needs (Qi et al., ICLR
  2024, Table 1: W needs less activation memory than B): per layer the
  inputs of QKV and fc1 (layer-norm outputs, 2 s b h bytes each, replicated
  over the TP group unless sequence-parallel), of the projection (2 s b h / t)
  and of fc2 (2 s b f / t for FFN width f; 8 s b h / t for GPT's f = 4h), in
  Korthikanti et al.'s accounting: 4 s b h + (2 s b h + 2 s b f)/t, all over t
  with sequence parallelism. With full recomputation the B pass rebuilds them
  (they are not among the kept layer inputs), so they are added while B runs.
  The peak is taken over the stage's order of F, B and W.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.parallel.experts import (moe_layer_activation_bytes, moe_layer_params,
                                  moe_layer_wgrad_input_bytes)
from sim.parallel.plan import ParallelPlan
from sim.parallel.schedules import SPLIT_BACKWARD, Work, max_in_flight, stage_order
from sim.workload.transformer import ModelConfig

ADAM_STATE_BYTES_PER_PARAM = 12


def layer_params(cfg: ModelConfig) -> int:
    """Parameters of one transformer layer: QKV, projection, MLP, two layer norms."""
    h = cfg.hidden
    fc1 = 2 * cfg.ffn if cfg.gated_mlp else cfg.ffn
    attention = h * (h + 2 * cfg.kv_dim) + (h + 2 * cfg.kv_dim) + h * h + h
    mlp = h * fc1 + fc1 + cfg.ffn * h + h
    return attention + mlp + 4 * h


def embedding_params(cfg: ModelConfig) -> int:
    """Word and position embeddings; none for a model without a vocabulary
    (the uniform models of the pipeline checks have no embedding ops)."""
    return cfg.vocab * cfg.hidden + cfg.seq_len * cfg.hidden if cfg.vocab else 0


def stage_layers(cfg: ModelConfig, plan: ParallelPlan, stage: int, chunk: int | None = None) -> list[int]:
    """The layers of ``stage`` (of one of its chunks), Megatron's interleaved assignment."""
    n = cfg.layers // (plan.pp * plan.virtual_stages)
    chunks = range(plan.virtual_stages) if chunk is None else [chunk]
    return [layer for c in chunks for layer in range((c * plan.pp + stage) * n, (c * plan.pp + stage + 1) * n)]


def stage_expert_params(cfg: ModelConfig, plan: ParallelPlan, stage: int) -> float:
    """Expert parameters one rank of ``stage`` holds (sim.parallel.experts)."""
    if cfg.moe is None:
        return 0.0
    _, experts = moe_layer_params(cfg, plan)
    return experts * sum(cfg.moe.is_moe(layer) for layer in stage_layers(cfg, plan, stage))


def stage_params(cfg: ModelConfig, plan: ParallelPlan, stage: int) -> float:
    """Parameters held by one TP rank of ``stage`` (experts included)."""
    if cfg.moe is not None:
        return _moe_stage_params(cfg, plan, stage)
    layers = cfg.layers // plan.pp
    params = layers * layer_params(cfg)
    if stage == 0:
        params += embedding_params(cfg)
    if stage == plan.pp - 1 and cfg.vocab:
        params += cfg.vocab * cfg.hidden if plan.pp > 1 else 0
    return params / plan.tp


def _moe_stage_params(cfg: ModelConfig, plan: ParallelPlan, stage: int) -> float:
    dense, experts = moe_layer_params(cfg, plan)
    params = sum(dense + experts if cfg.moe.is_moe(layer) else layer_params(cfg) / plan.tp
                 for layer in stage_layers(cfg, plan, stage))
    return params + root_params(cfg, plan, stage)


def layer_activation_bytes(cfg: ModelConfig, plan: ParallelPlan) -> tuple[float, float]:
    """(bytes kept per layer per microbatch between forward and backward,
    extra working bytes while one layer is recomputed); with context
    parallelism for the rank's seq_len / cp tokens."""
    s, b, h, a, t = cfg.seq_len // plan.cp, plan.microbatch_size, cfg.hidden, cfg.heads, plan.tp
    sbh = s * b * h
    # the s x s scores, softmax and dropout mask (5 a s / h): not kept with flash attention,
    # which stores only the output and the softmax statistics (Dao et al., FlashAttention)
    scores = 0.0 if cfg.attention == "flash" else 5 * a * s / h
    full = sbh * (34 + scores) / t if plan.sequence_parallel else sbh * (10 + 24 / t + scores / t)
    if plan.recompute == "none":
        return full, 0.0
    if plan.recompute == "selective":
        return (34 * sbh / t if plan.sequence_parallel else sbh * (10 + 24 / t)), 0.0
    return (2 * sbh / t if plan.sequence_parallel else 2 * sbh), full


def layer_wgrad_input_bytes(cfg: ModelConfig, plan: ParallelPlan) -> float:
    """Bytes per layer and microbatch that a W pass needs after its B pass: the
    inputs of the layer's weight GEMMs (see the module docstring)."""
    sb, h, t = cfg.seq_len // plan.cp * plan.microbatch_size, cfg.hidden, plan.tp
    replicated = 2 * sb * h * 2  # layer-norm outputs feeding QKV and fc1
    split = 2 * sb * h + 2 * sb * cfg.ffn  # attention context (proj input), activation (fc2 input)
    if plan.sequence_parallel:
        return (replicated + split) / t
    return replicated + split / t


def split_backward_peak(order: list[Work], chunk_bytes: float, chunk_w_bytes: float, working: float,
                        full_recompute: bool) -> float:
    """Peak activation bytes over a zero-bubble order: F allocates the chunk's
    kept activations, B frees them but for the W inputs (or, with full
    recomputation, holds the rebuilt W inputs beside them and frees the kept
    layer inputs), W frees the W inputs."""
    live = peak = 0.0
    for kind, _, _ in order:
        if kind == "F":
            live += chunk_bytes
            peak = max(peak, live)
        elif kind == "B" and full_recompute:
            peak = max(peak, live + chunk_w_bytes + working)
            live += chunk_w_bytes - chunk_bytes
        elif kind == "B":
            peak = max(peak, live + working)
            live -= chunk_bytes - chunk_w_bytes
        else:
            live -= chunk_w_bytes
    return peak


@dataclass(frozen=True)
class StageMemory:
    """Bytes per GPU of one stage. ``total_bytes`` is what the device holds at
    its peak; ``host_bytes`` (offloaded optimizer state) is in host memory."""

    stage: int
    weights_bytes: float
    gradients_bytes: float
    optimizer_bytes: float
    activations_bytes: float
    in_flight: int
    buffers_bytes: float = 0.0
    host_bytes: float = 0.0

    @property
    def model_state_bytes(self) -> float:
        """Weights, gradients and optimizer state on the device (the ZeRO paper's model states)."""
        return self.weights_bytes + self.gradients_bytes + self.optimizer_bytes

    @property
    def total_bytes(self) -> float:
        return self.model_state_bytes + self.activations_bytes + self.buffers_bytes

    def as_dict(self) -> dict:
        out = {"stage": self.stage, "weights_bytes": self.weights_bytes,
               "gradients_bytes": self.gradients_bytes, "optimizer_bytes": self.optimizer_bytes,
               "activations_bytes": self.activations_bytes, "in_flight_microbatches": self.in_flight,
               "total_bytes": self.total_bytes}
        if self.buffers_bytes:
            out["buffers_bytes"] = self.buffers_bytes
        if self.host_bytes:
            out["host_bytes"] = self.host_bytes
        return out


def chunk_activation_bytes(cfg: ModelConfig, plan: ParallelPlan, stage: int = 0, chunk: int = 0) -> float:
    """Activations one microbatch keeps of a model chunk (MoE layers differ)."""
    if cfg.moe is not None:
        return sum(moe_layer_activation_bytes(cfg, plan)[0] if cfg.moe.is_moe(layer)
                   else layer_activation_bytes(cfg, plan)[0] for layer in stage_layers(cfg, plan, stage, chunk))
    kept, _ = layer_activation_bytes(cfg, plan)
    return kept * cfg.layers / (plan.pp * plan.virtual_stages)


def chunk_wgrad_input_bytes(cfg: ModelConfig, plan: ParallelPlan, stage: int = 0, chunk: int = 0) -> float:
    """The W inputs one microbatch holds of a chunk between its B and W passes."""
    if cfg.moe is not None:
        return sum(moe_layer_wgrad_input_bytes(cfg, plan) if cfg.moe.is_moe(layer)
                   else layer_wgrad_input_bytes(cfg, plan) for layer in stage_layers(cfg, plan, stage, chunk))
    return layer_wgrad_input_bytes(cfg, plan) * cfg.layers / (plan.pp * plan.virtual_stages)


def _moe_activation_peak(cfg: ModelConfig, plan: ParallelPlan, stage: int, order: list[Work]) -> float:
    """Peak activations over the stage's order when chunks differ (MoE layers):
    the same walk as split_backward_peak, chunk by chunk."""
    kept = {c: chunk_activation_bytes(cfg, plan, stage, c) for c in range(plan.virtual_stages)}
    w = {c: chunk_wgrad_input_bytes(cfg, plan, stage, c) for c in range(plan.virtual_stages)}
    working = max((moe_layer_activation_bytes(cfg, plan) if cfg.moe.is_moe(layer)
                   else layer_activation_bytes(cfg, plan))[1] for layer in stage_layers(cfg, plan, stage))
    split = plan.schedule in SPLIT_BACKWARD
    full = plan.recompute == "full"
    live = peak = 0.0
    for kind, _, c in order:
        if kind == "F":
            live += kept[c]
            peak = max(peak, live + (0.0 if split else working))
        elif kind == "B" and split and full:
            peak = max(peak, live + w[c] + working)
            live += w[c] - kept[c]
        elif kind == "B" and split:
            live -= kept[c] - w[c]
        elif kind == "B":
            live -= kept[c]
        else:
            live -= w[c]
    return peak


def zero_model_states(params: float, shards: int, stage: int, width: int = 2,
                      k: int = ADAM_STATE_BYTES_PER_PARAM) -> tuple[float, float, float]:
    """(weights, gradients, optimizer state) bytes per GPU of ``params``
    parameters under ZeRO ``stage`` over ``shards`` ranks: the ZeRO paper's
    2 Psi + 2 Psi + K Psi split by stage (module docstring)."""
    weights = width * params / (shards if stage >= 3 else 1)
    gradients = width * params / (shards if stage >= 2 else 1)
    optimizer = k * params / (shards if stage >= 1 else 1)
    return weights, gradients, optimizer


def model_states(cfg: ModelConfig, plan: ParallelPlan, stage: int) -> tuple[float, float, float]:
    """(weights, gradients, optimizer state) bytes per GPU of ``stage``; expert
    parameters shard over their expert-data-parallel group (dp x tp / ep)."""
    experts = stage_expert_params(cfg, plan, stage)
    dense = zero_model_states(stage_params(cfg, plan, stage) - experts, plan.shards, plan.zero, cfg.dtype_bytes)
    if not experts:
        return dense
    sharded = zero_model_states(experts, plan.replicas * plan.tp // plan.ep, plan.zero, cfg.dtype_bytes)
    return tuple(a + b for a, b in zip(dense, sharded))


def optimizer_params(cfg: ModelConfig, plan: ParallelPlan, stage: int) -> float:
    """Parameters one rank's optimizer updates: its ZeRO shards (experts
    sharded over the expert-data-parallel group)."""
    experts = stage_expert_params(cfg, plan, stage)
    if not experts:
        return stage_params(cfg, plan, stage) / plan.shards
    expert_shards = plan.replicas * plan.tp // plan.ep if plan.zero else 1
    return (stage_params(cfg, plan, stage) - experts) / plan.shards + experts / expert_shards


def root_params(cfg: ModelConfig, plan: ParallelPlan, stage: int) -> float:
    """Parameters of ``stage`` outside its transformer layers (embeddings, LM
    head) per TP rank: FSDP's root unit."""
    params = embedding_params(cfg) if stage == 0 else 0
    if stage == plan.pp - 1 and cfg.vocab and plan.pp > 1:
        params += cfg.vocab * cfg.hidden
    return params / plan.tp


def sharding_buffers(cfg: ModelConfig, plan: ParallelPlan, stage: int) -> float:
    """Peak transient bytes of ZeRO stages 2 and 3 (the module docstring)."""
    if plan.zero < 2:
        return 0.0
    width = cfg.dtype_bytes
    layer = layer_params(cfg) / plan.tp * width
    root = root_params(cfg, plan, stage) * width
    gathered = (1 + plan.zero_prefetch) * layer + root if plan.zero >= 3 else 0.0
    return gathered + 2 * layer + root


def stage_memory(cfg: ModelConfig, plan: ParallelPlan, stage: int) -> StageMemory:
    weights, gradients, optimizer = model_states(cfg, plan, stage)
    host = 0.0
    if plan.offload_optimizer:
        host, optimizer = optimizer, 0.0
    order = stage_order(plan.schedule, stage, plan.pp, plan.microbatches, plan.virtual_stages)
    in_flight = max_in_flight(order)
    _, working = layer_activation_bytes(cfg, plan)
    if cfg.moe is not None:
        activations = _moe_activation_peak(cfg, plan, stage, order)
    elif plan.schedule in SPLIT_BACKWARD:
        chunk_w = layer_wgrad_input_bytes(cfg, plan) * cfg.layers / (plan.pp * plan.virtual_stages)
        activations = split_backward_peak(order, chunk_activation_bytes(cfg, plan), chunk_w, working,
                                          plan.recompute == "full")
    else:
        activations = in_flight * chunk_activation_bytes(cfg, plan) + working
    return StageMemory(stage, weights, gradients, optimizer, activations, in_flight,
                       sharding_buffers(cfg, plan, stage), host)
