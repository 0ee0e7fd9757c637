"""Pipeline schedules as explicit per-stage orders of forward and backward work.

Each function returns, for one stage, the list of ``(kind, microbatch,
chunk)`` it executes in order, ``kind`` being ``"F"`` (forward), ``"B"``
(backward: input and weight gradients together, or with the zero-bubble
schedules the input gradient alone) or ``"W"`` (the weight gradient, zero-bubble
schedules only); ``chunk`` is the model chunk (virtual stage) index, always 0
without interleaving.
Sources:
- GPipe: Huang et al., "GPipe", NeurIPS 2019 (all forwards, then all
  backwards; bubble (p - 1)/(m + p - 1)).
- 1F1B (PipeDream-Flush): Narayanan et al., "Memory-efficient pipeline-parallel
  DNN training", ICML 2021; Megatron-LM SC'21 Sec. 2.2.1: p - s - 1 warm-up
  forwards, then one forward one backward, then the remaining backwards.
- Interleaved 1F1B: Megatron-LM SC'21 Sec. 2.2.2 and its implementation
  (``forward_backward_pipelining_with_interleaving``): microbatches advance
  through the v chunks in groups of p; warm-up (p - s - 1) * 2 + (v - 1) * p.
- Zero bubble (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024,
  Sec. 2): the backward is split into B (input gradient, on the critical
  path between stages) and W (weight gradient, needed by no other stage),
  and the Ws fill the bubbles. ZB-H1 keeps 1F1B's warm-up and defers stage
  s's first W until its (s + 1)-th B, so W(k) runs after B(k + s) and before
  the next forward; ZB-H2 warms up with 2(p - s) - 1 forwards and defers
  W(k) to after B(k + 2s), which turns the trapezoid of 1F1B into a
  parallelogram. (The orders are those of the authors' DeepSpeed ZB-H1
  schedule, sail-sg/zero-bubble-pipeline-parallelism, and of the ZB-H2
  ordering predicates of Shardy's MPMD pipelines, shardy/integrations/python/
  jax/mpmd/schedules.py.) Per stage, with T_F, T_B, T_W the times of one
  microbatch's F, B and W and no communication time, the idle time of an
  iteration is, for 1F1B (p - 1)(T_F + T_B + T_W); for ZB-H1
  (p - 1)(T_F + T_B - min(T_W, T_F, T_B)) when m >= p (the paper's
  (p - 1)(T_F + T_B - T_W), Table 2, for T_W <= T_F, T_B); for ZB-H2
  (p - 1)(T_F + max(0, T_B - 2 T_W)) when m >= 2p - 1: zero in the paper's
  steady state, where the (p - 1) T_F skew of the parallelogram overlaps the
  next iteration (its optimizer post-validation), but present in one
  synchronous iteration as simulated here. Peak activations: p microbatches
  on every stage for ZB-H1 (B and W of each held until its W), 2p - 1 on the
  first stage for ZB-H2 (the paper's (2p - 1) M_B).
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


def zb_h1(stage: int, stages: int, microbatches: int) -> list[Work]:
    m = microbatches
    warmup = min(stages - stage - 1, m)
    order: list[Work] = [("F", k, 0) for k in range(warmup)]
    f = warmup
    b = w = 0
    while f < m:  # one forward, then the oldest B, then W(b - s) once s Bs are ahead
        order += [("F", f, 0), ("B", b, 0)]
        f, b = f + 1, b + 1
        if b > stage:
            order.append(("W", w, 0))
            w += 1
    while b < m:  # cool-down: each B with the oldest W, then the Ws still deferred
        order += [("B", b, 0), ("W", w, 0)]
        b, w = b + 1, w + 1
    return order + [("W", k, 0) for k in range(w, m)]


def zb_h2(stage: int, stages: int, microbatches: int) -> list[Work]:
    m = microbatches
    warmup = min(2 * (stages - stage) - 1, m)
    order: list[Work] = [("F", k, 0) for k in range(warmup)]
    for j in range(m):
        order.append(("B", j, 0))
        if j >= 2 * stage:
            order.append(("W", j - 2 * stage, 0))
        if j + warmup < m:
            order.append(("F", j + warmup, 0))
    return order + [("W", k, 0) for k in range(max(0, m - 2 * stage), m)]


SPLIT_BACKWARD = ("zb-h1", "zb-h2")


def stage_order(schedule: str, stage: int, stages: int, microbatches: int, chunks: int = 1) -> list[Work]:
    """The order of work of ``stage`` under ``schedule``."""
    if schedule == "gpipe":
        return gpipe(stage, stages, microbatches)
    if schedule == "1f1b":
        return one_f_one_b(stage, stages, microbatches)
    if schedule == "interleaved":
        return interleaved(stage, stages, microbatches, chunks)
    if schedule == "zb-h1":
        return zb_h1(stage, stages, microbatches)
    if schedule == "zb-h2":
        return zb_h2(stage, stages, microbatches)
    raise ValueError(f"unknown schedule {schedule!r}")


def max_in_flight(order: list[Work]) -> int:
    """Most (microbatch, chunk) activations held at once: forwards done whose
    backward (with a split backward, whose W) has not run yet."""
    release = "W" if any(kind == "W" for kind, _, _ in order) else "B"
    live = peak = 0
    for kind, _, _ in order:
        if kind == "F":
            live += 1
            peak = max(peak, live)
        elif kind == release:
            live -= 1
    return peak
