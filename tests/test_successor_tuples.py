"""The successor lists the event loop walks (sim.runtime.simulate): built per
number of successors with numpy (set-up speed, issue 13), they are each op's
edge destinations in edge order, as a slice per op gives them."""

import numpy as np
from hypothesis import given, settings, strategies as st

from sim.runtime.simulate import _successor_edges, _successor_tuples


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=120),
    st.lists(st.booleans(), min_size=n, max_size=n))))
def test_successor_tuples_are_each_ops_edges_in_order(case):
    n, edges, compute = case
    src = np.array([a for a, _ in edges], dtype=np.int64)
    dst = np.array([b for _, b in edges], dtype=np.int64)
    src, dst = _successor_edges(src, dst, np.array(compute, dtype=bool))
    bounds = np.searchsorted(src, np.arange(n + 1)).tolist()
    expected = [tuple(dst[a:b].tolist()) for a, b in zip(bounds[:-1], bounds[1:])]
    got = _successor_tuples(src, dst, n)
    assert got == expected
    assert all(type(t) is tuple for t in got)
