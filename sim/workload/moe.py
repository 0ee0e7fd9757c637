"""Mixture-of-experts layers: configuration, parameters, FLOPs and routing.

A MoE layer replaces the dense MLP with ``experts`` routed experts (each a
feed-forward block of width ``expert_ffn_hidden``, gated like the model's MLP)
of which a router picks ``top_k`` per token, plus ``shared_experts`` experts
every token passes through (DeepSeekMoE, Dai et al. 2024). Which layers are
MoE follows Hugging Face's DeepSeek-V3 modelling code: layer i is MoE when
i >= ``first_dense_layers`` and i % ``layer_freq`` == 0 (``first_k_dense_replace``
and ``moe_layer_freq`` in its config.json).

Routing (``expert_loads``): a microbatch's tokens are routed to experts in the
shares ``p`` of a symmetric Dirichlet distribution with concentration
``routing_alpha``, drawn per (layer, microbatch) from a generator seeded with
(``routing_seed``, layer, microbatch): expected loads k T p_e (capped at T,
since a token picks k distinct experts; the excess goes to the others in
proportion). ``routing_alpha: null`` is perfectly balanced routing (every
expert k T / E, the limit alpha -> infinity); small alpha is skewed (alpha = 1
is uniform over the simplex). With ``capacity_factor`` C an expert processes at most
ceil(C k T / E) tokens and drops the rest (Megatron-Core's ``get_capacity``,
GShard's capacity); ``null`` is dropless.

Model presets: ``mixtral-8x7b`` (mistralai/Mixtral-8x7B-v0.1 config.json: 32
layers, hidden 4096, 32 heads, 8 KV heads, FFN 14336, SwiGLU, vocab 32000, 8
experts, top-2, every layer MoE, no biases; Jiang et al., "Mixtral of Experts", 2024) and
``deepseek-v3-like`` (deepseek-ai/DeepSeek-V3 config.json: 61 layers, hidden
7168, 128 heads, dense FFN 18432 in the first 3 layers, 256 routed experts of
width 2048 with top-8 and 1 shared expert, vocab 129280; its multi-head latent
attention is modelled as standard multi-head attention of the same width,
hence "like"; DeepSeek-AI, "DeepSeek-V3 Technical Report", 2024).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class MoEConfig:
    experts: int
    top_k: int = 2
    expert_ffn_hidden: int | None = None
    shared_experts: int = 0
    layer_freq: int = 1
    first_dense_layers: int = 0
    capacity_factor: float | None = None
    routing_alpha: float | None = None
    routing_seed: int = 0

    def is_moe(self, layer: int) -> bool:
        return layer >= self.first_dense_layers and layer % self.layer_freq == 0


def expert_ffn(cfg) -> int:
    """Width of one expert's feed-forward block."""
    return cfg.moe.expert_ffn_hidden or cfg.ffn


def expert_params(cfg) -> int:
    """Parameters of one expert: fc1 (twice as wide when gated) and fc2, with biases."""
    f, h = expert_ffn(cfg), cfg.hidden
    fc1 = 2 * f if cfg.gated_mlp else f
    return h * fc1 + fc1 + f * h + h


def router_params(cfg) -> int:
    return cfg.hidden * cfg.moe.experts


def mlp_forward_flops_per_token(cfg) -> float:
    """Forward FLOPs per token of a MoE layer's MLP part without dropping:
    the router, the shared experts and top_k routed experts."""
    moe = cfg.moe
    f, h = expert_ffn(cfg), cfg.hidden
    fc1 = 2 * f if cfg.gated_mlp else f
    per_expert = 2.0 * h * (fc1 + f)
    return 2.0 * h * moe.experts + (moe.shared_experts + moe.top_k) * per_expert


def capacity(moe: MoEConfig, tokens: int) -> int | None:
    """Tokens one expert processes at most, or None (dropless)."""
    if moe.capacity_factor is None:
        return None
    return math.ceil(moe.capacity_factor * tokens * moe.top_k / moe.experts)


@lru_cache(maxsize=4096)
def expert_loads(moe: MoEConfig, tokens: int, layer: int, microbatch: int) -> tuple[int, ...]:
    """Tokens each expert processes for ``tokens`` tokens routed together
    (after dropping beyond capacity), integers summing to the kept
    assignments (module docstring)."""
    e, k = moe.experts, moe.top_k
    if moe.routing_alpha is None:
        wanted = np.full(e, tokens * k / e)
    else:
        rng = np.random.default_rng([moe.routing_seed, layer, microbatch])
        wanted = tokens * k * rng.dirichlet(np.full(e, float(moe.routing_alpha)))
        for _ in range(e):  # a token picks k distinct experts: at most T each
            excess = np.clip(wanted - tokens, 0.0, None).sum()
            if excess <= 1e-9 * tokens:
                break
            wanted = np.minimum(wanted, tokens)
            room = wanted < tokens
            wanted[room] += excess * wanted[room] / wanted[room].sum()
    cap = capacity(moe, tokens)
    if cap is not None:
        wanted = np.minimum(wanted, cap)
    return _round_preserving_sum(wanted)


def _round_preserving_sum(values: np.ndarray) -> tuple[int, ...]:
    """Largest-remainder rounding: integers whose sum is the rounded total."""
    floors = np.floor(values + 1e-9)
    short = int(round(values.sum() - floors.sum()))
    order = np.argsort(-(values - floors), kind="stable")
    floors[order[:short]] += 1
    return tuple(int(x) for x in floors)


PRESETS = {
    "mixtral-8x7b": {
        "name": "mixtral-8x7b", "layers": 32, "hidden": 4096, "heads": 32, "kv_heads": 8, "ffn_hidden": 14336,
        "gated_mlp": True, "seq_len": 4096, "vocab": 32000, "bias": False,
        "moe": {"experts": 8, "top_k": 2},
    },
    "deepseek-v3-like": {
        "name": "deepseek-v3-like", "layers": 61, "hidden": 7168, "heads": 128, "ffn_hidden": 18432,
        "gated_mlp": True, "seq_len": 4096, "vocab": 129280, "bias": False,
        "moe": {"experts": 256, "top_k": 8, "expert_ffn_hidden": 2048, "shared_experts": 1,
                "first_dense_layers": 3},
    },
}
