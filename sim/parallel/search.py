"""Enumerating the parallel plans of a model on a cluster (``accsim plan``).

A candidate is one combination of data-, tensor-, pipeline-, context- and
expert-parallel degrees, virtual pipeline stages (Megatron's interleaving),
microbatch size, ZeRO stage, activation recomputation and sequence
parallelism, for a fixed model, cluster size (world) and global batch. Only
combinations that divide are produced:

- dp x tp x pp x cp = world;
- dp x microbatch_size divides the global batch (microbatches per pipeline =
  global_batch / (dp x microbatch_size));
- tp divides the heads, the KV heads and the FFN width (Megatron-LM's column
  and row splits, Shoeybi et al. 2019);
- pp x virtual_stages divides the layers; more than one virtual stage only
  with pp > 1 and the interleaved schedule, whose microbatches per pipeline
  must be a multiple of pp (Narayanan et al., SC'21, Sec. 2.2.2);
- cp only with flash attention, and seq_len a multiple of cp (of 2 cp with
  the causal load balancing, Megatron-Core's default);
- ep only for a MoE model: it divides the experts and the dp x cp x tp ranks
  it is carved from; a MoE model with tp > 1 runs sequence-parallel, and ZeRO
  stays at 0 or 1 (the plan rules of sim.parallel.plan);
- sequence parallelism only with tp > 1.

The search space is bounded: each dimension's values come from a
``SearchSpace`` (by default the divisors that make sense for the model: tp up
to 8, one NVLink domain of a DGX node; cp only while each rank keeps at
least ``MIN_CP_TOKENS`` tokens of a sequence), and ``space_size`` computes the
product before anything is enumerated. Pure functions: no I/O, no
simulation; the memory check and the simulation are the caller's
(sim.parallel.fit, sim.cli.plan).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Iterator, Optional

from sim.workload.transformer import RECOMPUTE_MODES, ModelConfig

# Default bounds of the search (each can be replaced by SearchSpace values).
DEFAULT_MAX_TP = 8                     # one NVLink/NVSwitch domain of a DGX node
DEFAULT_MICROBATCH_SIZES = (1, 2, 4, 8)
DEFAULT_VIRTUAL_STAGES = (1, 2, 4)
DEFAULT_ZERO_STAGES = (0, 1, 2, 3)
DEFAULT_MAX_CP = 8
MIN_CP_TOKENS = 4096                   # default cp values keep at least this many tokens per rank
MAX_SPACE = 2_000_000                  # combinations a search may consider before filtering


class SearchError(ValueError):
    """A search space that cannot be searched (the caller turns it into a one-line error)."""


@dataclass(frozen=True)
class SearchSpace:
    """Values each dimension may take; ``None``: the defaults for the model
    (module docstring). Values that do not divide are skipped, not errors."""

    tp: Optional[tuple[int, ...]] = None
    pp: Optional[tuple[int, ...]] = None
    cp: Optional[tuple[int, ...]] = None
    ep: Optional[tuple[int, ...]] = None
    virtual_stages: Optional[tuple[int, ...]] = None
    microbatch_size: Optional[tuple[int, ...]] = None
    zero: Optional[tuple[int, ...]] = None
    recompute: Optional[tuple[str, ...]] = None
    sequence_parallel: Optional[tuple[bool, ...]] = None


@dataclass(frozen=True)
class Candidate:
    """One plan of the search. ``microbatches`` is per pipeline per iteration."""

    dp: int
    tp: int
    pp: int
    cp: int
    ep: int
    virtual_stages: int
    microbatch_size: int
    microbatches: int
    schedule: str
    zero: int
    recompute: str
    sequence_parallel: bool

    def parallel(self, global_batch: int) -> dict:
        """The candidate as keys of a scenario's ``parallel:`` block."""
        out = {k: v for k, v in asdict(self).items() if k != "microbatches"}
        out["global_batch"] = global_batch
        return out

    def label(self) -> str:
        return (f"dp{self.dp} tp{self.tp} pp{self.pp}" + (f"x{self.virtual_stages}" if self.virtual_stages > 1
                                                           else "")
                + (f" cp{self.cp}" if self.cp > 1 else "") + (f" ep{self.ep}" if self.ep > 1 else "")
                + f" mbs{self.microbatch_size} zero{self.zero} {self.recompute}" + (" sp" if self.sequence_parallel
                                                                                       else ""))


