"""Speed work (issue 13) changes no result: iteration time, bubbles and exposed
communication of a few shipped scenarios and small variants stay what they
were before the simulation core was made faster, to 1e-9 relative.

``tests/data/speed_equality.json`` holds the figures recorded with the
simulator as it was before the speed work (commit 7d97a68: networkx routing,
max-min rates recomputed over every active flow at every start and end).
Regenerate only when a documented model change alters results, saying so in
the commit: ``python tests/test_speed_equality.py --write``.

Beside the recorded figures, the fast paths are checked against the plain
algorithms they replace, on random inputs: structured routes against
networkx's shortest paths, and the incremental max-min against
``max_min_rates`` over every flow.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data" / "speed_equality.json"


def _astra(gpus: int) -> list[str]:
    return [f"cluster=ring:{gpus}", f"parallel.dp={gpus // 8}"]


# name -> (scenario file, --set overrides)
CASES = {
    "quickstart": ("quickstart.yaml", []),
    "quickstart.full": ("quickstart.yaml", ["training.fidelity=full",
                                                           "device=a100_sxm4_80gb"]),
    "pipeline_ideal": ("pipeline_ideal.yaml", []),
    "long_context_cp": ("long_context_cp.yaml", []),
    "astra_sim_gpt.32": ("astra_sim_gpt_1024.yaml", _astra(32)),
    "astra_sim_gpt.64.nccl": ("astra_sim_gpt_1024.yaml", _astra(64) + ["parallel.tp_algorithm=nccl",
                                                                        "parallel.dp_algorithm=nccl"]),
    "astra_sim_gpt.torus": ("astra_sim_gpt_1024.yaml", ["cluster=torus:4x8", "parallel.dp=4"]),
    "astra_sim_gpt.tree": ("astra_sim_gpt_1024.yaml", ["cluster=tree:32", "parallel.dp=4"]),
    "astra_sim_gpt.cluster": ("astra_sim_gpt_1024.yaml", ["cluster=cluster:4x8", "parallel.dp=4",
                                                           "cluster_options={nics_per_leaf: 2}"]),
    "gpt3_175b.8gpus.full": ("gpt3_175b_1024_a100.yaml", ["cluster=cluster:2x8", "parallel.dp=2",
                                                           "parallel.pp=1", "model.layers=2",
                                                           "parallel.global_batch=8",
                                                           "training.fidelity=full",
                                                           "device=a100_sxm4_80gb"]),
}


def figures(name: str) -> dict:
    import sim
    file, overrides = CASES[name]
    summary = sim.run(sim.load_scenario(ROOT / "scenarios" / file, overrides)).summary
    out = {"iteration_time_s": summary["iteration_time_s"], "bubble_fraction": summary["bubble_fraction"]}
    out.update({f"bubble_s.{k}": v for k, v in summary["bubble_s_by_cause"].items()})
    out.update({f"exposed_comm_s.{k}": v for k, v in summary.get("exposed_comm_s", {}).items()})
    return out


def _stored() -> dict:
    return json.loads(DATA.read_text())


@pytest.mark.parametrize("name", sorted(CASES))
def test_results_are_unchanged(name):
    expected = _stored()[name]
    got = figures(name)
    assert sorted(got) == sorted(expected), f"{name}: figures reported changed"
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-9, abs_tol=1e-15), (name, key, got[key], value)


def _dijkstra_nodes(graph, src, dst):
    """networkx's path on the same graph (``to_networkx`` keeps every adjacency order)."""
    import networkx as nx
    return nx.bidirectional_dijkstra(graph.to_networkx(), src, dst, weight="_route_cost")[1]


@pytest.mark.parametrize("name", ["ring:2", "ring:3", "ring:4", "ring:6", "ring:8", "ring:9", "ring:64", "switch:5", "tree:11", "ideal:4",
                                  "fully_connected:4"])
def test_closed_form_routes_are_dijkstras(name):
    from sim.network.routing import Router
    from sim.network.topology import from_name
    cluster = from_name(name)
    router = Router(cluster)
    nodes = list(cluster.graph)
    for src in nodes:
        for dst in nodes:
            if src != dst:
                expected = _dijkstra_nodes(cluster.graph, src, dst)
                assert router.path(src, dst) == tuple(zip(expected[:-1], expected[1:])), (name, src, dst)


def test_shapes_are_recognised_and_refused():
    from sim.network.routing import RingShape, TreeShape, closed_form_shape
    from sim.network.topology import from_name
    assert isinstance(closed_form_shape(from_name("ring:16").graph), RingShape)
    assert isinstance(closed_form_shape(from_name("tree:16").graph), TreeShape)
    assert closed_form_shape(from_name("torus:4x4").graph) is None
    assert closed_form_shape(from_name("fully_connected:4").graph) is None
    ring = from_name("ring:6").graph.copy()
    ring.edges["dev0", "dev1"]["latency_s"] = 2e-6             # not one latency: Dijkstra decides
    assert closed_form_shape(ring) is None


@given(st.integers(2, 40), st.integers(0, 2**31), st.booleans())
@settings(max_examples=60, deadline=None)
def test_tree_and_ring_routes_match_networkx_on_random_graphs(n, seed, ring):
    import random

    from sim.network.graph import Graph
    from sim.network.routing import Router
    from sim.network.topology import Cluster, _link
    rng = random.Random(seed)
    graph = Graph()
    names = [f"d{i}" for i in rng.sample(range(n), n)]
    for rank, name in enumerate(names):
        graph.add_node(name, kind="device", rank=rank)
    # a random tree, or a ring in a shuffled order whose links are added in a shuffled order
    # (so nodes list their two neighbours either way round)
    links = [(names[i], names[i - 1 if ring else rng.randrange(i)]) for i in range(1, n)]
    if ring and n > 2:
        links.append((names[-1], names[0]))
        rng.shuffle(links)
    for a, b in links:
        _link(graph, a, b, 1e9, 5e-7)
    router = Router(Cluster("random", graph, tuple(names)))
    pairs = [rng.sample(names, 2) for _ in range(20)]
    if ring:                                       # every pair half way round (two shortest paths)
        pairs += [(names[i], names[(i + n // 2) % n]) for i in range(n)] if n % 2 == 0 else []
    for src, dst in pairs:
        expected = _dijkstra_nodes(graph, src, dst)
        assert router.path(src, dst) == tuple(zip(expected[:-1], expected[1:])), (src, dst)


if __name__ == "__main__" and "--write" in sys.argv:
    sys.path.insert(0, str(ROOT))
    stored = {name: figures(name) for name in CASES}
    DATA.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(stored)} cases to {DATA}")
