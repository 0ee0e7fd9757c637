"""Deterministic routing over a cluster graph.

Paths are shortest by total link latency, ties broken by fewest hops and then
by the order in which networkx explores the graph (fixed by how the graph
was built), so the same topology always routes the same way. With ``ecmp``,
wherever the path goes a -> switch -> b, the switch is replaced by one of all
the switches linking a and b with the same latency, chosen by a CRC32 hash of
(source, destination, a, b): each pair takes its own fixed spine, as
per-flow ECMP hashing does. In a two-level leaf/spine tree every equal-cost
path differs only in its spine, so this reaches all of them; elsewhere it is
a lower bound on path diversity.

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
        for _, _, data in graph.edges(data=True):
            # latency first; a tiny per-hop term prefers fewer hops among equal latencies
            data["_route_cost"] = data["latency_s"] + 1e-15
        self._switch = {node for node, kind in graph.nodes(data="kind") if kind == "switch"}
        self._middles: dict[tuple[str, str], list[str]] = {}

    def _equal_middles(self, a: str, b: str, via: str) -> list[str]:
        """Switches that join a and b with the same latency as ``via``, sorted."""
        key = (a, b, via)
        cached = self._middles.get(key)
        if cached is None:
            graph = self.cluster.graph
            cost = graph.edges[a, via]["latency_s"] + graph.edges[via, b]["latency_s"]
            cached = sorted(m for m in self._switch & set(graph[a]) & set(graph[b])
                            if abs(graph.edges[a, m]["latency_s"] + graph.edges[m, b]["latency_s"] - cost)
                            <= 1e-15 * max(cost, 1e-30))
            self._middles[key] = cached
        return cached

    def path(self, src: str, dst: str) -> tuple[Link, ...]:
        """Directed links from device node ``src`` to ``dst``."""
        key = (src, dst)
        cached = self._paths.get(key)
        if cached is not None:
            return cached
        if src == dst:
            links: tuple[Link, ...] = ()
        else:
            _, nodes = nx.bidirectional_dijkstra(self.cluster.graph, src, dst, weight="_route_cost")
            if self.ecmp:
                nodes = list(nodes)
                for i in range(1, len(nodes) - 1):
                    if nodes[i] in self._switch:
                        options = self._equal_middles(nodes[i - 1], nodes[i + 1], nodes[i])
                        if len(options) > 1:
                            salt = zlib.crc32(f"{src}->{dst}:{nodes[i - 1]}>{nodes[i + 1]}".encode())
                            nodes[i] = options[salt % len(options)]
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
