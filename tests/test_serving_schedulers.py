"""Property tests of the serving schedulers: admission rules, limits, and conservation.

Each test drives a scheduler directly (no SimPy, one time unit per iteration)
over random request mixes and cache sizes, and checks after every iteration
what the policy promises (docs/serving.md, sim/serving/schedulers.py).
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.serving.kvcache import BlockManager, KvBudget
from sim.serving.requests import RequestSet
from sim.serving.schedulers import POLICY_CLASSES, Limits
from sim.serving.state import FINISHED, REJECTED, RequestState


def make_state(prompts, outputs, prefix=None):
    n = len(prompts)
    prefix_id = np.full(n, -1) if prefix is None else np.array([p[0] for p in prefix])
    prefix_tokens = np.zeros(n, dtype=np.int64) if prefix is None else np.array([p[1] for p in prefix])
    return RequestState(RequestSet(np.zeros(n), np.array(prompts), np.array(outputs), prefix_id,
                                   prefix_tokens, "test"))


def drive(policy, prompts, outputs, blocks, block_size, max_seqs, max_tokens, preemption="recompute",
          cpu_blocks=0, watermark=0, prefix=None, max_batch=None):
    """Run every request to completion; check the per-iteration rules. Returns (state, log)."""
    state = make_state(prompts, outputs, prefix)
    budget = KvBudget(0, 0.9, 0, 0, block_size, 1.0, blocks, cpu_blocks, watermark)
    kv = BlockManager(budget, prefix_caching=prefix is not None)
    limits = Limits(max_seqs, max_tokens, max_batch or max_seqs, 0.0, preemption)
    scheduler = POLICY_CLASSES[policy](state, kv, limits)
    for r in range(state.count):
        reason = scheduler.can_ever_fit(r)
        if reason:
            state.reject(r, reason)
        else:
            scheduler.enqueue(r)
    log = {"decodes": 0, "prefill_samples": 0, "iterations": 0, "recompute": 0}
    now = 0.0
    for _ in range(200000):
        batch = scheduler.schedule(now)
        if batch is None:
            break
        check_iteration(policy, scheduler, batch, limits)
        log["iterations"] += 1
        log["decodes"] += batch.shape.decode_seqs if policy != "static" else 0
        log["prefill_samples"] += batch.shape.sampled - batch.shape.decode_seqs
        log["recompute"] += batch.recomputed
        now += 1.0
        scheduler.complete(batch, now)
    return state, scheduler, log


def check_iteration(policy, scheduler, batch, limits):
    kv, state = scheduler.kv, scheduler.state
    assert 0 <= kv.used <= kv.total
    assert kv.cpu_used <= kv.cpu_total
    if policy == "static":
        assert batch.size <= limits.max_batch_size
        assert kv.used == scheduler.reserved
        return
    held = sum(state.blocks[r] for r in scheduler.admitted)
    resident = sum(size for size, _ in scheduler.kv.prefixes.values())
    assert kv.used == held + resident
    assert scheduler.running_count() <= limits.max_num_seqs
    assert batch.shape.tokens <= limits.max_num_batched_tokens
    if policy == "prefill_first" and batch.prefill:
        assert batch.decodes == 0                           # prefill iterations run no decodes
    else:
        assert batch.decodes == scheduler.decoders.count    # every prefilled running request decodes
    if policy in ("prefill_first", "decode_first"):
        for r, q in batch.prefill:                          # whole prompts, never chunks
            assert state.computed[r] + q == state.known[r]
    for r, _ in batch.prefill:
        covered = (state.blocks[r] + state.shared[r]) * kv.block_size
        assert covered >= state.known[r]                    # admitted with blocks for every known token


def check_done(state, scheduler, log, preemption):
    served = [r for r in range(state.count) if state.status[r] != REJECTED]
    assert all(state.status[r] == FINISHED for r in served)
    assert state.finished == len(served)                    # each finished exactly once
    for r in served:
        assert state.generated[r] == state.output[r]        # no token lost or duplicated
    assert scheduler.kv.used - sum(s for s, _ in scheduler.kv.prefixes.values()) == 0
    assert scheduler.kv.cpu_used == 0
    if scheduler.policy != "static":
        # every output token came from a decode or from the sample ending a prefill
        assert log["decodes"] + log["prefill_samples"] == sum(state.output[r] for r in served)
        # a request preempted after its prefill re-prefills and samples again (mid-prefill: no sample)
        assert len(served) <= log["prefill_samples"] <= len(served) + log["recompute"]
    first = [state.scheduled_s[r] for r in served]
    assert first == sorted(first)                           # first admissions in arrival (FCFS) order


requests = st.lists(st.tuples(st.integers(1, 120), st.integers(1, 60)), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(requests=requests, policy=st.sampled_from(sorted(POLICY_CLASSES)), blocks=st.integers(4, 200),
       block_size=st.sampled_from([1, 4, 16]), max_seqs=st.integers(1, 16),
       preemption=st.sampled_from(["recompute", "swap"]), watermark=st.integers(0, 2))
def test_admission_rules_and_conservation(requests, policy, blocks, block_size, max_seqs, preemption,
                                          watermark):
    prompts, outputs = zip(*requests)
    longest = max(p + o for p, o in zip(prompts, outputs))
    max_tokens = max(longest, max_seqs) if policy != "chunked_prefill" else max(max_seqs, 8)
    state, scheduler, log = drive(policy, prompts, outputs, blocks, block_size, max_seqs, max_tokens,
                                  preemption, cpu_blocks=blocks // 2, watermark=watermark)
    check_done(state, scheduler, log, preemption)


def test_preemption_by_recompute_and_swap_loses_nothing():
    prompts, outputs = [30] * 12, [50] * 12          # 12 x 80 tokens need 60 blocks of 16; 20 exist
    for preemption in ("recompute", "swap"):
        state, scheduler, log = drive("prefill_first", prompts, outputs, 20, 16, 8, 256, preemption,
                                      cpu_blocks=40)
        assert scheduler.preemptions > 0
        assert sum(state.preemptions) == scheduler.preemptions
        check_done(state, scheduler, log, preemption)


def test_never_fitting_request_is_rejected_not_stalled():
    state, scheduler, log = drive("prefill_first", [10, 500, 10], [5, 5, 5], 20, 16, 4, 1024)
    assert state.status == [FINISHED, REJECTED, FINISHED]
    assert "blocks" in state.reject_reason[1]


def test_prefill_first_pauses_decodes_for_waiting_prompts():
    state = make_state([8, 8], [20, 20])
    kv = BlockManager(KvBudget(0, 0.9, 0, 0, 16, 1.0, 100, 0, 0))
    scheduler = POLICY_CLASSES["prefill_first"](state, kv, Limits(8, 64, 8, 0.0, "recompute"))
    scheduler.enqueue(0)
    first = scheduler.schedule(0.0)
    scheduler.complete(first, 1.0)
    scheduler.enqueue(1)
    second = scheduler.schedule(1.0)
    assert second.prefill == [(1, 8)] and second.decodes == 0      # the new prompt goes first
    scheduler.complete(second, 2.0)
    third = scheduler.schedule(2.0)
    assert not third.prefill and third.decodes == 2


def test_decode_first_mixes_and_chunked_prefill_splits():
    for policy, expect_chunks in (("decode_first", [(1, 40)]), ("chunked_prefill", [(1, 31)])):
        state = make_state([8, 40], [20, 20])
        kv = BlockManager(KvBudget(0, 0.9, 0, 0, 16, 1.0, 100, 0, 0))
        scheduler = POLICY_CLASSES[policy](state, kv, Limits(8, 32 if policy == "chunked_prefill" else 64,
                                                             8, 0.0, "recompute"))
        scheduler.enqueue(0)
        scheduler.complete(scheduler.schedule(0.0), 1.0)
        scheduler.enqueue(1)
        batch = scheduler.schedule(1.0)
        assert batch.decodes == 1 and batch.prefill == expect_chunks
        assert batch.shape.tokens <= scheduler.limits.max_num_batched_tokens


def test_static_batching_pads_and_admits_nothing_mid_batch():
    state = make_state([10, 30, 10], [3, 9, 2])
    kv = BlockManager(KvBudget(0, 0.9, 0, 0, 4, 1.0, 1000, 0, 0))
    scheduler = POLICY_CLASSES["static"](state, kv, Limits(8, 10**6, 2, 0.0, "recompute"))
    for r in range(3):
        scheduler.enqueue(r)
    batch = scheduler.schedule(0.0)
    assert [r for r, _ in batch.prefill] == [0, 1]                   # max_batch_size 2
    assert batch.shape.prefill_tokens == 2 * 30                       # padded to the longest prompt
    steps, now = 1, 1.0
    scheduler.complete(batch, now)
    while scheduler.members:
        batch = scheduler.schedule(now)
        assert batch.shape.decode_seqs == 2                          # finished slots still run
        now += 1.0
        scheduler.complete(batch, now)
        steps += 1
    assert steps == 9                                                # the longest output
    assert state.finish_s[0] == 3.0 and state.finish_s[1] == 9.0
    assert state.status[2] != FINISHED                               # it waited for the next batch


def test_prefix_caching_shares_blocks_and_skips_prefill():
    prompts, outputs = [40] * 6, [4] * 6
    prefix = [(0, 32)] * 6
    state, scheduler, log = drive("prefill_first", prompts, outputs, 200, 16, 1, 64, prefix=prefix)
    check_done(state, scheduler, log, "recompute")
    assert state.prefix_hit_tokens == [0] + [32] * 5                 # the first computes the prefix
    assert scheduler.kv.hits == 5


@settings(max_examples=40, deadline=None)
@given(requests=st.lists(st.tuples(st.integers(2, 100), st.integers(1, 40), st.integers(-1, 2),
                                   st.integers(1, 64)), min_size=1, max_size=30),
       policy=st.sampled_from(["prefill_first", "decode_first", "chunked_prefill"]),
       blocks=st.integers(8, 120), block_size=st.sampled_from([1, 4, 16]), max_seqs=st.integers(1, 12))
def test_prefix_caching_keeps_the_accounting(requests, policy, blocks, block_size, max_seqs):
    prompts = [p for p, _, _, _ in requests]
    outputs = [o for _, o, _, _ in requests]
    # a prefix group always has the same length, shorter than every prompt using it
    lengths = {}
    for p, _, g, t in requests:
        if g >= 0:
            lengths[g] = min(lengths.get(g, t), t, p - 1)
    prefix = [(g, lengths[g]) if g >= 0 else (-1, 0) for _, _, g, _ in requests]
    max_tokens = max(max(p + o for p, o in zip(prompts, outputs)), max_seqs)
    state, scheduler, log = drive(policy, prompts, outputs, blocks, block_size, max_seqs, max_tokens,
                                  prefix=prefix)
    check_done(state, scheduler, log, "recompute")
