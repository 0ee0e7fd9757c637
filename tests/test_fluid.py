"""Shared bandwidth: max-min fairness and the fluid transfer model."""

import math

import pytest
from sim.engine.calendar import Environment
from hypothesis import given, settings, strategies as st

from sim.engine.fluid import FluidNetwork, max_min_rates
from sim.engine.pools import UnitPool


def test_max_min_textbook_example():
    # Bertsekas & Gallager: links A (cap 1) and B (cap 1); flow 0 uses A and B,
    # flow 1 uses A, flow 2 uses B, flow 3 uses B. B is the bottleneck at 1/3.
    rates = max_min_rates([("A", "B"), ("A",), ("B",), ("B",)], {"A": 1.0, "B": 1.0})
    assert rates == pytest.approx([1 / 3, 2 / 3, 1 / 3, 1 / 3])


def test_max_min_single_resource_splits_equally():
    assert max_min_rates([("x",)] * 4, {"x": 8.0}) == pytest.approx([2.0] * 4)


def run_transfers(capacity, starts_and_sizes):
    env = Environment()
    net = FluidNetwork(env, {"tier": capacity})
    ends = {}

    def flow(i, start, size):
        yield env.timeout(start)
        ends[i] = yield net.transfer(size, ("tier",))

    for i, (start, size) in enumerate(starts_and_sizes):
        env.process(flow(i, start, size))
    env.run()
    return ends


@given(st.integers(1, 12), st.floats(1e3, 1e12))
def test_n_equal_concurrent_transfers_each_take_n_times_as_long(n, size):
    ends = run_transfers(1e9, [(0.0, size)] * n)
    alone = size / 1e9
    for end in ends.values():
        assert end == pytest.approx(n * alone, rel=1e-9)


def test_staggered_transfers_by_hand():
    # 1 GB/s. A: 1 GB at t=0; B: 0.5 GB at t=0.5. Alone until 0.5 (A has 0.5 GB left),
    # then both at 0.5 GB/s: B ends at 1.5, A too (0.5 GB left each). Exact.
    ends = run_transfers(1e9, [(0.0, 1e9), (0.5, 0.5e9)])
    assert ends[0] == pytest.approx(1.5)
    assert ends[1] == pytest.approx(1.5)
    # A: 1 GB at 0; B: 0.25 GB at 0.5 -> B ends at 1.0, A then alone with 0.25 GB: 1.25.
    ends = run_transfers(1e9, [(0.0, 1e9), (0.5, 0.25e9)])
    assert ends[1] == pytest.approx(1.0)
    assert ends[0] == pytest.approx(1.25)


@settings(max_examples=50)
@given(st.lists(st.tuples(st.floats(0, 2), st.floats(1e6, 1e9)), min_size=1, max_size=8))
def test_work_is_conserved(flows):
    """The tier never idles while a transfer is pending, so the last transfer
    ends no earlier than total bytes / capacity after the first start, and the
    busy time is exactly what the bytes need when all start together."""
    ends = run_transfers(1e9, flows)
    first = min(s for s, _ in flows)
    assert max(ends.values()) >= first + sum(b for _, b in flows) / 1e9 * (1 - 1e-9) - 2.0
    if len({s for s, _ in flows}) == 1:
        assert max(ends.values()) == pytest.approx(first + sum(b for _, b in flows) / 1e9)


def test_unit_pool_grants_what_is_free_in_fifo_order():
    env = Environment()
    pool = UnitPool(env, "sm", 4)
    assert pool.try_acquire(3) == 3
    assert pool.try_acquire(3) == 1
    assert pool.try_acquire(1) == 0
    first, second = pool.request(2), pool.request(1)
    pool.release(1)
    assert first.triggered and first.value == 1 and not second.triggered
    pool.release(3)
    assert second.triggered and second.value == 1 and pool.free == 2


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 4)), min_size=1, max_size=4,
                         unique_by=lambda t: t[0]), min_size=1, max_size=8),
       st.lists(st.floats(1.0, 100.0), min_size=6, max_size=6))
def test_vectorized_max_min_equals_progressive_filling(flows, capacities):
    import numpy as np
    from sim.engine.fluid import max_min_rates_vectorized
    resources = [tuple(r for r, _ in flow) for flow in flows]
    weights = [tuple(float(w) for _, w in flow) for flow in flows]
    expected = max_min_rates(resources, dict(enumerate(capacities)), weights)
    flow_of_entry = np.array([i for i, flow in enumerate(flows) for _ in flow])
    resource_of_entry = np.array([r for flow in flows for r, _ in flow])
    weight_of_entry = np.array([float(w) for flow in flows for _, w in flow])
    got = max_min_rates_vectorized(flow_of_entry, resource_of_entry, weight_of_entry,
                                   np.array(capacities), len(flows))
    assert got.tolist() == pytest.approx(expected, rel=1e-9)


