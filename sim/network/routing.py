"""Deterministic routing over a cluster graph.

Paths are shortest by total link latency, ties broken by fewest hops and then
by the order in which the graph was built, so the same topology always routes
the same way. With ``ecmp``, wherever the path goes a -> switch -> b, the
switch is replaced by one of all the switches linking a and b with the same
latency, chosen by the destination: its ``port`` (the index of its NIC on
its leaf switch, set by ``cluster:``) or a CRC32 of its name, modulo the
number of choices. That is D-mod-K routing (Zahavi, "D-Mod-K Routing
Providing Non-Blocking Traffic for Shift Permutations on Real Life Fat
Trees", Technion CCIT report 776, 2010), what InfiniBand subnet managers do
by routing on the destination's address (OpenSM's fat-tree routing): the
destinations of one leaf come down from different spines, so flows to
different GPUs of a leaf never share a spine link. In a two-level leaf/spine
tree every equal-cost path differs only in its spine, so this reaches all of
them; elsewhere it is a lower bound on path diversity.

Where the graph says ``devices_forward: False`` (GPUs behind switches and
NICs, as in ``cluster:``), no path passes through a device but its two ends:
a path climbs from its source to a switch (directly, or through one of its
NICs), crosses the switches, and comes down to its destination the same way;
shortest routes between switches are computed once per pair (the one path,
where the switches form a forest: a single node with its rail leaves on one
spine, a plain tree; else Dijkstra over the switches), so a 1,024-GPU
cluster routes its thousands of pairs in milliseconds. The switch fabric
lists its switches in the graph's order, so routes do not depend on Python's
hash seed (they did when it was a networkx subgraph view, whose nodes came
from a set).

Two shapes of graph are routed in closed form rather than by Dijkstra's
algorithm, giving the very path it would: a tree (``switch:N``, ``tree:N``,
``ideal:N``, any acyclic cluster file), where the only path climbs to the
two ends' lowest common ancestor and down; and a ring whose links all have
one latency (``ring:N``), where the shorter way round is the only shortest
path (a pair exactly half way round has two: see ``RingShape``). Every
other graph goes to a bidirectional Dijkstra search, as do routes between
two switches of one connected switch fabric: ``sim.network.graph.
bidirectional_dijkstra``, which returns exactly what networkx's
``bidirectional_dijkstra`` does (the same equal-cost path among several), so
no run imports networkx to route; networkx is called only to report a
missing node or a missing path, and for a plain networkx graph. A 1,024-device
ring routes its pairs in microseconds each instead of milliseconds.

A path is returned as a tuple of directed links ``(u, v)``; each direction
of a full-duplex link is its own shared resource.
"""

from __future__ import annotations

import zlib
from typing import Callable

from sim.errors import SpecError
from sim.network.graph import Graph, bidirectional_dijkstra, components
from sim.network.topology import Cluster

Link = tuple[str, str]