def divisors(n: int) -> list[int]:
    """The positive divisors of ``n``, ascending."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def default_space(model: ModelConfig, world: int) -> SearchSpace:
    """The default values of each dimension for ``model`` on ``world`` devices."""
    kv_heads = model.kv_heads or model.heads
    tp = tuple(d for d in divisors(world) if d <= DEFAULT_MAX_TP
               and model.heads % d == 0 and kv_heads % d == 0 and model.ffn % d == 0)
    pp = tuple(d for d in divisors(world) if model.layers % d == 0)
    cp = tuple(d for d in divisors(world) if d <= DEFAULT_MAX_CP and (d == 1 or model.seq_len // d >= MIN_CP_TOKENS))
    ep = tuple(divisors(model.moe.experts)) if model.moe is not None else (1,)
    zero = (0, 1) if model.moe is not None else DEFAULT_ZERO_STAGES
    return SearchSpace(tp=tp, pp=pp, cp=cp, ep=ep, virtual_stages=DEFAULT_VIRTUAL_STAGES,
                       microbatch_size=DEFAULT_MICROBATCH_SIZES, zero=zero, recompute=RECOMPUTE_MODES,
                       sequence_parallel=(False, True))


def resolved_space(model: ModelConfig, world: int, space: SearchSpace) -> SearchSpace:
    """``space`` with each ``None`` replaced by the default for the model."""
    defaults = default_space(model, world)
    return SearchSpace(**{name: getattr(space, name) if getattr(space, name) is not None else value
                          for name, value in asdict(defaults).items()})


def space_size(space: SearchSpace) -> int:
    """Combinations the (resolved) space spans before any filtering."""
    return math.prod(len(v) for v in asdict(space).values())


def _divides(model: ModelConfig, world: int, tp: int, pp: int, cp: int, cp_load_balance: bool) -> bool:
    kv_heads = model.kv_heads or model.heads
    if world % (tp * pp * cp) or model.layers % pp:
        return False
    if model.heads % tp or kv_heads % tp or model.ffn % tp:
        return False
    if cp > 1 and (model.attention != "flash" or model.seq_len % (2 * cp if cp_load_balance else cp)):
        return False
    return True


def enumerate_candidates(model: ModelConfig, world: int, global_batch: int, space: SearchSpace = SearchSpace(),
                         schedule: str = "1f1b", cp_load_balance: bool = True) -> Iterator[Candidate]:
    """Every candidate of ``space`` that divides (module docstring), in a fixed
    order. ``schedule`` is the one plans without virtual stages use (the
    scenario's; ``interleaved`` there means 1F1B); plans with virtual stages
    use ``interleaved``. Raises SearchError if the space spans more than
    MAX_SPACE combinations."""
    space = resolved_space(model, world, space)
    size = space_size(space)
    if size > MAX_SPACE:
        raise SearchError(f"the search space spans {size:,} combinations; at most {MAX_SPACE:,} "
                          f"(give fewer values per dimension)")
    flat = "1f1b" if schedule == "interleaved" else schedule
    moe = model.moe
    for tp, pp, cp in itertools.product(space.tp, space.pp, space.cp):
        if not _divides(model, world, tp, pp, cp, cp_load_balance):
            continue
        dp = world // (tp * pp * cp)
        for ep in space.ep:
            if ep > 1 and (moe is None or moe.experts % ep or (dp * cp * tp) % ep):
                continue
            yield from _inner(model, global_batch, space, flat, dp, tp, pp, cp, ep)


def _inner(model: ModelConfig, global_batch: int, space: SearchSpace, flat: str,
           dp: int, tp: int, pp: int, cp: int, ep: int) -> Iterator[Candidate]:
    """The candidates of one (dp, tp, pp, cp, ep) layout."""
    moe = model.moe is not None
    for mbs, v in itertools.product(space.microbatch_size, space.virtual_stages):
        if global_batch % (dp * mbs):
            continue
        m = global_batch // (dp * mbs)
        if v > 1 and (pp == 1 or model.layers % (pp * v) or m % pp):
            continue
        for zero, recompute, sp in itertools.product(space.zero, space.recompute, space.sequence_parallel):
            if (sp and tp == 1) or (moe and tp > 1 and not sp) or (moe and zero >= 2):
                continue
            yield Candidate(dp=dp, tp=tp, pp=pp, cp=cp, ep=ep, virtual_stages=v, microbatch_size=mbs,
                            microbatches=m, schedule="interleaved" if v > 1 else flat, zero=zero,
                            recompute=recompute, sequence_parallel=sp)
