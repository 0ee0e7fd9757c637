"""sim.network.graph.Graph behaves as networkx.Graph for everything accsim does
with a cluster graph: same nodes, attributes, neighbour order, edge order,
degrees and copies, and ``to_networkx`` gives back that very graph, so routes
and schedules built by walking it are unchanged (issue 13: no networkx import
on the ``accsim collective`` path)."""

from __future__ import annotations

import networkx as nx
from hypothesis import given, settings, strategies as st

from sim.network.graph import Graph, components

NODES = st.sampled_from([f"n{i}" for i in range(8)])
OPS = st.lists(st.one_of(
    st.tuples(st.just("node"), NODES, st.integers(0, 3)),
    st.tuples(st.just("edge"), NODES, NODES, st.integers(0, 3)),
), max_size=40)


def _build(cls, ops):
    graph = cls(devices_forward=False)
    for op in ops:
        if op[0] == "node":
            graph.add_node(op[1], kind=op[2])
        else:
            graph.add_edge(op[1], op[2], latency_s=float(op[3]))
    return graph


def _same(ours, theirs) -> None:
    assert ours.graph == theirs.graph
    assert list(ours) == list(theirs)
    assert list(ours.nodes(data=True)) == list(theirs.nodes(data=True))
    assert list(ours.nodes(data="kind")) == list(theirs.nodes(data="kind"))
    for node in theirs:
        assert list(ours[node].items()) == list(theirs[node].items())
        assert ours.degree(node) == theirs.degree(node)
    assert list(ours.edges()) == list(theirs.edges())
    assert list(ours.edges(data=True)) == list(theirs.edges(data=True))
    assert list(ours.edges(data="latency_s")) == list(theirs.edges(data="latency_s"))
    assert list(ours.degree()) == list(theirs.degree())
    assert ours.number_of_nodes() == theirs.number_of_nodes()
    assert ours.number_of_edges() == theirs.number_of_edges()
    for u, v in theirs.edges():
        assert ours.has_edge(u, v) and ours.has_edge(v, u)
        assert ours.edges[u, v] == theirs.edges[u, v]
    assert not ours.has_edge("n0", "absent") and "absent" not in ours


@given(OPS)
@settings(max_examples=200, deadline=None)
def test_graph_matches_networkx(ops):
    ours, theirs = _build(Graph, ops), _build(nx.Graph, ops)
    _same(ours, theirs)
    _same(ours.copy(), theirs.copy())              # networkx's copy reorders neighbours: so does ours
    _same(ours.to_networkx(), theirs)
    _same(ours.copy().to_networkx(), theirs.copy())
    expected = sorted(sorted(part) for part in nx.connected_components(theirs))
    assert sorted(sorted(part) for part in components(ours)) == expected


def test_copy_is_independent_and_edge_data_is_shared_by_both_directions():
    graph = Graph()
    graph.add_edge("a", "b", latency_s=1.0)
    graph.edges["b", "a"]["latency_s"] = 2.0
    assert graph.edges["a", "b"]["latency_s"] == 2.0
    other = graph.copy()
    other.edges["a", "b"]["latency_s"] = 3.0
    other.nodes["a"]["kind"] = "switch"
    assert graph.edges["a", "b"]["latency_s"] == 2.0 and "kind" not in graph.nodes["a"]
