"""The ``serving:`` section of a scenario, validated (sim.schema), and its defaults.

A serving scenario names the hardware (``cluster``, ``device``,
``device_overrides``), the ``model`` (the same keys as a training scenario;
``seq_len`` is the context length, vLLM's ``max_model_len``) and a
``serving`` section. Every key is documented in docs/serving.md. Defaults are
vLLM's (v0 engine: ``vllm/config.py`` SchedulerConfig and CacheConfig,
``vllm/core/scheduler.py``, ``vllm/core/block_manager.py``):

- ``max_num_seqs`` 256; ``max_num_batched_tokens`` max(max_model_len, 2048)
  without chunked prefill, 2048 with it (SchedulerConfig.__post_init__);
- ``block_size`` 16 tokens, ``gpu_memory_utilization`` 0.9, ``swap_space``
  4 GiB per GPU, ``watermark`` 0.01 of the GPU blocks (BlockSpaceManager);
- preemption by recomputation (vLLM's default for single-sequence requests).

Errors are one line naming the scenario key (``file.yaml: serving.kv_cache.
block_size: ...``), raised as ScenarioError (exit status 2).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Mapping

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from sim.errors import ScenarioError
from sim.schema import (Bool, Bytes, Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt,
                        Seconds, StrictModel, validate)
from sim.units import parse_seconds

# bytes per element; int4 packs two weights per byte
QUANT_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}


def _custom(message: str) -> PydanticCustomError:
    return PydanticCustomError("accsim", message)


def _slo_time(value: Any) -> float:
    """An SLO must say its unit: ``500ms``, ``2s``. A bare number is ambiguous
    (seconds? milliseconds?), so it is an error."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise _custom(f"expected a time with its unit, such as 200ms or 2s (an SLO without a unit "
                      f"is ambiguous), got {value!r}")
    try:
        seconds = parse_seconds(value, "", allow_zero=False)
    except ValueError as exc:
        raise _custom(str(exc)) from None
    stripped = value.strip()
    if stripped and (stripped[-1].isdigit() or stripped[-1] == "."):
        raise _custom(f"expected a time with its unit, such as 200ms or 2s (an SLO without a unit "
                      f"is ambiguous), got {value!r}")
    return seconds


SloSeconds = Annotated[float, BeforeValidator(_slo_time)]


def _length_shorthand(value: Any) -> Any:
    """``prompt_tokens: 512`` is ``{distribution: fixed, value: 512}``."""
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        return {"distribution": "fixed", "value": value}
    return value


class LengthDistribution(StrictModel):
    """Token counts of requests: ``fixed`` (``value``), ``uniform`` (``low``..``high``
    inclusive), ``lognormal`` (``mean`` of the distribution and ``sigma`` of the
    underlying normal), ``zipf`` (exponent ``a`` > 1 over 1, 2, ...). Samples are
    clipped to [``min``, ``max``]."""

    distribution: Literal["fixed", "uniform", "lognormal", "zipf"]
    value: PositiveInt | None = None
    low: PositiveInt | None = None
    high: PositiveInt | None = None
    mean: PositiveFloat | None = None
    sigma: PositiveFloat | None = None
    a: PositiveFloat | None = None
    min: PositiveInt = 1
    max: PositiveInt | None = None


LengthSpec = Annotated[LengthDistribution, BeforeValidator(_length_shorthand)]


class Arrivals(StrictModel):
    """``poisson`` (exponential gaps at ``rate_per_s``), ``gamma`` (gamma gaps with
    mean 1 / rate and coefficient of variation ``cv``: burstier than Poisson when
    cv > 1) or ``offline`` (every request at t = 0)."""

    process: Literal["poisson", "gamma", "offline"] = "poisson"
    rate_per_s: PositiveFloat | None = None
    cv: PositiveFloat = 1.0


class SharedPrefix(StrictModel):
    """Synthetic shared prefixes (system prompts): a request uses one with
    probability ``share``, picked uniformly among ``groups``; the first
    ``tokens`` tokens of its prompt are that prefix."""

    groups: PositiveInt = 1
    tokens: PositiveInt
    share: Fraction = 1.0


class SyntheticRequests(StrictModel):
    count: PositiveInt
    seed: NonNegativeInt = 0
    arrivals: Arrivals = Arrivals()
    prompt_tokens: LengthSpec
    output_tokens: LengthSpec
    prefix: SharedPrefix | None = None


class FileRequests(StrictModel):
    """Requests from a CSV, Parquet or JSON Lines file with columns ``arrival_s,
    prompt_tokens, output_tokens`` (optional ``prefix_id``, ``prefix_tokens``), or
    the Azure LLM inference trace layout ``TIMESTAMP, ContextTokens,
    GeneratedTokens`` as published."""

    file: str
    format: Literal["auto", "csv", "parquet", "jsonl"] = "auto"
    offline: Bool = False
    time_scale: PositiveFloat = 1.0
    limit: PositiveInt | None = None


class Scheduler(StrictModel):
    policy: Literal["static", "prefill_first", "decode_first", "chunked_prefill"] = "prefill_first"
    max_num_seqs: PositiveInt = 256
    max_num_batched_tokens: PositiveInt | None = None
    max_batch_size: PositiveInt | None = None
    batch_timeout_s: Seconds = 0.0


class KvCache(StrictModel):
    block_size: PositiveInt = 16
    gpu_memory_utilization: Fraction = 0.9
    watermark: NonNegativeFloat = 0.01
    preemption: Literal["recompute", "swap"] = "recompute"
    swap_space_bytes: Bytes = 4 * 2**30
    prefix_caching: Bool = False
    activation_reserve_bytes: Bytes | None = None


