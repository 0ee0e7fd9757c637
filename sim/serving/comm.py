"""Collectives of a replica priced on the real topology (sim.network).

Tensor parallelism all-reduces each layer's attention and MLP outputs
(tokens x hidden x activation bytes, Megatron-LM's two all-reduces per
layer, Shoeybi et al. 2019), and a pipeline stage sends its output
activations to the next stage. Both are priced by the network layer's own
estimate on the cluster (``NetworkRuntime.schedule`` picks the algorithm,
NCCL's set by default; ``predicted_time_s`` is the schedule's alpha-beta
time over its real routes and link capacities on an otherwise idle
network). Prices are taken on a grid of message sizes, four points per
octave, and interpolated linearly between them: exact within one algorithm
(its time is affine in the size), and within the grid spacing where ``auto``
switches algorithm.

The idle-network price ignores contention between replicas' collectives;
traffic between replicas that can contend (KV transfers in disaggregated
serving) runs as real flows on the shared links instead (sim.serving.disagg).
"""

from __future__ import annotations

import math
from typing import Sequence

from sim.errors import ScenarioError
from sim.network.collectives import CollectiveError

POINTS_PER_OCTAVE = 4


class CollectivePricer:
    """Time of one collective (``op``) over ``ranks`` as a function of its size in bytes."""

    def __init__(self, network, op: str, ranks: Sequence[int], algorithm: str = "nccl",
                 where: str = "serving"):
        self.network = network
        self.op = op
        self.ranks = tuple(ranks)
        self.algorithm = algorithm
        self.where = where
        self._grid: dict[int, float] = {}
        self.free = len(self.ranks) < 2 or network is None

    def _at(self, point: int) -> float:
        cached = self._grid.get(point)
        if cached is None:
            nbytes = 2.0 ** (point / POINTS_PER_OCTAVE)
            try:
                schedule = self.network.schedule(self.op, self.algorithm, self.ranks, nbytes)
            except CollectiveError as exc:
                raise ScenarioError(f"{self.where}: {self.op} over ranks {list(self.ranks)}: {exc}") from None
            cached = self._grid[point] = self.network.predicted_time_s(schedule)
        return cached

    def seconds(self, nbytes: float) -> float:
        if self.free or nbytes <= 0:
            return 0.0
        position = math.log2(nbytes) * POINTS_PER_OCTAVE
        low = math.floor(position)
        if low == position:
            return self._at(low)
        a, b = self._at(low), self._at(low + 1)
        return a + (b - a) * (position - low)
