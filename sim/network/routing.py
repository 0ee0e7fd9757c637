"""Deterministic routing over a cluster graph.

Paths are shortest by total link latency, ties broken by fewest hops and then
by the order in which networkx explores the graph (fixed by how the graph
was built), so the same topology always routes the same way. With ``ecmp``
every link also gets a tiny tie-break weight drawn from a hash of (source,
destination, link), far below any latency difference: among the equal-latency
shortest paths each pair then takes its own, pseudo-random but fixed, one,
which spreads flows over a fat tree's spines as per-flow ECMP hashing does,
at the cost of one bidirectional Dijkstra per pair.

A path is returned as a tuple of directed links ``(u, v)``; each direction
of a full-duplex link is its own shared resource.
"""

from __future__ import annotations

import zlib

import networkx as nx

from sim.network.topology import Cluster

Link = tuple[str, str]


class Router:
    """Cached shortest-latency paths between devices of one cluster."""

    def __init__(self, cluster: Cluster, ecmp: bool = False):
        self.cluster = cluster
        self.ecmp = ecmp
        self._paths: dict[tuple[str, str], tuple[Link, ...]] = {}
        graph = cluster.graph
        self._weight = {}
        self._edge_id = {}
        for number, (a, b, data) in enumerate(graph.edges(data=True)):
            # latency first; a tiny per-hop term prefers fewer hops among equal latencies
            cost = data["latency_s"] + 1e-15
            self._weight[(a, b)] = self._weight[(b, a)] = cost
            self._edge_id[(a, b)] = self._edge_id[(b, a)] = number + 1

    def _edge_weight(self, u: str, v: str, _data) -> float:
        return self._weight[(u, v)]

    def _ecmp_weight(self, salt: int):
        weight, edge_id = self._weight, self._edge_id

        def cost(u: str, v: str, _data) -> float:
            mixed = ((edge_id[(u, v)] * 2654435761) ^ salt) & 0xFFFF
            return weight[(u, v)] + 1e-16 * mixed / 65536.0
        return cost

    def path(self, src: str, dst: str) -> tuple[Link, ...]:
        """Directed links from device node ``src`` to ``dst``."""
        key = (src, dst)
        cached = self._paths.get(key)
        if cached is not None:
            return cached
        if src == dst:
            links: tuple[Link, ...] = ()
        elif self.ecmp:
            salt = zlib.crc32(f"{src}->{dst}".encode())
            _, nodes = nx.bidirectional_dijkstra(self.cluster.graph, src, dst,
                                                 weight=self._ecmp_weight(salt))
            links = tuple(zip(nodes[:-1], nodes[1:]))
        else:
            _, nodes = nx.bidirectional_dijkstra(self.cluster.graph, src, dst, weight=self._edge_weight)
            links = tuple(zip(nodes[:-1], nodes[1:]))
        self._paths[key] = links
        return links

    def rank_path(self, src_rank: int, dst_rank: int) -> tuple[Link, ...]:
        ranks = self.cluster.ranks
        return self.path(ranks[src_rank], ranks[dst_rank])

    def latency_s(self, links: tuple[Link, ...]) -> float:
        graph = self.cluster.graph
        return sum(graph.edges[u, v]["latency_s"] for u, v in links)

    def capacity(self, link: Link) -> float:
        """Effective bytes/s of one direction of a link: bandwidth x efficiency."""
        data = self.cluster.graph.edges[link]
        return data["bandwidth_bytes_per_s"] * data["efficiency"]
