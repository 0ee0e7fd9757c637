"""The cluster graph: an undirected graph with networkx's interface and order.

``Graph`` holds what ``networkx.Graph`` would for a cluster (``graph.graph``
attributes, node and edge attribute dicts, adjacency as dicts in insertion
order) and answers the part of its interface accsim uses: ``nodes[n]``,
``nodes(data=...)``, ``edges[u, v]``, ``edges(data=...)``, ``graph[n]``,
``add_node``, ``add_edge``, ``has_edge``, ``degree``, ``number_of_nodes``,
``number_of_edges`` and ``copy``. Every iteration (nodes, neighbours, edges)
follows networkx's rules, so routes and schedules built by walking it are the
ones a ``networkx.Graph`` gives; ``to_networkx`` returns that graph, with the
same order everywhere, for the algorithms only networkx has (and for the
error cases of ``bidirectional_dijkstra`` below, which networkx reports).

Why not networkx itself: importing it takes about 0.13 s, half of the
whole-process budget of a small ``accsim collective`` (issue 13); the
generated topologies (rings, switches, trees, NVSwitch nodes, fat trees) are
built, checked and routed without it.
"""

from __future__ import annotations

from collections import deque
from heapq import heappop, heappush
from itertools import count
from typing import Any, Hashable, Iterator


class _Nodes:
    """``graph.nodes``: ``nodes[n]`` is n's attribute dict; ``nodes(data=...)``
    iterates (node, attributes or one attribute), as networkx's NodeView."""

    __slots__ = ("_node",)

    def __init__(self, node: dict):
        self._node = node

    def __getitem__(self, n: Hashable) -> dict:
        return self._node[n]

    def __iter__(self) -> Iterator:
        return iter(self._node)

    def __len__(self) -> int:
        return len(self._node)

    def __contains__(self, n: Hashable) -> bool:
        return n in self._node

    def __call__(self, data: bool | str = False, default: Any = None):
        if data is False:
            return iter(self._node)
        if data is True:
            return iter(self._node.items())
        return ((n, attrs.get(data, default)) for n, attrs in self._node.items())


class _Edges:
    """``graph.edges``: ``edges[u, v]`` is the link's attribute dict (shared by
    both directions); ``edges(data=...)`` iterates each edge once, from the
    end listed first, as networkx's EdgeView."""

    __slots__ = ("_adj",)

    def __init__(self, adj: dict):
        self._adj = adj

    def __getitem__(self, edge: tuple) -> dict:
        u, v = edge
        return self._adj[u][v]

    def __iter__(self) -> Iterator[tuple]:
        return self(data=False)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __call__(self, data: bool | str = False, default: Any = None) -> Iterator[tuple]:
        seen: set = set()
        for u, nbrs in self._adj.items():
            for v, attrs in nbrs.items():
                if v not in seen:
                    if data is False:
                        yield (u, v)
                    elif data is True:
                        yield (u, v, attrs)
                    else:
                        yield (u, v, attrs.get(data, default))
            seen.add(u)


class Graph:
    """An undirected graph (no parallel edges) with networkx.Graph's interface
    and iteration order for the operations accsim uses (module docstring)."""

    def __init__(self, **attr: Any):
        self.graph: dict = dict(attr)
        self._node: dict = {}
        self._adj: dict = {}
        self._order: list[tuple] = []      # edges in the order they were made (for to_networkx)

    @property
    def nodes(self) -> _Nodes:
        return _Nodes(self._node)

    @property
    def edges(self) -> _Edges:
        return _Edges(self._adj)

    def __iter__(self) -> Iterator:
        return iter(self._node)

    def __len__(self) -> int:
        return len(self._node)

    def __contains__(self, n: Hashable) -> bool:
        try:
            return n in self._node
        except TypeError:
            return False

    def __getitem__(self, n: Hashable) -> dict:
        """The neighbours of ``n`` (a mapping neighbour -> link attributes; do not modify)."""
        return self._adj[n]

    def add_node(self, n: Hashable, **attr: Any) -> None:
        if n not in self._node:
            self._adj[n] = {}
            self._node[n] = attr
        else:
            self._node[n].update(attr)

    def add_edge(self, u: Hashable, v: Hashable, **attr: Any) -> None:
        for n in (u, v):
            if n not in self._node:
                self._adj[n] = {}
                self._node[n] = {}
        data = self._adj[u].get(v)
        if data is None:
            data = {}
            self._order.append((u, v))
        data.update(attr)
        self._adj[u][v] = data
        self._adj[v][u] = data

    def has_edge(self, u: Hashable, v: Hashable) -> bool:
        try:
            return v in self._adj[u]
        except KeyError:
            return False

    def degree(self, n: Hashable | None = None):
        """Links of ``n`` (a self-loop counts twice), or (node, degree) for every node."""
        if n is not None:
            nbrs = self._adj[n]
            return len(nbrs) + (n in nbrs)
        return ((m, len(nbrs) + (m in nbrs)) for m, nbrs in self._adj.items())

    def number_of_nodes(self) -> int:
        return len(self._node)

    def number_of_edges(self) -> int:
        return sum(d for _, d in self.degree()) // 2

    def copy(self) -> "Graph":
        """An independent copy (attribute dicts copied), built as networkx copies a graph."""
        other = Graph(**self.graph)
        for n, attrs in self._node.items():
            other.add_node(n, **attrs)
        for u, nbrs in self._adj.items():
            for v, attrs in nbrs.items():
                other.add_edge(u, v, **attrs)
        return other

    def to_networkx(self):
        """The same graph as a ``networkx.Graph``: same nodes, attributes and
        adjacency order (edges are added in the order they were made here)."""
        import networkx as nx
        graph = nx.Graph(**self.graph)
        graph.add_nodes_from((n, dict(attrs)) for n, attrs in self._node.items())
        graph.add_edges_from((u, v, dict(self._adj[u][v])) for u, v in self._order)
        return graph