class Router:
    """Cached shortest-latency paths between devices (and switches) of one cluster."""

    def __init__(self, cluster: Cluster, ecmp: bool = False):
        self.cluster = cluster
        self.ecmp = ecmp
        self._paths: dict[tuple[str, str], tuple[Link, ...]] = {}
        graph = cluster.graph
        for _, _, data in graph.edges(data=True):
            # latency first; a tiny per-hop term prefers fewer hops among equal latencies
            data["_route_cost"] = data["latency_s"] + 1e-15
        self._switch = {node for node, kind in graph.nodes(data="kind") if kind == "switch"}
        self._middles: dict[tuple[str, str], list[str]] = {}
        self._devices_forward = graph.graph.get("devices_forward", True)
        self._uplinks: dict[str, list[tuple[str, tuple[str, ...], float]]] = {}
        self._between: dict[tuple[str, str], tuple[float, tuple[str, ...]] | None] = {}
        self._fabric = self._fabric_tree = None
        self._shape = closed_form_shape(graph) if self._devices_forward else None
        self._latency: dict[Link, float] | None = None

    def _equal_middles(self, a: str, b: str, via: str) -> list[str]:
        """Switches that join a and b with the same latency as ``via``, sorted."""
        key = (a, b, via)
        cached = self._middles.get(key)
        if cached is None:
            graph = self.cluster.graph
            cost = graph.edges[a, via]["latency_s"] + graph.edges[via, b]["latency_s"]
            smaller, larger = sorted((graph[a], graph[b]), key=len)
            cached = sorted(m for m in smaller if m in larger and m in self._switch
                            if abs(graph.edges[a, m]["latency_s"] + graph.edges[m, b]["latency_s"] - cost)
                            <= 1e-15 * max(cost, 1e-30))
            self._middles[key] = cached
        return cached

    def path(self, src: str, dst: str) -> tuple[Link, ...]:
        """Directed links from node ``src`` (a device, or a switch) to ``dst``."""
        key = (src, dst)
        cached = self._paths.get(key)
        if cached is not None:
            return cached
        if src == dst:
            links: tuple[Link, ...] = ()
        else:
            if self._devices_forward:
                nodes = (self._shape.path(src, dst, self._dijkstra) if self._shape is not None
                         else self._dijkstra(src, dst))
            else:
                nodes = self._through_switches(src, dst)
            if self.ecmp:
                nodes = self._spread(list(nodes), dst)
            links = tuple(zip(nodes[:-1], nodes[1:]))
        self._paths[key] = links
        return links

    def _dijkstra(self, src: str, dst: str) -> list[str]:
        return _shortest(self.cluster.graph, src, dst)[1]

    def _spread(self, nodes: list[str], dst: str) -> list[str]:
        port = self.cluster.graph.nodes[dst].get("port")
        salt = port if port is not None else zlib.crc32(dst.encode())
        switch = self._switch
        for i in range(1, len(nodes) - 1):
            # equal-cost alternatives to a switch lie between two switches (a spine between leaves)
            if nodes[i] in switch and nodes[i - 1] in switch and nodes[i + 1] in switch:
                options = self._equal_middles(nodes[i - 1], nodes[i + 1], nodes[i])
                if len(options) > 1:
                    nodes[i] = options[salt % len(options)]
        return nodes

    def _ups(self, node: str) -> list[tuple[str, tuple[str, ...], float]]:
        """(switch, nodes from ``node`` up to it, cost): the switches a node
        reaches without crossing a device: itself if a switch; its switches,
        and those behind its NICs, if a device."""
        cached = self._uplinks.get(node)
        if cached is None:
            graph = self.cluster.graph
            if node in self._switch:
                cached = [(node, (node,), 0.0)]
            else:
                cached = []
                for near in graph[node]:
                    cost = graph.edges[node, near]["_route_cost"]
                    kind = graph.nodes[near].get("kind")
                    if kind == "switch":
                        cached.append((near, (node, near), cost))
                    elif kind == "nic":
                        cached += [(far, (node, near, far), cost + graph.edges[near, far]["_route_cost"])
                                   for far in graph[near] if far in self._switch]
            self._uplinks[node] = cached
        return cached

    def _switch_route(self, a: str, b: str) -> tuple[float, tuple[str, ...]] | None:
        """Shortest route between two switches over switches only (cached)."""
        key = (a, b)
        if key not in self._between:
            if self._fabric is None:
                self._fabric = fabric = self._switch_fabric()
                parts = components(fabric)
                self._part = {n: i for i, part in enumerate(parts) for n in part}
                # a forest of switches (one node's leaves on one spine, a plain tree) has one path per pair
                if fabric.number_of_edges() == fabric.number_of_nodes() - len(parts):
                    self._fabric_tree = TreeShape(fabric, parts)
            if self._part[a] != self._part[b]:
                self._between[key] = None
                return None
            if self._fabric_tree is not None:
                nodes = self._fabric_tree.path(a, b)
                cost = sum(self._fabric.edges[u, v]["_route_cost"] for u, v in zip(nodes, nodes[1:]))
            else:
                cost, nodes = _shortest(self._fabric, a, b)
            self._between[key] = (cost, tuple(nodes))
        return self._between[key]

    def _switch_fabric(self) -> Graph:
        """The switches and the links between them, as networkx's
        ``nx.Graph(graph.subgraph(switches))`` would hold them (same order)."""
        graph, switch = self.cluster.graph, self._switch
        fabric = Graph()
        for node in graph:
            if node in switch:
                fabric.add_node(node, **graph.nodes[node])
        for node in fabric:
            for near, data in graph[node].items():
                if near in switch:
                    fabric.add_edge(node, near, **data)
        return fabric

    def _through_switches(self, src: str, dst: str) -> list[str]:
        graph = self.cluster.graph
        best = None
        if graph.has_edge(src, dst):
            best = (graph.edges[src, dst]["_route_cost"], [src, dst])
        for up, climb, cost_up in self._ups(src):
            for down, descent, cost_down in self._ups(dst):
                route = (0.0, (up,)) if up == down else self._switch_route(up, down)
                if route is None:
                    continue
                cost = cost_up + route[0] + cost_down
                if best is None or cost < best[0] * (1 - 1e-12):
                    best = (cost, list(climb[:-1]) + list(route[1]) + list(reversed(descent[:-1])))
        if best is None:
            raise SpecError(f"topology {self.cluster.name}: no route from {src} to {dst} that passes "
                            f"through no other device (devices_forward is false)")
        return best[1]

    def rank_path(self, src_rank: int, dst_rank: int) -> tuple[Link, ...]:
        ranks = self.cluster.ranks
        return self.path(ranks[src_rank], ranks[dst_rank])

    def latency_s(self, links: tuple[Link, ...]) -> float:
        latency = self._latency
        if latency is None:
            latency = self._latency = {}
            for u, v, seconds in self.cluster.graph.edges(data="latency_s"):
                latency[u, v] = latency[v, u] = seconds
        return sum(map(latency.__getitem__, links))

    def capacity(self, link: Link) -> float:
        """Effective bytes/s of one direction of a link: bandwidth x efficiency."""
        data = self.cluster.graph.edges[link]
        return data["bandwidth_bytes_per_s"] * data["efficiency"]