def test_weighted_flow_counts_its_transfers_on_a_link():
    # a batch of 3 lockstep transfers on one link beside a single flow: shares 1/4 each per transfer
    assert max_min_rates([("L",), ("L",)], {"L": 4.0}, [(3.0,), (1.0,)]) == pytest.approx([1.0, 1.0])


def test_a_rate_cap_is_a_private_resource():
    """A capped flow freezes at its cap and leaves the rest of the link to the others."""
    rates = max_min_rates([("L",), ("L",)], {"L": 10.0}, flow_caps=[2.0, float("inf")])
    assert rates == pytest.approx([2.0, 8.0])
    # uncapped on an idle link, a cap binds alone
    assert max_min_rates([("L",)], {"L": 10.0}, flow_caps=[4.0]) == pytest.approx([4.0])


def test_vector_network_imports_numpy_only_when_flows_share():
    """Flows that never share a resource are rated without numpy (a collective
    inside one node); the first recomputation loads it, and flows already
    running keep their end times."""
    from sim.engine.fluid import VectorFluidNetwork
    env = Environment()
    net = VectorFluidNetwork(env, {"a": 10.0, "b": 10.0, "c": 5.0})
    ends = {}
    net.start(20.0, ("a",), lambda f: ends.setdefault("a", f.end_s))
    net.start(20.0, ("b", "c"), lambda f: ends.setdefault("bc", f.end_s))
    env.run(until=1.0)
    assert net._np is None
    net.start(10.0, ("c",), lambda f: ends.setdefault("c", f.end_s))
    env.run()
    assert net._np is not None
    assert ends["a"] == pytest.approx(2.0)
    # c: 10 bytes at 2.5/s from t=1; b-c: 5 bytes by t=1, 10 more by t=5, its last 5 alone at 5/s
    assert ends["c"] == pytest.approx(5.0) and ends["bc"] == pytest.approx(6.0)


def test_vector_network_honours_caps():
    from sim.engine.fluid import VectorFluidNetwork
    env = Environment()
    net = VectorFluidNetwork(env, {"a": 10.0, "b": 10.0})
    ends = {}
    net.start(20.0, ("a", "b"), lambda f: ends.setdefault("capped", f.end_s), max_rate=2.0)
    net.start(40.0, ("a",), lambda f: ends.setdefault("free", f.end_s))
    env.run()
    assert ends["capped"] == pytest.approx(10.0)      # 20 bytes at its cap of 2
    assert ends["free"] == pytest.approx(5.0)         # 40 bytes at the 8 the cap leaves


def _vector_ends(flows, reuse_paths=False, **settings):
    """End time of each flow. With ``reuse_paths``, flows over the same resources
    and weights share one ``arrays`` (as the network runtime's routed patterns
    do), made the first time: before or after the network imports numpy."""
    from sim.engine.fluid import VectorFluidNetwork

    Network = type("Network", (VectorFluidNetwork,), settings)
    env = Environment()
    net = Network(env, {r: 10.0 + r for r in range(6)})
    ends = {}
    paths = {}

    def start(i, size, resources, weights, cap):
        arrays = None
        if reuse_paths:
            key = (resources, tuple(weights or ()))
            arrays = paths[key] = paths.get(key) or net.arrays(resources, weights)
        net.start(size, resources, lambda f: ends.setdefault(i, f.end_s), weights=weights, max_rate=cap,
                  arrays=arrays)

    for i, (begin, size, resources, weight, cap) in enumerate(flows):
        weights = None if weight == 1 else [weight] * len(resources)
        env.at(begin, lambda _, args=(i, size, resources, weights, cap): start(*args))
    env.run()
    return ends


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.0, 0.5, 1.0, 1.7]), st.floats(1.0, 100.0),
                          st.lists(st.integers(0, 5), min_size=1, max_size=4, unique=True).map(tuple),
                          st.sampled_from([1, 1, 1, 2, 0.5]), st.sampled_from([math.inf, math.inf, 3.0, 12.0])),
                min_size=1, max_size=40))
def test_fast_paths_of_the_vector_network_change_no_end_time(flows):
    """Whether a flow shares a resource is found by comparing bit masks while
    few flows are active and by per-resource counts from ``COUNT_FROM`` on,
    and a recomputation settled by its first round is done from those counts
    (``ONE_ROUND``): with or without either, or switching between them, every
    transfer ends at exactly the same time. So do flows sharing the paths
    made before numpy was imported (it is, at the first recomputation)."""
    plain = _vector_ends(flows, COUNT_FROM=0, ONE_ROUND=False)
    assert len(plain) == len(flows)
    assert _vector_ends(flows, COUNT_FROM=0) == plain
    assert _vector_ends(flows, COUNT_FROM=10 ** 9) == plain
    assert _vector_ends(flows, COUNT_FROM=3) == plain
    assert _vector_ends(flows, reuse_paths=True) == plain
    assert _vector_ends(flows, reuse_paths=True, COUNT_FROM=3) == plain
