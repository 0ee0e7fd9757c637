"""Batch schedulers: one class per policy, each deciding what the next iteration runs.

Continuous (iteration-level) batching, Orca (Yu et al., OSDI 2022) and vLLM
(Kwon et al., SOSP 2023): every iteration the scheduler may admit waiting
requests and drop finished ones. Admission needs KV blocks for every known
token of the request (vLLM allocates the whole prompt at admission) with
``watermark`` blocks to spare, a slot under ``max_num_seqs`` and room in the
iteration's token budget ``max_num_batched_tokens``. A decode step that needs
one more block and finds none preempts the most recently admitted running
request (recomputation, or a swap to the host tier when configured and the
swap space has room), as ``vllm/core/scheduler.py`` does. Three policies:

``PrefillFirst``   vLLM's default (``_schedule_default``): if no request is
                   swapped out, admit whole prompts first; an iteration with
                   prefills runs no decodes; otherwise run every running
                   request's decode, then swap requests back in.
``DecodeFirst``    Orca-style mixed iterations: every running request decodes,
                   then whole prompts are admitted in the same iteration while
                   the token budget left allows.
``ChunkedPrefill`` Sarathi-Serve (Agrawal et al., OSDI 2024; vLLM's
                   ``--enable-chunked-prefill``): a token budget per iteration
                   filled by all decodes first, then chunks of prefills already
                   under way, then swapped requests, then new prompts, each
                   prompt cut to the budget left ("stall-free batching").

``StaticBatching`` is request-level batching as in FasterTransformer: a batch
of up to ``max_batch_size`` waiting requests (optionally after waiting up to
``batch_timeout_s`` for it to fill) is padded to its longest prompt and runs
until its longest output is done, its KV cache reserved for the padded
length up front; requests that finish early keep their slot. Nothing joins a
batch in flight.

A scheduler in a disaggregated prefill pool (``handoff=True``) hands each
request over after its first token instead of decoding it; its blocks stay
held until the KV transfer finishes (sim.serving.disagg).

Decoding requests are kept as a *decode set* (``Decoders``): in every
continuous policy, an iteration that decodes decodes every prefilled running
request, so a request's progress is its offset plus the scheduler's count of
decode iterations (``tick``). Its next block boundary and its last token are
therefore known in advance and kept in a heap, and an iteration touches only
the requests that cross a block boundary or finish in it: the same decisions
as a per-request loop, at a cost proportional to events, not tokens.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass

import numpy as np

from sim.serving.kvcache import BlockManager, blocks_for
from sim.serving.pricing import BatchShape
from sim.serving.state import FINISHED, RUNNING, SWAPPED, TRANSFER, WAITING, RequestState

GROW, DONE = 0, 1
EMPTY = BatchShape()


class Batch:
    """One iteration: prefill chunks (request, tokens), the number of decodes, its shape,
    and what setting it up did (blocks swapped, requests preempted)."""

    __slots__ = ("prefill", "decodes", "shape", "swap_blocks", "preempted", "recomputed",
                 "kv_blocks_used", "size")

    def __init__(self):
        self.prefill: list[tuple[int, int]] = []
        self.decodes = 0
        self.shape = EMPTY
        self.swap_blocks = 0
        self.preempted = 0
        self.recomputed = 0
        self.kv_blocks_used = 0
        self.size = 0


@dataclass
class Limits:
    max_num_seqs: int
    max_num_batched_tokens: int
    max_batch_size: int
    batch_timeout_s: float
    preemption: str


class Decoders:
    """The decode set of one scheduler (see the module docstring).

    For a member r, computed = anchor[r] + tick. Events (tick, kind, order, r,
    version) say when r needs its next block (GROW, at the decode iteration
    whose token would not fit) and when it produces its last token (DONE).
    """

    def __init__(self, state: RequestState, block_size: int):
        self.state = state
        self.block_size = block_size
        self.tick = 0
        self.count = 0
        self.anchor_sum = 0
        self.anchor: dict[int, int] = {}
        self.joined: dict[int, int] = {}      # r -> tick of its first decode in this stint
        self.version: dict[int, int] = {}
        self.events: list[tuple[int, int, int, int, int]] = []
        self.ends = np.zeros(1024)             # end time of the decode iteration with each tick

    def context(self) -> int:
        """Sum over members of the keys their next decode attends to (computed + 1)."""
        return self.anchor_sum + self.count * (self.tick + 1)

    def computed(self, r: int) -> int:
        return self.anchor[r] + self.tick

    def join(self, r: int, order: int) -> None:
        state = self.state
        anchor = state.computed[r] - self.tick
        self.anchor[r] = anchor
        self.anchor_sum += anchor
        self.count += 1
        self.joined[r] = self.tick
        version = self.version.get(r, 0) + 1
        self.version[r] = version
        cover = (state.blocks[r] + state.shared[r]) * self.block_size
        heapq.heappush(self.events, (cover - anchor, GROW, order, r, version))
        done = state.output[r] - (state.known[r] - state.prompt[r]) - 1 + state.computed[r] - anchor
        heapq.heappush(self.events, (done, DONE, order, r, version))

    def leave(self, r: int, processed_tick: int) -> None:
        """Remove ``r``, writing back its token counts; ``processed_tick``: decode
        iterations done so far (its last token came from iteration processed_tick - 1)."""
        state = self.state
        anchor = self.anchor.pop(r)
        self.anchor_sum -= anchor
        self.count -= 1
        self.version[r] += 1
        computed = anchor + processed_tick
        gained = computed - state.computed[r]
        state.computed[r] = computed
        state.known[r] += gained
        state.generated[r] += gained
        first = self.joined.pop(r)
        if gained > 0:
            ends = self.ends[first:processed_tick]
            gap = ends[0] - state.last_token_s[r]
            if gained > 1:
                gap = max(gap, float(np.max(np.diff(ends))))
            if gap > state.itl_max_s[r]:
                state.itl_max_s[r] = float(gap)
            state.last_token_s[r] = float(ends[-1])

    def due(self, kind: int, tick: int) -> list[tuple[int, int]]:
        """Valid events of ``kind`` for the decode iteration ``tick``, as (order, request),
        in admission order. GROW events of iteration t are taken before it runs, DONE
        events after it, so the heap (ordered by tick, then kind) is consumed in order."""
        events, version = self.events, self.version
        found = []
        pop = heapq.heappop
        while events:
            head = events[0]
            if head[0] > tick or (head[0] == tick and head[1] > kind):
                break
            t, k, order, r, v = pop(events)
            if v == version.get(r) and k == kind:
                found.append((order, r))
        return found

    def grown(self, r: int, order: int) -> None:
        """``r`` got one more block: its next boundary is a block later."""
        state = self.state
        cover = (state.blocks[r] + state.shared[r]) * self.block_size
        heapq.heappush(self.events, (cover - self.anchor[r], GROW, order, r, self.version[r]))

    def advance(self, now: float) -> None:
        if self.tick >= len(self.ends):
            self.ends = np.concatenate([self.ends, np.zeros(len(self.ends))])
        self.ends[self.tick] = now
        self.tick += 1


class Scheduler(ABC):
    """State and bookkeeping shared by the continuous policies; ``plan`` is the policy."""

    policy = ""

    def __init__(self, state: RequestState, kv: BlockManager, limits: Limits, handoff: bool = False):
        self.state = state
        self.kv = kv
        self.limits = limits
        self.handoff = handoff
        self.waiting: deque[int] = deque()
        self.swapped: deque[int] = deque()
        self.prefilling: list[int] = []          # running, not yet prefilled, in admission order
        self.order: list[tuple[int, int]] = []   # (admission order, request) of running requests, lazily pruned
        self.admitted: dict[int, int] = {}       # running request -> its admission order
        self.decoders = Decoders(state, kv.block_size)
        self.handoffs: list[int] = []
        self.retry_at: float | None = None
        self.preemptions = 0
        self._next_order = 0

    # ------------------------------------------------------------ queries

    def running_count(self) -> int:
        return len(self.admitted)

    def unfinished(self) -> int:
        return len(self.waiting) + len(self.admitted) + len(self.swapped)

    def can_ever_fit(self, r: int) -> str | None:
        """Why request ``r`` can never be served here, or None."""
        state, kv = self.state, self.kv
        full = state.prompt[r] + state.output[r] - 1
        prompt_blocks = blocks_for(state.prompt[r], kv.block_size)
        if kv.never_fits(prompt_blocks):
            return (f"its prompt needs {prompt_blocks} KV blocks; the cache has {kv.total} "
                    f"(less the watermark of {kv.watermark})")
        if kv.never_fits(blocks_for(full, kv.block_size)):
            return (f"its {full} tokens of KV cache need {blocks_for(full, kv.block_size)} blocks; "
                    f"the cache has {kv.total} (less the watermark of {kv.watermark})")
        if self.policy != "chunked_prefill" and full > self.limits.max_num_batched_tokens:
            return (f"recomputing its {full} tokens after a preemption would exceed "
                    f"max_num_batched_tokens ({self.limits.max_num_batched_tokens}) without chunking")
        return None

    # ------------------------------------------------------------ running-set bookkeeping

    def enqueue(self, r: int) -> None:
        self.waiting.append(r)

    def _run(self, r: int) -> int:
        order = self._next_order
        self._next_order += 1
        self.admitted[r] = order
        self.order.append((order, r))
        self.state.status[r] = RUNNING
        return order

    def _stop(self, r: int) -> None:
        del self.admitted[r]
        if len(self.order) > 2 * len(self.admitted) + 64:
            admitted = self.admitted
            self.order = [(o, x) for o, x in self.order if admitted.get(x) == o]

    def _tail(self) -> int:
        """The most recently admitted running request."""
        order, admitted = self.order, self.admitted
        while True:
            o, r = order[-1]
            if admitted.get(r) == o:
                return r
            order.pop()

    def enter_decode(self, r: int) -> None:
        """A prefilled request (computed = known - 1) joins the decode set."""
        order = self.admitted.get(r)
        if order is None:
            order = self._run(r)
        self.decoders.join(r, order)

    # ------------------------------------------------------------ admission, growth, preemption

    def _admit(self, r: int, now: float) -> bool:
        """Allocate blocks for every known token of ``r``; False if they do not fit."""
        state, kv = self.state, self.kv
        pid, ptokens = state.prefix_id[r], state.prefix_tokens[r]
        shared = kv.shared_blocks(pid, ptokens)
        private = max(0, blocks_for(state.known[r], kv.block_size) - shared)
        if not kv.can_admit(pid, ptokens, private):
            return False
        resident = kv.acquire_prefix(pid, ptokens)
        if resident:
            state.computed[r] = resident * kv.block_size
            state.prefix_hit_tokens[r] += resident * kv.block_size
        kv.take(private)
        state.blocks[r] = private
        state.shared[r] = shared
        self._run(r)
        self.prefilling.append(r)
        if state.scheduled_s[r] != state.scheduled_s[r]:
            state.scheduled_s[r] = now
        return True

    def _release(self, r: int) -> None:
        state = self.state
        self.kv.give(state.blocks[r])
        if state.shared[r]:
            self.kv.release_prefix(state.prefix_id[r])
        state.blocks[r] = 0
        state.shared[r] = 0

    def _preempt(self, r: int, batch: Batch) -> None:
        state, kv = self.state, self.kv
        if r in self.decoders.anchor:
            self.decoders.leave(r, self.decoders.tick)
        else:
            self.prefilling.remove(r)
        self._stop(r)
        state.preemptions[r] += 1
        self.preemptions += 1
        batch.preempted += 1
        covered = state.blocks[r] + state.shared[r]
        self._release(r)
        if self.limits.preemption == "swap" and kv.can_swap_out(covered):
            kv.cpu_used += covered
            state.cpu_blocks[r] = covered
            state.status[r] = SWAPPED
            self.swapped.append(r)
            batch.swap_blocks += covered
            return
        batch.recomputed += 1
        state.computed[r] = 0
        state.prefilled[r] = False
        state.status[r] = WAITING
        self.waiting.appendleft(r)

    def _decodes(self, batch: Batch, budget: "Budget") -> int:
        """Every prefilled running request decodes. Those whose next token crosses a
        block boundary take a block, in admission order; when none is free the most
        recently admitted running request is preempted (possibly the one asking)."""
        decoders, kv, state = self.decoders, self.kv, self.state
        events = decoders.events
        if not events or events[0][0] > decoders.tick:      # nobody crosses a block boundary
            budget.tokens -= decoders.count
            return decoders.count
        due = decoders.due(GROW, decoders.tick)
        if due and kv.available >= len(due):     # the common case: a block for each
            kv.take(len(due))
            blocks, anchor, events, version = state.blocks, decoders.anchor, decoders.events, decoders.version
            size, shared = kv.block_size, state.shared
            for order, r in due:
                blocks[r] += 1
                heapq.heappush(events, ((blocks[r] + shared[r]) * size - anchor[r], GROW, order, r, version[r]))
            due = ()
        for order, r in due:
            if self.admitted.get(r) != order:
                continue                      # preempted by an earlier request's growth
            while kv.available < 1:
                victim = self._tail()
                self._preempt(victim, batch)
                if victim == r:
                    break
            if self.admitted.get(r) != order:
                continue
            kv.take(1)
            state.blocks[r] += 1
            decoders.grown(r, order)
        budget.tokens -= decoders.count
        return decoders.count

    def _swap_in(self, budget: "Budget", batch: Batch) -> None:
        state, kv = self.state, self.kv
        while self.swapped and budget.seqs > 0 and budget.tokens > 0:
            r = self.swapped[0]
            need = state.cpu_blocks[r]
            if not kv.can_allocate(need):
                break
            self.swapped.popleft()
            kv.take(need)
            kv.cpu_used -= need
            state.cpu_blocks[r] = 0
            state.blocks[r] = need
            batch.swap_blocks += need
            budget.seqs -= 1
            if state.prefilled[r]:
                self.enter_decode(r)
                budget.tokens -= 1
            else:
                self._run(r)
                self.prefilling.append(r)

    def _new_prefills(self, budget: "Budget", now: float, chunked: bool) -> list[tuple[int, int]]:
        """Admit waiting requests in arrival order while they fit (FCFS: stop at the first that does not)."""
        state = self.state
        chosen = []
        while self.waiting and budget.seqs > 0 and budget.tokens > 0:
            r = self.waiting[0]
            left = state.known[r] - state.computed[r]
            if not chunked and left > budget.tokens:
                break
            if not self._admit(r, now):
                break
            self.waiting.popleft()
            tokens = min(state.known[r] - state.computed[r], budget.tokens)
            chosen.append((r, tokens))
            budget.tokens -= tokens
            budget.seqs -= 1
        return chosen

    def _budget(self) -> "Budget":
        return Budget(self.limits.max_num_batched_tokens, self.limits.max_num_seqs - len(self.admitted))

    # ------------------------------------------------------------ the iteration

    def schedule(self, now: float) -> Batch | None:
        """The next iteration's batch, or None when there is nothing to run now."""
        batch = Batch()
        prefill, decodes = self.plan(batch, now)
        if not prefill and not decodes:
            return None
        batch.prefill, batch.decodes = prefill, decodes
        if prefill:
            batch.shape = shape_of(self.state, prefill, decodes, self.decoders.context() if decodes else 0)
        else:
            batch.shape = BatchShape(0, 0, 0, 0, decodes, self.decoders.context(), decodes)
        batch.kv_blocks_used = self.kv.used
        batch.size = len(prefill) + decodes
        return batch

    @abstractmethod
    def plan(self, batch: Batch, now: float) -> tuple[list[tuple[int, int]], int]:
        """Choose the iteration's prefill chunks and whether the decode set runs
        (returning its size, or 0), updating queues and blocks."""

    def complete(self, batch: Batch, now: float) -> list[int]:
        """Apply the iteration's results at ``now``; return the requests that finished."""
        state, decoders = self.state, self.decoders
        finished: list[int] = []
        if batch.decodes:
            decoders.advance(now)
            events = decoders.events
            due = decoders.due(DONE, decoders.tick - 1) if events and events[0][0] < decoders.tick else ()
            for order, r in due:
                decoders.leave(r, decoders.tick)
                self._finish(r, now)
                finished.append(r)
        for r, q in batch.prefill:
            state.computed[r] += q
            if state.computed[r] < state.known[r]:
                continue
            state.prefilled[r] = True
            self.prefilling.remove(r)
            if state.sample(r, now):
                self._finish(r, now)
                finished.append(r)
            elif self.handoff:
                self._stop(r)
                state.status[r] = TRANSFER
                self.handoffs.append(r)
            else:
                self.decoders.join(r, self.admitted[r])
        return finished

    def _finish(self, r: int, now: float) -> None:
        state = self.state
        if r in self.admitted:
            self._stop(r)
        state.status[r] = FINISHED
        state.finish_s[r] = now
        state.finished += 1
        self._release(r)

    def release_handoff(self, r: int) -> None:
        """The KV of a handed-off request has reached its decode replica: free it here."""
        self._release(r)


