"""The paged KV cache: how many blocks fit, and who holds them.

Capacity follows vLLM's accounting (Kwon et al., "Efficient Memory
Management for Large Language Model Serving with PagedAttention", SOSP 2023;
``vllm/worker/worker.py`` ``determine_num_available_blocks``)::

    num_gpu_blocks = floor((HBM x gpu_memory_utilization - peak_memory) / block_bytes)
    num_cpu_blocks = floor(swap_space / block_bytes)
    block_bytes    = block_size x layers_per_stage x 2 (K and V) x kv_heads / tp x head_dim x kv_dtype_bytes

per GPU, where vLLM's ``peak_memory`` is the weights plus the peak activation
memory of a profiling forward pass at ``max_num_batched_tokens`` tokens. Here
the weights are the model's parameters on one GPU (its share of the
stage's layers under tensor parallelism, plus the embedding on the first
stage and the LM head on the last) in the weight dtype, and the activation
peak is estimated as the widest intermediate tensors of that pass (see
``activation_bytes``) unless the scenario gives ``activation_reserve_bytes``.

Admission and growth follow vLLM's block manager: a prompt is admitted
when ``free - needed >= watermark_blocks`` (watermark_blocks = watermark x
num_gpu_blocks), a request that could not fit even in an empty cache is
never admitted (vLLM's ``AllocStatus.NEVER``), and a decode step that
crosses a block boundary takes one more block, preempting the most recently
admitted request when none is free. Prefix caching (vLLM's automatic prefix
caching) keeps the full blocks of a shared prefix resident, counted once,
while any request uses them and afterwards until their space is needed
(least recently used first).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from sim.workload.transformer import ModelConfig


def kv_bytes_per_token(model: ModelConfig, layers: int, tp: int, kv_dtype_bytes: float) -> float:
    """KV-cache bytes one token occupies on one GPU: 2 (K, V) x layers x kv_heads / tp x head_dim x bytes."""
    kv_heads = model.kv_heads or model.heads
    return 2.0 * layers * (kv_heads / tp) * model.head_dim * kv_dtype_bytes


def stage_layers(model: ModelConfig, pp: int, stage: int) -> int:
    """Layers of pipeline stage ``stage`` (the first stages take the remainder)."""
    base, extra = divmod(model.layers, pp)
    return base + (1 if stage < extra else 0)


def weight_params(model: ModelConfig, layers: int, tp: int, first: bool, last: bool) -> float:
    """Parameters one GPU holds: its layers' QKV, output, MLP weights (split by tp) and
    norms, plus the embedding on the first stage and the LM head on the last (each
    vocab x hidden, split by tp as Megatron-LM / vLLM's VocabParallelEmbedding do)."""
    h, kv = model.hidden, model.kv_dim
    fc1 = (2 if model.gated_mlp else 1) * model.ffn
    per_layer = (h * (h + 2 * kv) + h * h + h * fc1 + model.ffn * h) / tp + 2 * h
    total = layers * per_layer
    if first:
        total += model.vocab * h / tp
    if last:
        total += model.vocab * h / tp + h
    return total


def activation_bytes(model: ModelConfig, tokens: int, seqs: int, tp: int, act_bytes: float) -> float:
    """Peak activation memory of one forward pass of ``tokens`` tokens on one GPU:
    the residual stream and the widest intermediate of a layer held at once
    (tokens x (hidden + max(QKV width, MLP up-projection width) / tp)) plus the
    fp32 logits of the sampled sequences (seqs x vocab / tp x 4 bytes). An
    estimate of what vLLM's profiling pass measures; the scenario may replace it
    with ``kv_cache.activation_reserve_bytes``."""
    h = model.hidden
    fc1 = (2 if model.gated_mlp else 1) * model.ffn
    widest = max(h + 2 * model.kv_dim, fc1) / tp
    return tokens * (2 * h + widest) * act_bytes + seqs * model.vocab / tp * 4.0


@dataclass(frozen=True)
class KvBudget:
    """The KV-cache capacity of one replica (per GPU figures, bytes)."""

    hbm_bytes: int
    gpu_memory_utilization: float
    weights_bytes: float
    activation_bytes: float
    block_size: int
    block_bytes: float
    num_gpu_blocks: int
    num_cpu_blocks: int
    watermark_blocks: int

    @property
    def kv_bytes(self) -> float:
        return self.num_gpu_blocks * self.block_bytes


def kv_budget(hbm_bytes: int, utilization: float, weights_bytes: float, act_bytes: float,
              block_size: int, bytes_per_token: float, swap_bytes: int, watermark: float,
              share: int = 1) -> KvBudget:
    """vLLM's block counts; ``share`` > 1 splits them among pipeline virtual engines
    (vLLM's Scheduler divides num_gpu_blocks by the pipeline size)."""
    block = block_size * bytes_per_token
    free = hbm_bytes * utilization - weights_bytes - act_bytes
    gpu = max(0, int(free // block)) // share
    cpu = int(swap_bytes // block) // share
    return KvBudget(hbm_bytes, utilization, weights_bytes, act_bytes, block_size, block, gpu, cpu,
                    int(watermark * gpu))


def blocks_for(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size)


class BlockManager:
    """GPU and host (swap) blocks of one scheduler, with optional prefix caching.

    ``used`` counts blocks held by requests (private) plus resident prefix
    blocks; ``free`` is what is left. Cached prefixes no request uses are
    evictable: ``available`` counts them as free.
    """

    def __init__(self, budget: KvBudget, prefix_caching: bool = False):
        self.total = budget.num_gpu_blocks
        self.watermark = budget.watermark_blocks
        self.cpu_total = budget.num_cpu_blocks
        self.block_size = budget.block_size
        self.prefix_caching = prefix_caching
        self.used = 0
        self.cpu_used = 0
        self.peak = 0
        # prefix id -> [blocks, users]; unused ones in LRU order in self.idle
        self.prefixes: dict[int, list[int]] = {}
        self.idle: OrderedDict[int, int] = OrderedDict()
        self.idle_blocks = 0
        self.hits = 0
        self.hit_tokens = 0

    @property
    def free(self) -> int:
        return self.total - self.used

    @property
    def available(self) -> int:
        """Free blocks plus cached prefix blocks no request uses (evictable)."""
        return self.total - self.used + self.idle_blocks

    def never_fits(self, blocks: int) -> bool:
        """vLLM's AllocStatus.NEVER: more than the cache minus the watermark."""
        return self.total - blocks < self.watermark

    def can_allocate(self, blocks: int) -> bool:
        return self.available - blocks >= self.watermark

    def can_admit(self, prefix_id: int, prefix_tokens: int, private: int) -> bool:
        """Room (above the watermark) for a request's ``private`` blocks and, on a
        prefix-cache miss, its prefix's blocks; a resident prefix is not counted
        as evictable for the request that will use it."""
        shared = self.shared_blocks(prefix_id, prefix_tokens)
        entry = self.prefixes.get(prefix_id) if shared else None
        if entry is None:
            return self.available - private - shared >= self.watermark
        own_idle = entry[0] if entry[1] == 0 else 0
        return self.available - own_idle - private >= self.watermark

    def take(self, blocks: int) -> None:
        """Allocate ``blocks`` (evicting idle cached prefixes, least recently used
        first, when the free blocks are not enough)."""
        while self.free < blocks and self.idle:
            prefix, size = self.idle.popitem(last=False)
            del self.prefixes[prefix]
            self.idle_blocks -= size
            self.used -= size
        if self.free < blocks:
            raise RuntimeError(f"KV cache overdrawn: {blocks} blocks wanted, {self.free} free")
        self.used += blocks
        if self.used > self.peak:
            self.peak = self.used

    def give(self, blocks: int) -> None:
        self.used -= blocks

    def prefix_hit(self, prefix_id: int, prefix_tokens: int) -> int:
        """Blocks of the prefix already resident (0 without prefix caching or on a miss)."""
        if not self.prefix_caching or prefix_id < 0:
            return 0
        entry = self.prefixes.get(prefix_id)
        return entry[0] if entry is not None else 0

    def acquire_prefix(self, prefix_id: int, prefix_tokens: int) -> int:
        """Use the prefix's full blocks: returns how many were already resident
        (their tokens need no prefill). On a miss they are allocated now and
        kept resident. Call only after ``can_allocate`` succeeded for the rest."""
        size = prefix_tokens // self.block_size
        if not self.prefix_caching or prefix_id < 0 or size == 0:
            return 0
        entry = self.prefixes.get(prefix_id)
        if entry is None:
            self.take(size)
            self.prefixes[prefix_id] = [size, 1]
            return 0
        if entry[1] == 0:
            self.idle.pop(prefix_id)
            self.idle_blocks -= entry[0]
        entry[1] += 1
        self.hits += 1
        self.hit_tokens += entry[0] * self.block_size
        return entry[0]

    def release_prefix(self, prefix_id: int) -> None:
        entry = self.prefixes.get(prefix_id) if self.prefix_caching and prefix_id >= 0 else None
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.idle[prefix_id] = entry[0]
            self.idle_blocks += entry[0]

    def shared_blocks(self, prefix_id: int, prefix_tokens: int) -> int:
        """Full blocks of a prefix that prefix caching shares (0 without it)."""
        if not self.prefix_caching or prefix_id < 0:
            return 0
        return prefix_tokens // self.block_size

    def can_swap_out(self, blocks: int) -> bool:
        return self.cpu_total - self.cpu_used >= blocks

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

