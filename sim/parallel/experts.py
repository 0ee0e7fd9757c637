"""Expert parallelism: where the experts of a MoE layer live, and what a rank holds.

Megatron-Core's layout with expert tensor parallelism 1 (``--expert-model-
parallel-size`` with ``--expert-tensor-parallel-size 1``): the ``dp x tp``
ranks of a pipeline stage are split into expert-parallel groups of ``ep``
ranks; each rank of a group holds ``experts / ep`` whole experts (rank r the
experts r E/ep .. (r + 1) E/ep - 1) and routes its own tokens, the b s / t of
its sequence-parallel shard, to the group with an all-to-all (dispatch), and
gets them back with another (combine). The ranks holding the same experts in
the other groups form the expert-data-parallel group (``dp x tp / ep``
ranks), over which expert gradients are synchronised. Placement
(``ep_placement``): ``contiguous`` takes ``ep`` consecutive ranks of the plane
(TP ranks of a replica first, then the next replicas: inside a node when it
has room), ``strided`` spreads a group over the plane at stride
``dp x tp / ep`` (one rank per node, say), leaving the expert-data-parallel
groups inside nodes instead.

Memory of a MoE layer on one rank: attention and layer norms split over TP as
in a dense layer; the router (h x E, replicated), the shared experts (split
over TP like a dense MLP) and the rank's ``experts / ep`` experts whole.
Activations per layer and microbatch: the attention part of Korthikanti et
al.'s accounting (15 s b h + 5 a s^2 b of the dense 34 s b h + 5 a s^2 b, over t
with sequence parallelism; no s^2 term with flash attention); per token of the rank's shard, the MoE part: the
router input and dropout mask (2h + h bytes), fp32 router probabilities (4E),
per routed copy the permuted input, the fc1 output, the activation output
and the expert output (2h + 2 fc1 + 2f + 2h), and the shared experts' fc1 and
activation outputs, in place of the dense MLP's 19 h.
"""

from __future__ import annotations

from sim.parallel.plan import ParallelPlan
from sim.workload.moe import expert_ffn, expert_params, router_params
from sim.workload.transformer import ModelConfig

EP_PLACEMENTS = ("contiguous", "strided")


def _plane(plan: ParallelPlan, flat: int) -> tuple[int, int]:
    """(replica, TP rank) of position ``flat`` of a stage's dp x tp plane."""
    return flat // plan.tp, flat % plan.tp


def ep_group(plan: ParallelPlan, d: int, s: int, j: int) -> list[int]:
    """The expert-parallel group of rank (replica d, stage s, TP rank j), in EP-index order."""
    flat, size = d * plan.tp + j, plan.replicas * plan.tp
    if plan.ep_placement == "strided":
        stride = size // plan.ep
        members = [flat % stride + x * stride for x in range(plan.ep)]
    else:
        first = flat // plan.ep * plan.ep
        members = [first + x for x in range(plan.ep)]
    return [plan.rank(f // plan.tp, s, f % plan.tp) for f in members]


def ep_groups(plan: ParallelPlan, s: int) -> list[list[int]]:
    """Every expert-parallel group of stage ``s``."""
    seen, groups = set(), []
    for flat in range(plan.replicas * plan.tp):
        d, j = _plane(plan, flat)
        group = ep_group(plan, d, s, j)
        if group[0] not in seen:
            seen.add(group[0])
            groups.append(group)
    return groups


def ep_index(plan: ParallelPlan, d: int, s: int, j: int) -> int:
    return ep_group(plan, d, s, j).index(plan.rank(d, s, j))


def expert_dp_group(plan: ParallelPlan, d: int, s: int, j: int) -> list[int]:
    """The ranks of stage ``s`` holding the same experts as (d, s, j)."""
    index = ep_index(plan, d, s, j)
    return [group[index] for group in ep_groups(plan, s)]


def moe_layer_params(cfg: ModelConfig, plan: ParallelPlan) -> tuple[float, float]:
    """(dense, expert) parameters of one MoE layer on one rank (module docstring)."""
    h, moe = cfg.hidden, cfg.moe
    attention = h * (h + 2 * cfg.kv_dim) + (h + 2 * cfg.kv_dim) + h * h + h + 4 * h
    dense = attention / plan.tp + router_params(cfg) + moe.shared_experts * expert_params(cfg) / plan.tp
    return dense, moe.experts // plan.ep * expert_params(cfg)


def moe_layer_activation_bytes(cfg: ModelConfig, plan: ParallelPlan) -> tuple[float, float]:
    """(bytes kept per MoE layer and microbatch, extra working bytes while one
    layer is recomputed): the module docstring's accounting, with the same
    recomputation rules as a dense layer (selective: the attention scores are
    not kept; full: only the layer input)."""
    s, b, h, a, t = cfg.seq_len // plan.cp, plan.microbatch_size, cfg.hidden, cfg.heads, plan.tp
    moe = cfg.moe
    sbh, tokens = s * b * h, s * b / t
    f = expert_ffn(cfg)
    fc1 = 2 * f if cfg.gated_mlp else f
    per_token = 3 * h + 4 * moe.experts + moe.top_k * (4 * h + 2 * fc1 + 2 * f) \
        + moe.shared_experts * (2 * fc1 + 2 * f)
    mlp = tokens * per_token
    scores = 0.0 if cfg.attention == "flash" else 5 * a * s * s * b / t  # flash keeps no s x s scores
    full = sbh * 15 / t + scores + mlp
    if plan.recompute == "none":
        return full, 0.0
    if plan.recompute == "selective":
        return full - scores, 0.0
    return 2 * sbh / t, full


def moe_layer_wgrad_input_bytes(cfg: ModelConfig, plan: ParallelPlan) -> float:
    """Bytes per MoE layer and microbatch a W pass needs after B (split
    backward): the inputs of the weight GEMMs: QKV and projection (4 s b h / t),
    per token the router's input (2h), per routed copy the fc1 and fc2 inputs
    (2h + 2f), the shared experts' fc2 inputs (2f each)."""
    s, b, h, t = cfg.seq_len // plan.cp, plan.microbatch_size, cfg.hidden, plan.tp
    moe, f = cfg.moe, expert_ffn(cfg)
    per_token = 2 * h + moe.top_k * (2 * h + 2 * f) + moe.shared_experts * 2 * f
    return 4 * s * b * h / t + s * b / t * per_token