class Budget:
    """Tokens and sequence slots left in the iteration being formed."""

    __slots__ = ("tokens", "seqs")

    def __init__(self, tokens: int, seqs: int):
        self.tokens = tokens
        self.seqs = seqs


def shape_of(state: RequestState, prefill: list[tuple[int, int]], decodes: int,
             decode_context: int) -> BatchShape:
    """Sum the batch's work (before the iteration updates the requests)."""
    p_tokens = p_pairs = p_context = sampled = 0
    computed, known = state.computed, state.known
    for r, q in prefill:
        cached = computed[r]
        p_tokens += q
        p_pairs += q * cached + q * (q + 1) // 2
        p_context += cached + q
        if cached + q == known[r]:
            sampled += 1
    return BatchShape(p_tokens, len(prefill), p_pairs, p_context, decodes, decode_context, sampled + decodes)


class PrefillFirst(Scheduler):
    """vLLM's default scheduler: prefill-only iterations take priority over decodes."""

    policy = "prefill_first"

    def plan(self, batch, now):
        prefill = [] if self.swapped or not self.waiting else self._new_prefills(self._budget(), now, False)
        if prefill:
            return prefill, 0
        budget = self._budget()
        self._decodes(batch, budget)
        if not batch.preempted and self.swapped:
            budget.seqs = self.limits.max_num_seqs - len(self.admitted)
            self._swap_in(budget, batch)
        return [], self.decoders.count