def components(graph) -> list[list]:
    """Connected components of ``graph`` (this Graph or a networkx one), each
    in breadth-first order from its first node, in node order of first nodes."""
    seen: set = set()
    parts = []
    for start in graph:
        if start in seen:
            continue
        seen.add(start)
        part, queue = [start], deque([start])
        while queue:
            for near in graph[queue.popleft()]:
                if near not in seen:
                    seen.add(near)
                    part.append(near)
                    queue.append(near)
        parts.append(part)
    return parts


def bidirectional_dijkstra(graph: Graph, source: Hashable, target: Hashable,
                           weight: str) -> tuple[float, list] | None:
    """(length, nodes) of a shortest path from ``source`` to ``target``, each
    link costing its ``weight`` attribute (1 where it has none; a link whose
    weight is None is left out): the very result of networkx's
    ``bidirectional_dijkstra(graph.to_networkx(), source, target, weight)``
    (networkx/algorithms/shortest_paths/weighted.py, networkx 3.6), including
    which of several equal-cost paths it returns; None where networkx would
    raise (an end not in the graph, no path, a negative weight found), so a
    caller can let networkx say so.

    How networkx's search decides, and so this one: a heap per direction (from
    the source, from the target) of (tentative distance, push number, node),
    the push numbers counting up over both heaps from the source's 0 and the
    target's 1, so equal distances leave in the order pushed; the directions
    take turns, forward first, each popping one entry (a node already settled
    in that direction is skipped, and its turn is spent); a popped node is
    settled, and if the other direction had settled it too the search stops
    and returns the best meeting found so far. Otherwise its neighbours, in
    adjacency order, are relaxed when strictly shorter than their tentative
    distance (or first reached): recorded with this node as predecessor and
    pushed, and a node relaxed that the other direction has reached makes a
    candidate meeting, kept when strictly shorter than the best (lengths are
    summed as this direction's distance + the other's). The path is the
    source's predecessor chain to the meeting node, then the target's chain
    from the meeting node's predecessor towards the target. Distances start
    at the integer 0 and are summed in the same order, so lengths match to
    the bit.

    Why not networkx itself: routing a cluster with a switch fabric
    (scenarios/quickstart.yaml on a100_2node, the 175B and 1T runs on
    ``cluster:`` fabrics) imported networkx only for this search (0.13 CPU s)
    and converted the graph with ``to_networkx`` first (issue 13). Measured
    without both: a whole ``python -m sim run scenarios/quickstart.yaml`` 0.85
    -> 0.68 s wall and 130 -> 118 MB maximum RSS; peak RSS of
    ``benchmarks/parallel.py`` 367-370 -> 352 MiB on 175B, 957-962 -> 935-937
    MiB on 1T (docs/performance.md). The search itself costs about what
    networkx's does (both are pure Python)."""
    if source not in graph or target not in graph:
        return None
    if source == target:
        return (0, [source])
    adj = graph._adj
    settled: tuple[dict, dict] = ({}, {})
    reached: tuple[dict, dict] = ({source: 0}, {target: 0})
    before: tuple[dict, dict] = ({source: None}, {target: None})
    pushes = count(2)
    heaps = ([(0, 0, source)], [(0, 1, target)])
    best_length = meeting = None
    side = 1
    while heaps[0] and heaps[1]:
        side = 1 - side
        distance, _, node = heappop(heaps[side])
        done = settled[side]
        if node in done:
            continue
        done[node] = distance
        if node in settled[1 - side]:
            return (best_length, _joined(before, meeting))
        mine, theirs, heap, back = reached[side], reached[1 - side], heaps[side], before[side]
        for near, data in adj[node].items():
            cost = data.get(weight, 1)
            if cost is None:
                continue
            length = distance + cost
            if near in done:
                if length < done[near]:
                    return None              # a negative weight: networkx raises ValueError
            elif near not in mine or length < mine[near]:
                mine[near] = length
                heappush(heap, (length, next(pushes), near))
                back[near] = node
                if near in theirs:
                    through = length + theirs[near]
                    if best_length is None or best_length > through:
                        best_length, meeting = through, near
    return None


def _joined(before: tuple[dict, dict], meeting: Hashable) -> list:
    """Source ... meeting node ... target, from both directions' predecessors."""
    nodes = []
    node = meeting
    while node is not None:
        nodes.append(node)
        node = before[0][node]
    nodes.reverse()
    node = before[1][meeting]
    while node is not None:
        nodes.append(node)
        node = before[1][node]
    return nodes
