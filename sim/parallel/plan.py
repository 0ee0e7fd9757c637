"""The parallel plan: how a training iteration is split over the cluster.

Rank mapping: ``mapping`` lists the dimensions from innermost (consecutive
ranks) to outermost; the default ``tp,pp,dp`` puts a tensor-parallel group
inside a node, consecutive pipeline stages on consecutive nodes, and data
parallel replicas outermost, as Megatron-LM does (Narayanan et al., SC'21,
Sec. 3.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from sim.errors import ScenarioError, check_keys
from sim.units import parse_bytes
from sim.workload.transformer import RECOMPUTE_MODES, ModelConfig

SCHEDULES = ("gpipe", "1f1b", "interleaved")
PLAN_KEYS = ("dp", "tp", "pp", "virtual_stages", "microbatch_size", "global_batch", "microbatches",
             "schedule", "sequence_parallel", "zero", "recompute", "mapping", "dp_bucket_bytes",
             "tp_algorithm", "dp_algorithm")


@dataclass(frozen=True)
class ParallelPlan:
    """``microbatches`` is per pipeline per iteration (global batch / (dp x microbatch_size)).

    ``dp_bucket_bytes``: gradients are all-reduced in buckets of this size as
    backward produces them (25 MiB, PyTorch DDP's default ``bucket_cap_mb``).
    ``tp_algorithm`` / ``dp_algorithm``: collective algorithm for TP and DP
    (and pipeline) communication; ``nccl`` (default) picks the fastest of the
    algorithms NCCL implements, ``auto`` of all of ours.
    """

    dp: int = 1
    tp: int = 1
    pp: int = 1
    virtual_stages: int = 1
    microbatch_size: int = 1
    microbatches: int = 1
    schedule: str = "1f1b"
    sequence_parallel: bool = False
    zero: int = 0
    recompute: str = "none"
    mapping: tuple[str, str, str] = ("tp", "pp", "dp")
    dp_bucket_bytes: int = 25 * 2**20
    tp_algorithm: str = "nccl"
    dp_algorithm: str = "nccl"

    @property
    def world(self) -> int:
        return self.dp * self.tp * self.pp

    @property
    def global_batch(self) -> int:
        return self.dp * self.microbatch_size * self.microbatches

    def rank(self, dp: int, stage: int, tp: int) -> int:
        """Cluster rank of (data-parallel replica, pipeline stage, tensor-parallel index)."""
        index = {"dp": dp, "pp": stage, "tp": tp}
        size = {"dp": self.dp, "pp": self.pp, "tp": self.tp}
        rank, stride = 0, 1
        for dim in self.mapping:
            rank += index[dim] * stride
            stride *= size[dim]
        return rank


def _int(raw: Mapping[str, Any], key: str, default: int, where: str, minimum: int = 1) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ScenarioError(f"{where}.{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def plan_from_dict(raw: Mapping[str, Any], model: ModelConfig, world: int,
                   where: str = "parallel") -> ParallelPlan:
    """Validate a ``parallel:`` block against the model and the cluster size."""
    check_keys(raw, PLAN_KEYS, where)
    dp, tp, pp = (_int(raw, k, 1, where) for k in ("dp", "tp", "pp"))
    v = _int(raw, "virtual_stages", 1, where)
    mbs = _int(raw, "microbatch_size", 1, where)
    schedule = str(raw.get("schedule", "1f1b")).lower()
    if schedule not in SCHEDULES:
        raise ScenarioError(f"{where}.schedule: expected one of {list(SCHEDULES)}, got {schedule!r}")
    if schedule != "interleaved" and v != 1:
        raise ScenarioError(f"{where}.virtual_stages: {v} virtual stages need schedule: interleaved")
    if dp * tp * pp != world:
        raise ScenarioError(f"{where}: dp x tp x pp = {dp} x {tp} x {pp} = {dp * tp * pp} does not "
                            f"match the cluster's {world} devices")
    if model.layers % (pp * v):
        raise ScenarioError(f"{where}: {model.layers} layers do not divide into pp x virtual_stages = "
                            f"{pp} x {v} = {pp * v} stages")
    if model.heads % tp or model.ffn % tp or (model.kv_heads or model.heads) % tp:
        raise ScenarioError(f"{where}.tp: {tp} does not divide the model's heads ({model.heads}), "
                            f"KV heads ({model.kv_heads or model.heads}) and FFN size ({model.ffn})")
    if "microbatches" in raw and "global_batch" in raw:
        raise ScenarioError(f"{where}: give either microbatches or global_batch, not both")
    if "global_batch" in raw:
        batch = _int(raw, "global_batch", 1, where)
        if batch % (dp * mbs):
            raise ScenarioError(f"{where}.global_batch: {batch} is not a multiple of dp x "
                                f"microbatch_size = {dp * mbs}")
        m = batch // (dp * mbs)
    else:
        m = _int(raw, "microbatches", 1, where)
    if schedule == "interleaved" and m % pp:
        raise ScenarioError(f"{where}.microbatches: the interleaved schedule needs a multiple of "
                            f"pp = {pp} microbatches per pipeline, got {m}")
    zero = raw.get("zero", 0)
    if zero not in (0, 1):
        raise ScenarioError(f"{where}.zero: expected 0 or 1, got {zero!r}")
    recompute = str(raw.get("recompute", "none")).lower()
    if recompute not in RECOMPUTE_MODES:
        raise ScenarioError(f"{where}.recompute: expected one of {list(RECOMPUTE_MODES)}, got {recompute!r}")
    mapping = raw.get("mapping", "tp,pp,dp")
    mapping = tuple(x.strip() for x in (mapping.split(",") if isinstance(mapping, str) else mapping))
    if sorted(mapping) != ["dp", "pp", "tp"]:
        raise ScenarioError(f"{where}.mapping: expected an order of tp, pp, dp such as 'tp,pp,dp', got {raw.get('mapping')!r}")
    try:
        bucket = parse_bytes(raw.get("dp_bucket_bytes", 25 * 2**20), f"{where}.dp_bucket_bytes")
    except ValueError as exc:
        raise ScenarioError(str(exc)) from None
    return ParallelPlan(dp=dp, tp=tp, pp=pp, virtual_stages=v, microbatch_size=mbs, microbatches=m,
                        schedule=schedule, sequence_parallel=bool(raw.get("sequence_parallel", False)),
                        zero=int(zero), recompute=recompute, mapping=mapping,  # type: ignore[arg-type]
                        dp_bucket_bytes=max(1, bucket),
                        tp_algorithm=str(raw.get("tp_algorithm", "nccl")),
                        dp_algorithm=str(raw.get("dp_algorithm", "nccl")))


MODEL_KEYS = ("name", "layers", "hidden", "heads", "kv_heads", "ffn_hidden", "gated_mlp", "seq_len",
              "vocab", "dtype")


def model_from_dict(raw: Mapping[str, Any], where: str = "model") -> ModelConfig:
    check_keys(raw, MODEL_KEYS, where)
    for key in ("layers", "hidden", "heads", "seq_len"):
        if key not in raw:
            raise ScenarioError(f"{where}: missing required key {key!r}")
    values = {k: _int(raw, k, 1, where) for k in ("layers", "hidden", "heads", "seq_len")}
    values["vocab"] = _int(raw, "vocab", 0, where, minimum=0)
    for key in ("kv_heads", "ffn_hidden"):
        if raw.get(key) is not None:
            values[key] = _int(raw, key, 1, where)
    if values["hidden"] % values["heads"]:
        raise ScenarioError(f"{where}: hidden {values['hidden']} is not a multiple of heads {values['heads']}")
    from sim.hardware.specs import DTYPE_BYTES
    dtype = str(raw.get("dtype", "bf16"))
    if dtype not in DTYPE_BYTES:
        raise ScenarioError(f"{where}.dtype: unknown dtype {dtype!r}")
    return ModelConfig(name=str(raw.get("name", "model")), gated_mlp=bool(raw.get("gated_mlp", False)),
                       dtype=dtype, **values)