class DecodeFirst(Scheduler):
    """Orca-style: all running requests decode, then whole prompts join the same iteration."""

    policy = "decode_first"

    def plan(self, batch, now):
        budget = self._budget()
        self._decodes(batch, budget)
        if not batch.preempted and self.swapped:
            budget.seqs = self.limits.max_num_seqs - len(self.admitted)
            self._swap_in(budget, batch)
        decodes = self.decoders.count
        prefill = [] if self.swapped else self._new_prefills(budget, now, chunked=False)
        return prefill, decodes


class ChunkedPrefill(Scheduler):
    """Sarathi-Serve: decodes, then ongoing prefill chunks, then swapped, then new prompts,
    within one token budget per iteration."""

    policy = "chunked_prefill"

    def plan(self, batch, now):
        state = self.state
        budget = self._budget()
        self._decodes(batch, budget)
        if not batch.preempted and self.swapped:
            budget.seqs = self.limits.max_num_seqs - len(self.admitted)
            self._swap_in(budget, batch)
        prefill: list[tuple[int, int]] = []
        for r in self.prefilling:
            if budget.tokens <= 0:
                break
            tokens = min(state.known[r] - state.computed[r], budget.tokens)
            prefill.append((r, tokens))
            budget.tokens -= tokens
        if not self.swapped:
            prefill += self._new_prefills(budget, now, chunked=True)
        return prefill, self.decoders.count


