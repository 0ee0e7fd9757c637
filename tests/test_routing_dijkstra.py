"""Routing without networkx gives networkx's routes (issue 13).

``sim.network.graph.bidirectional_dijkstra`` must return exactly what
networkx's ``bidirectional_dijkstra`` returns, the same length to the bit and
the same path among several of equal cost (routes decide which flows share a
link, so another tie-break would change results). Checked against networkx
itself on random graphs full of ties, and on every shipped cluster as the
Router sees it; and a training run on a switch fabric no longer imports
networkx at all.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import networkx as nx
import pytest
from hypothesis import given, settings, strategies as st

from sim.network import routing
from sim.network.graph import Graph, bidirectional_dijkstra

NAMES = st.one_of(st.integers(-3, 40), st.text("abxyz", min_size=1, max_size=3))
# small integer weights make many equal-cost paths; a link may lack the weight (1) or hide it (None)
WEIGHTS = st.one_of(st.integers(0, 3), st.sampled_from([5e-7 + 1e-15, 1e-6 + 1e-15, 0.1, 0.2, 0.3]),
                    st.just("missing"), st.just(None))


@st.composite
def graphs(draw):
    nodes = draw(st.lists(NAMES, min_size=1, max_size=14, unique=True))
    links = draw(st.lists(st.tuples(st.sampled_from(nodes), st.sampled_from(nodes), WEIGHTS), max_size=40))
    return nodes, links


def _both(nodes, links) -> tuple[Graph, nx.Graph]:
    """The same graph built the same way (same node and adjacency order) twice."""
    ours, theirs = Graph(), nx.Graph()
    for graph in (ours, theirs):
        for node in nodes:
            graph.add_node(node)
        for a, b, weight in links:              # repeated pairs update the link, self-loops included
            graph.add_edge(a, b, **({} if weight == "missing" else {"w": weight}))
    return ours, theirs


def _networkx_answer(graph: nx.Graph, src, dst):
    try:
        return nx.bidirectional_dijkstra(graph, src, dst, weight="w")
    except nx.NetworkXNoPath:
        return None


def _same(got, expected) -> None:
    assert got == expected
    if got is not None:                          # same length to the bit, and the same type (0 is an int)
        assert type(got[0]) is type(expected[0]) and repr(got[0]) == repr(expected[0])


@given(graphs(), st.randoms(use_true_random=False))
@settings(max_examples=400, deadline=None)
def test_same_path_and_length_as_networkx_on_random_graphs(drawn, rng):
    nodes, links = drawn
    ours, theirs = _both(nodes, links)
    pairs = [(a, b) for a in nodes for b in nodes]
    for src, dst in pairs if len(pairs) <= 60 else rng.sample(pairs, 60):
        _same(bidirectional_dijkstra(ours, src, dst, "w"), _networkx_answer(theirs, src, dst))


@given(st.integers(2, 9), st.integers(2, 9), st.integers(0, 2**31))
@settings(max_examples=40, deadline=None)
def test_same_path_on_grids_of_equal_links(rows, columns, seed):
    """A grid of unit links has many shortest paths between far corners; the
    nodes are named and added in a shuffled order."""
    rng = random.Random(seed)
    names = {(r, c): f"g{rng.random():.6f}" for r in range(rows) for c in range(columns)}
    cells = list(names)
    rng.shuffle(cells)
    links = [(names[r, c], names[r + dr, c + dc], 1) for r, c in cells for dr, dc in ((0, 1), (1, 0))
             if (r + dr, c + dc) in names]
    rng.shuffle(links)
    ours, theirs = _both([names[cell] for cell in cells], links)
    for _ in range(30):
        src, dst = rng.choice(cells), rng.choice(cells)
        _same(bidirectional_dijkstra(ours, names[src], names[dst], "w"),
              _networkx_answer(theirs, names[src], names[dst]))


def test_errors_are_networkxs():
    """No answer: ``routing._shortest`` lets networkx raise what it raised before."""
    graph = Graph()
    for a, b, cost in (("a", "b", 1.0), ("d", "e", 1.0), ("p", "q", -1.0), ("q", "r", 1.0), ("r", "t", 10.0)):
        graph.add_edge(a, b, _route_cost=cost)
    assert bidirectional_dijkstra(graph, "a", "d", "_route_cost") is None
    assert bidirectional_dijkstra(graph, "a", "nowhere", "_route_cost") is None
    assert bidirectional_dijkstra(graph, "p", "t", "_route_cost") is None     # a negative link met
    with pytest.raises(nx.NetworkXNoPath):
        routing._shortest(graph, "a", "d")
    with pytest.raises(nx.NodeNotFound):
        routing._shortest(graph, "a", "nowhere")
    with pytest.raises(ValueError, match="negative"):
        routing._shortest(graph, "p", "t")
    plain = graph.to_networkx()                  # a networkx graph is handed to networkx
    assert routing._shortest(plain, "d", "e") == routing._shortest(graph, "d", "e") == (1.0, ["d", "e"])


def _networkx_shortest():
    """``routing._shortest`` as it was: networkx on each graph's ``to_networkx``."""
    converted: dict[int, tuple[Graph, nx.Graph]] = {}

    def shortest(graph, src, dst):
        kept = converted.get(id(graph))
        if kept is None:
            kept = converted[id(graph)] = (graph, graph.to_networkx())
        return nx.bidirectional_dijkstra(kept[1], src, dst, weight="_route_cost")
    return shortest