class Quantization(StrictModel):
    """``weights``: storage type of the weights (int4 and int8 weight-only GEMMs
    dequantize into ``compute``); ``kv_cache``: storage type of the KV cache;
    ``compute``: the type the matrix units run (its peak is the one that counts;
    fp8 for W8A8 fp8). Each defaults to the model's dtype."""

    weights: Literal["fp32", "bf16", "fp16", "fp8", "int8", "int4"] | None = None
    kv_cache: Literal["fp32", "bf16", "fp16", "fp8", "int8"] | None = None
    compute: Literal["fp32", "bf16", "fp16", "fp8", "int8"] | None = None


class Pool(StrictModel):
    replicas: PositiveInt = 1
    tp: PositiveInt = 1
    pp: PositiveInt = 1
    device: str | None = None


class Disaggregation(StrictModel):
    """Splitwise / DistServe: prefill and decode in separate pools; each request's
    KV cache moves from its prefill replica to a decode replica over the
    cluster's links, ``layerwise`` (overlapping the prefill) or ``whole`` (after it)."""

    prefill: Pool
    decode: Pool
    kv_transfer: Literal["layerwise", "whole"] = "layerwise"


class Attention(StrictModel):
    """``offload: pim`` runs decode attention as GEMVs on the device's PIM banks
    (NeuPIMs); ``offload: device`` on memory-rich ``device``s, one per
    tensor-parallel GPU, which hold the KV cache (model-attention disaggregation,
    Lamina). ``sub_batches`` > 1 splits each decode batch so one sub-batch's GEMMs
    overlap another's attention (NeuPIMs' sub-batch interleaving). Whether PIM and
    the matrix unit may touch memory at once is the device's ``pim.mode``
    (``blocked`` or ``concurrent``, dual row buffers)."""

    offload: Literal["none", "pim", "device"] = "none"
    sub_batches: PositiveInt = 1
    device: str | None = None


class Slo(StrictModel):
    ttft: SloSeconds | None = None
    tpot: SloSeconds | None = None
    e2e: SloSeconds | None = None


class ServingSection(StrictModel):
    replicas: PositiveInt = 1
    tp: PositiveInt = 1
    pp: PositiveInt = 1
    router: Literal["round_robin", "least_outstanding_tokens"] = "round_robin"
    scheduler: Scheduler = Scheduler()
    kv_cache: KvCache = KvCache()
    quantization: Quantization = Quantization()
    requests: dict
    slo: Slo = Slo()
    disaggregation: Disaggregation | None = None
    attention: Attention = Attention()
    tp_algorithm: str = "nccl"
    too_long: Literal["error", "reject"] = "error"


class ServingOutputs(StrictModel):
    link_rows: Bool | Literal["auto"] = "auto"


class ServingTop(StrictModel):
    name: str | None = None
    description: str | None = None
    cluster: str | None = None
    cluster_options: dict | None = None
    device: str | None = None
    device_overrides: dict | None = None
    model: dict
    serving: dict
    outputs: ServingOutputs = ServingOutputs()


def requests_config(raw: Any, where: str) -> SyntheticRequests | FileRequests:
    """The ``serving.requests`` block: a file source when it names ``file``."""
    scope = f"{where}.requests" if not where.endswith((".yaml", ".yml")) else f"{where}: serving.requests"
    if isinstance(raw, Mapping) and "file" in raw:
        return validate(FileRequests, raw, scope)
    config = validate(SyntheticRequests, raw, scope)
    for key in ("prompt_tokens", "output_tokens"):
        check_distribution(getattr(config, key), f"{scope}.{key}")
    arrivals = config.arrivals
    if arrivals.process != "offline" and arrivals.rate_per_s is None:
        raise ScenarioError(f"{scope}.arrivals: a {arrivals.process} process needs rate_per_s "
                            f"(requests per second)")
    return config


_NEEDS = {"fixed": ("value",), "uniform": ("low", "high"), "lognormal": ("mean", "sigma"), "zipf": ("a",)}


def check_distribution(dist: LengthDistribution, where: str) -> None:
    """Each distribution's own parameters are present, and no other's."""
    needed = _NEEDS[dist.distribution]
    for key in needed:
        if getattr(dist, key) is None:
            raise ScenarioError(f"{where}: a {dist.distribution} distribution needs {key!r}")
    for other, keys in _NEEDS.items():
        for key in keys:
            if key not in needed and getattr(dist, key) is not None:
                raise ScenarioError(f"{where}.{key}: not a parameter of a {dist.distribution} "
                                    f"distribution; it takes {list(needed)}")
    if dist.distribution == "uniform" and dist.high < dist.low:
        raise ScenarioError(f"{where}: high ({dist.high}) is below low ({dist.low})")
    if dist.distribution == "zipf" and dist.a <= 1:
        raise ScenarioError(f"{where}.a: a Zipf exponent must be above 1, got {dist.a}")
    if dist.max is not None and dist.max < dist.min:
        raise ScenarioError(f"{where}: max ({dist.max}) is below min ({dist.min})")


def default_max_num_batched_tokens(policy: str, max_model_len: int) -> int:
    """vLLM's default token budget per iteration (SchedulerConfig.__post_init__):
    2048 with chunked prefill, else max(max_model_len, 2048)."""
    return 2048 if policy == "chunked_prefill" else max(max_model_len, 2048)





def check_serving_structure(raw: Mapping[str, Any], where: str) -> ServingSection:
    """The top level and the ``serving:`` section of a serving scenario validated
    (what a sweep checks for every point before running any); devices, model and
    requests are checked when the point runs."""
    top = validate(ServingTop, raw, where)
    scope = f"{where}: serving" if where.endswith((".yaml", ".yml")) else f"{where}.serving"
    return validate(ServingSection, top.serving, scope)