class StaticBatching(Scheduler):
    """FasterTransformer-style request-level batching with padding (see the module docstring)."""

    policy = "static"

    def __init__(self, state, kv, limits, handoff=False):
        super().__init__(state, kv, limits, handoff)
        self.members: list[int] = []
        self.step = 0
        self.padded_prompt = 0
        self.padded_output = 0
        self.reserved = 0

    def unfinished(self) -> int:
        return len(self.waiting) + len(self.members)

    def running_count(self) -> int:
        return len(self.members)

    def _per_slot(self, prompt: int, output: int) -> int:
        return blocks_for(prompt + output - 1, self.kv.block_size)

    def can_ever_fit(self, r: int) -> str | None:
        state = self.state
        need = self._per_slot(state.prompt[r], state.output[r])
        if need > self.kv.total:
            return f"its padded KV reservation needs {need} blocks; the cache has {self.kv.total}"
        return None

    def _form(self, now: float) -> bool:
        state = self.state
        members: list[int] = []
        prompt = output = 0
        for r in self.waiting:
            if len(members) == self.limits.max_batch_size:
                break
            p, o = max(prompt, state.prompt[r]), max(output, state.output[r])
            if (len(members) + 1) * self._per_slot(p, o) > self.kv.available:
                break
            members.append(r)
            prompt, output = p, o
        if not members:
            return False
        deadline = state.arrival[members[0]] + self.limits.batch_timeout_s
        if len(members) < self.limits.max_batch_size and now < deadline:
            self.retry_at = deadline
            return False
        self.retry_at = None
        for _ in members:
            self.waiting.popleft()
        self.members = members
        self.padded_prompt, self.padded_output = prompt, output
        self.reserved = len(members) * self._per_slot(prompt, output)
        self.kv.take(self.reserved)
        self.step = 0
        for r in members:
            state.status[r] = RUNNING
            state.scheduled_s[r] = now
        return True

    def plan(self, batch, now):
        if not self.members and not (self.waiting and self._form(now)):
            return [], 0
        if self.step == 0:
            return [(r, self.state.prompt[r]) for r in self.members], 0
        return [], len(self.members)

    def schedule(self, now):
        batch = Batch()
        prefill, decodes = self.plan(batch, now)
        if not self.members:
            return None
        n, p = len(self.members), self.padded_prompt
        if self.step == 0:
            batch.shape = BatchShape(n * p, n, n * (p * (p + 1) // 2), n * p, 0, 0, n)
        else:
            batch.shape = BatchShape(0, 0, 0, 0, n, n * (p + self.step), n)
        batch.prefill, batch.decodes = prefill, decodes
        batch.kv_blocks_used = self.kv.used
        batch.size = n
        return batch

    def complete(self, batch, now):
        state = self.state
        finished = []
        if batch.prefill:
            for r, q in batch.prefill:
                state.computed[r] += q
                state.prefilled[r] = True
        else:
            for r in self.members:
                if state.generated[r] < state.output[r]:
                    state.computed[r] += 1
        for r in self.members:
            if state.generated[r] < state.output[r] and state.sample(r, now):
                state.status[r] = FINISHED
                state.finish_s[r] = now
                state.finished += 1
                finished.append(r)
        self.step += 1
        if self.step >= self.padded_output:
            self.kv.give(self.reserved)
            self.reserved = 0
            self.members = []
        return finished


POLICY_CLASSES = {cls.policy: cls for cls in (StaticBatching, PrefillFirst, DecodeFirst, ChunkedPrefill)}