def _routes(monkeypatch, name: str, ecmp: bool, pairs: int | None, search) -> dict:
    from sim.network.topology import load_topology
    monkeypatch.setattr(routing, "_shortest", search)
    cluster = load_topology(name)
    router = routing.Router(cluster, ecmp)
    ranks = cluster.ranks
    everything = [(a, b) for a in ranks for b in ranks]
    chosen = everything if pairs is None else random.Random(name).sample(everything, pairs)
    routes = {pair: router.path(*pair) for pair in chosen}
    if not router._devices_forward:             # and the fabric's own routes, between any two switches
        switches = [n for n, kind in cluster.graph.nodes(data="kind") if kind == "switch"][:40]
        routes.update({("fabric", a, b): router._switch_route(a, b) for a in switches for b in switches
                       if a != b})
    return routes


@pytest.mark.parametrize("name", ["a100_2node", "h100_2node", "h100_64", "dgx_a100", "dgx_h100", "tpu_v4_4x4x4",
                                  "a100_1024", "cluster:4x8", "cluster:16x8", "torus:4x4", "torus:3x3x2",
                                  "fully_connected:6"])
@pytest.mark.parametrize("ecmp", [False, True])
def test_shipped_clusters_route_as_with_networkx(monkeypatch, name, ecmp):
    """Every pair of ranks (a sample of 3,000 on a100_1024), and every pair of
    the first 40 switches over the switch fabric, routes as networkx's search chose."""
    pairs = 3000 if name == "a100_1024" else None
    calls = []

    def counted(graph, src, dst):
        calls.append((src, dst))
        return original(graph, src, dst)
    original = routing._shortest
    ours = _routes(monkeypatch, name, ecmp, pairs, counted)
    theirs = _routes(monkeypatch, name, ecmp, pairs, _networkx_shortest())
    assert ours == theirs
    if not name.startswith("dgx"):               # an NVSwitch node routes in closed form
        assert calls, f"{name}: the search was never used, so nothing was compared"


def test_a_training_run_on_a_switch_fabric_does_not_import_networkx():
    """quickstart runs on a100_2node (two nodes under a leaf/spine fabric),
    whose switch routes once needed networkx (0.13 CPU s, ~19 MB resident)."""
    code = ("import sim, sys, json\nresult = sim.run('quickstart')\nassert result.timeline.num_rows\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "simpy" in loaded and "networkx" not in loaded