class TreeShape:
    """An acyclic graph (a tree, or a forest): the one path between two nodes
    of a tree, through their lowest common ancestor (parents from a
    breadth-first search from each tree's first node). ``parts`` are the
    graph's components if already known."""

    def __init__(self, graph: Graph, parts: list[list[str]] | None = None):
        self.parent: dict[str, str | None] = {}
        self.depth: dict[str, int] = {}
        for part in components(graph) if parts is None else parts:
            self.parent[part[0]] = None
            self.depth[part[0]] = 0
            for a in part:                      # breadth-first: a parent comes before its children
                for b in graph[a]:
                    if b not in self.depth:
                        self.parent[b] = a
                        self.depth[b] = self.depth[a] + 1

    def path(self, src: str, dst: str, search=None) -> list[str]:
        up, down = [src], [dst]
        a, b = src, dst
        while self.depth[a] > self.depth[b]:
            a = self.parent[a]
            up.append(a)
        while self.depth[b] > self.depth[a]:
            b = self.parent[b]
            down.append(b)
        while a != b:
            a, b = self.parent[a], self.parent[b]
            up.append(a)
            down.append(b)
        return up + down[-2::-1]


class RingShape:
    """A cycle whose links share one latency: the shorter way round.

    A pair exactly half way round has two shortest paths, and which one
    Dijkstra's bidirectional search returns depends only on the order in
    which each end lists its two neighbours (inside the search every other
    node has one new neighbour, and the distances are the same sums of one
    link cost whatever the pair), so the search runs once for each of the
    four such orders and its choice of direction is reused for every pair
    of the same kind."""

    def __init__(self, order: list[str], graph: Graph):
        self.order = order
        self.position = {node: i for i, node in enumerate(order)}
        n = len(order)
        # True where a node lists its successor in ``order`` first
        self.forward_first = [next(iter(graph[node])) == order[(i + 1) % n] for i, node in enumerate(order)]
        self._tie: dict[tuple[bool, bool], int] = {}

    def path(self, src: str, dst: str, search: Callable[[str, str], list[str]]) -> list[str]:
        n = len(self.order)
        a, b = self.position[src], self.position[dst]
        forward = (b - a) % n
        if 2 * forward == n:
            kind = (self.forward_first[a], self.forward_first[b])
            step = self._tie.get(kind)
            if step is None:
                nodes = search(src, dst)
                self._tie[kind] = 1 if nodes[1] == self.order[(a + 1) % n] else -1
                return nodes
        else:
            step = 1 if 2 * forward < n else -1
        hops = forward if step == 1 else n - forward
        return [self.order[(a + step * k) % n] for k in range(hops + 1)]


def _shortest(graph, src: str, dst: str) -> tuple[float, list[str]]:
    """(cost, nodes) of networkx's bidirectional Dijkstra by ``_route_cost``:
    computed without networkx on a ``Graph`` (``bidirectional_dijkstra``, the
    same result, tie-breaking included); networkx runs only for a plain
    networkx graph and where there is no answer, to raise what it raises
    (``NodeNotFound``, ``NetworkXNoPath``, ``ValueError`` on a negative weight)."""
    if isinstance(graph, Graph):
        found = bidirectional_dijkstra(graph, src, dst, "_route_cost")
        if found is not None:
            return found
        graph = graph.to_networkx()
    import networkx as nx
    return nx.bidirectional_dijkstra(graph, src, dst, weight="_route_cost")


def closed_form_shape(graph: Graph) -> TreeShape | RingShape | None:
    """The closed-form router for ``graph`` (module docstring), or None."""
    nodes, edges = graph.number_of_nodes(), graph.number_of_edges()
    if nodes < 2 or len(components(graph)) != 1:
        return None
    if edges == nodes - 1:
        return TreeShape(graph)
    if nodes < 3 or edges != nodes or any(degree != 2 for _, degree in graph.degree()):
        return None
    if len({data["latency_s"] for _, _, data in graph.edges(data=True)}) != 1:
        return None
    start = next(iter(graph))
    order, previous = [start], None
    while True:
        here = order[-1]
        a, b = graph[here]
        nxt = b if a == previous else a
        if nxt == start:
            break
        order.append(nxt)
        previous = here
    return RingShape(order, graph)
