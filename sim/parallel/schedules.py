"""Pipeline schedules as explicit per-stage orders of forward and backward work.

Each function returns, for one stage, the list of ``(kind, microbatch,
chunk)`` it executes in order, ``kind`` being ``"F"`` or ``"B"``; ``chunk``
is the model chunk (virtual stage) index, always 0 without interleaving.
Sources:
- GPipe: Huang et al., "GPipe", NeurIPS 2019 (all forwards, then all
  backwards; bubble (p - 1)/(m + p - 1)).
- 1F1B (PipeDream-Flush): Narayanan et al., "Memory-efficient pipeline-parallel
  DNN training", ICML 2021; Megatron-LM SC'21 Sec. 2.2.1: p - s - 1 warm-up
  forwards, then one forward one backward, then the remaining backwards.
- Interleaved 1F1B: Megatron-LM SC'21 Sec. 2.2.2 and its implementation
  (``forward_backward_pipelining_with_interleaving``): microbatches advance
  through the v chunks in groups of p; warm-up (p - s - 1) * 2 + (v - 1) * p.
"""

from __future__ import annotations

Work = tuple[str, int, int]


def gpipe(stage: int, stages: int, microbatches: int) -> list[Work]:
    return [("F", m, 0) for m in range(microbatches)] + [("B", m, 0) for m in range(microbatches)]


def one_f_one_b(stage: int, stages: int, microbatches: int) -> list[Work]:
    warmup = min(stages - stage - 1, microbatches)
    order: list[Work] = [("F", m, 0) for m in range(warmup)]
    for i in range(microbatches - warmup):
        order += [("F", warmup + i, 0), ("B", i, 0)]
    order += [("B", m, 0) for m in range(microbatches - warmup, microbatches)]
    return order


def _interleaved_unit(k: int, stages: int, chunks: int, forward: bool) -> tuple[int, int]:
    """(microbatch, chunk) of the k-th forward or backward unit of a stage."""
    in_group = k % (stages * chunks)
    chunk = in_group // stages
    if not forward:
        chunk = chunks - 1 - chunk
    microbatch = (k // (stages * chunks)) * stages + k % stages
    return microbatch, chunk


def interleaved(stage: int, stages: int, microbatches: int, chunks: int) -> list[Work]:
    total = microbatches * chunks
    warmup = min((stages - stage - 1) * 2 + (chunks - 1) * stages, total)
    order: list[Work] = [("F", *_interleaved_unit(k, stages, chunks, True)) for k in range(warmup)]
    for i in range(total - warmup):
        order.append(("F", *_interleaved_unit(warmup + i, stages, chunks, True)))
        order.append(("B", *_interleaved_unit(i, stages, chunks, False)))
    order += [("B", *_interleaved_unit(k, stages, chunks, False)) for k in range(total - warmup, total)]
    return order


def stage_order(schedule: str, stage: int, stages: int, microbatches: int, chunks: int = 1) -> list[Work]:
    """The order of work of ``stage`` under ``schedule``."""
    if schedule == "gpipe":
        return gpipe(stage, stages, microbatches)
    if schedule == "1f1b":
        return one_f_one_b(stage, stages, microbatches)
    if schedule == "interleaved":
        return interleaved(stage, stages, microbatches, chunks)
    raise ValueError(f"unknown schedule {schedule!r}")


def max_in_flight(order: list[Work]) -> int:
    """Most (microbatch, chunk) activations held at once: forwards done whose
    backward has not run yet."""
    live = peak = 0
    for kind, _, _ in order:
        live += 1 if kind == "F" else -1
        peak = max(peak, live)
    return peak
