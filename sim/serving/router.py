"""Routers: which replica of a pool takes a request, at its arrival.

``round_robin`` takes the replicas in turn. ``least_outstanding_tokens``
takes the replica with the fewest tokens still to process among the
requests it holds (prompt and output tokens of a unified replica's
unfinished requests; prompt tokens of a prefill replica's, output tokens of
a decode replica's), ties to the lowest index: the load-aware policy of
serving front ends such as Llumnix (Sun et al., OSDI 2024) and vLLM's
production router, in its simplest form.
"""

from __future__ import annotations


class RoundRobin:
    name = "round_robin"

    def __init__(self):
        self.turn = 0

    def pick(self, replicas, request: int):
        replica = replicas[self.turn % len(replicas)]
        self.turn += 1
        return replica


class LeastOutstandingTokens:
    name = "least_outstanding_tokens"

    def pick(self, replicas, request: int):
        return min(replicas, key=lambda replica: (replica.outstanding, replica.index))


ROUTERS = {cls.name: cls for cls in (RoundRobin, LeastOutstandingTokens)}
