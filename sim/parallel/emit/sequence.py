"""Sequence parallelism (Korthikanti et al., "Reducing Activation
Recomputation in Large Transformer Models", MLSys 2023, Sec. 4.2.2).

The pointwise ops between the tensor-parallel regions (layer norms, dropout,
residuals) are split along the sequence over the TP group, so each
TP all-reduce becomes an all-gather before the region (restoring the whole
sequence) and a reduce-scatter after it (leaving each rank its share): the
same bytes on the links as the all-reduce it replaces, and activations
divided by t (sim.parallel.memory). The shapes are in ``layer_segments``.
"""

from __future__ import annotations

from sim.parallel.plan import ParallelPlan


def tp_collectives(plan: ParallelPlan) -> tuple[str | None, str]:
    """(collective before a tensor-parallel region, collective after it)."""
    if plan.sequence_parallel:
        return "allgather", "reduce_scatter"
    return None, "allreduce"
