"""A serving scenario resolved: model, hardware, replicas on cluster ranks, requests.

Everything is validated here, before a simulation starts: unknown keys,
bad values, a plan that does not divide the model or fit the cluster, a
device that cannot run the chosen dtypes, weights that do not fit next to a
KV cache, and impossible requests all fail with one line naming the key.

Placement: the replicas of the (single, or prefill then decode) pool(s)
take consecutive cluster ranks, tp x pp each, tensor-parallel ranks
innermost (a replica with tp 8 fills one 8-GPU node, as vLLM deployments
place it); with ``attention: {offload: device}`` the attention devices take
the next ranks, tp per replica, paired in order with the replica's GPUs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sim.errors import ScenarioError
from sim.hardware.specs import DTYPE_BYTES, DeviceSpec, load_device_spec
from sim.schema import validate
from sim.serving.config import (QUANT_BYTES, FileRequests, ServingSection, ServingTop,
                                default_max_num_batched_tokens, requests_config)
from sim.serving.pricing import Precision
from sim.serving.requests import RequestSet, check_lengths, from_file, synthetic
from sim.serving.schedulers import Limits
from sim.workload.transformer import ModelConfig


@dataclass(frozen=True)
class PoolPlan:
    """Replicas of one role (``unified``, ``prefill`` or ``decode``) and where they run."""

    role: str
    replicas: tuple[tuple[int, ...], ...]
    spec: DeviceSpec
    tp: int
    pp: int
    attention_ranks: tuple[tuple[int, ...], ...] = ()   # offload: device; one per TP rank of each replica
    attention_spec: DeviceSpec | None = None


@dataclass(frozen=True)
class ServingScenario:
    """A validated serving scenario (``sim.run`` dispatches it to sim.serving.run)."""

    name: str
    path: str
    model: ModelConfig
    cluster: Any
    pools: tuple[PoolPlan, ...]
    section: ServingSection
    requests: RequestSet
    too_long: np.ndarray
    precision: Precision
    limits: Limits
    record_links: bool
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    training: None = None
    overrides: Any = ()              # what was applied (provenance)
    source_file: str | None = None   # the scenario file, set by load_scenario

    @property
    def max_model_len(self) -> int:
        return self.model.seq_len

    @property
    def device(self) -> DeviceSpec:
        return self.pools[0].spec


def _key(where: str, key: str) -> str:
    return f"{where}: {key}" if where.endswith((".yaml", ".yml")) else f"{where}.{key}"


def _check_split(model: ModelConfig, tp: int, pp: int, scope: str) -> None:
    kv_heads = model.kv_heads or model.heads
    if model.heads % tp or kv_heads % tp or model.ffn % tp or model.hidden % tp:
        raise ScenarioError(f"{scope}.tp: {tp} does not divide the model's heads ({model.heads}), KV heads "
                            f"({kv_heads}), hidden size ({model.hidden}) and FFN size ({model.ffn})")
    if pp > model.layers:
        raise ScenarioError(f"{scope}.pp: {pp} stages for {model.layers} layers")


# (weights, compute) -> the GEMM precision of sim.hardware.gemm: weights stored narrower
# than the math are dequantized in the main loop (weight-only: GPTQ / AWQ kernels)
WEIGHT_ONLY = {("int4", "bf16"): "w4a16", ("int4", "fp16"): "w4a16", ("int8", "bf16"): "w8a16",
               ("int8", "fp16"): "w8a16", ("fp8", "bf16"): "w8a16", ("fp8", "fp16"): "w8a16"}


def _precision(section: ServingSection, model: ModelConfig, where: str) -> Precision:
    q = section.quantization
    act = model.dtype if model.dtype in ("fp32", "bf16", "fp16") else "bf16"
    weights = q.weights or model.dtype
    compute = q.compute or (weights if weights in ("fp8", "int8") and q.weights else act)
    if weights == compute:
        gemm = compute
    elif (weights, compute) in WEIGHT_ONLY:
        gemm = WEIGHT_ONLY[(weights, compute)]
    else:
        raise ScenarioError(f"{_key(where, 'serving.quantization')}: {weights} weights with {compute} math is "
                            f"not a GEMM the kernel models know; use the same type for both, or weight-only "
                            f"int8 / int4 / fp8 weights with bf16 or fp16 math")
    return Precision(weight_bytes=QUANT_BYTES[weights], kv_bytes=QUANT_BYTES[q.kv_cache or act],
                     act_bytes=float(DTYPE_BYTES[act]), compute_dtype=compute, gemm_dtype=gemm, act_dtype=act)


def _limits(section: ServingSection, model: ModelConfig, where: str) -> Limits:
    s = section.scheduler
    tokens = s.max_num_batched_tokens or default_max_num_batched_tokens(s.policy, model.seq_len)
    scope = _key(where, "serving.scheduler")
    if s.policy in ("prefill_first", "decode_first") and tokens < model.seq_len:
        raise ScenarioError(f"{scope}.max_num_batched_tokens: {tokens} is below the model's context "
                            f"(model.seq_len = {model.seq_len}), so long prompts could never be scheduled "
                            f"without chunking (vLLM refuses this too); raise it or use policy: chunked_prefill")
    if s.policy != "static" and tokens < s.max_num_seqs:
        raise ScenarioError(f"{scope}.max_num_batched_tokens: {tokens} is below max_num_seqs "
                            f"({s.max_num_seqs}); every running request needs a token per iteration")
    return Limits(max_num_seqs=s.max_num_seqs, max_num_batched_tokens=tokens,
                  max_batch_size=s.max_batch_size or s.max_num_seqs, batch_timeout_s=s.batch_timeout_s,
                  preemption=section.kv_cache.preemption)


def _pools(section: ServingSection, top: ServingTop, model: ModelConfig, cluster, base: Path | None,
           where: str) -> tuple[PoolPlan, ...]:
    overrides = top.device_overrides or {}
    if section.disaggregation is not None:
        plans = [("prefill", section.disaggregation.prefill), ("decode", section.disaggregation.decode)]
    else:
        plans = [("unified", section)]
    pools = []
    next_rank = 0
    for role, pool in plans:
        scope = _key(where, "serving" if role == "unified" else f"serving.disaggregation.{role}")
        _check_split(model, pool.tp, pool.pp, scope)
        size = pool.tp * pool.pp
        replicas = []
        for _ in range(pool.replicas):
            replicas.append(tuple(range(next_rank, next_rank + size)))
            next_rank += size
        if next_rank > cluster.size:
            raise ScenarioError(f"{scope}: the replicas need {next_rank} devices in all, but the cluster "
                                f"{cluster.name} has {cluster.size}")
        name = getattr(pool, "device", None) or top.device or cluster.device_spec(replicas[0][0])
        if not name:
            raise ScenarioError(f"{_key(where, 'device')}: the cluster {cluster.name} does not say which "
                                f"device its ranks are; add device: NAME")
        spec = load_device_spec(name, base, overrides)
        pools.append(PoolPlan(role, tuple(replicas), spec, pool.tp, pool.pp))
    attention = section.attention
    if attention.offload == "device":
        # the attention devices take the ranks after every pool's GPUs, tp per replica
        plan = pools[0]
        scope = _key(where, "serving.attention")
        if not attention.device:
            raise ScenarioError(f"{scope}.device: offload: device needs the memory-rich device's spec name")
        ranks = []
        for _ in plan.replicas:
            ranks.append(tuple(range(next_rank, next_rank + plan.tp)))
            next_rank += plan.tp
        if next_rank > cluster.size:
            raise ScenarioError(f"{scope}: the replicas and their attention devices need {next_rank} devices in "
                                f"all, but the cluster {cluster.name} has {cluster.size}")
        pools[0] = dataclasses.replace(plan, attention_ranks=tuple(ranks),
                                       attention_spec=load_device_spec(attention.device, base, overrides))
    return tuple(pools)


def _requests(section: ServingSection, base: Path | None, where: str) -> RequestSet:
    config = requests_config(section.requests, _key(where, "serving") if not where.endswith((".yaml", ".yml"))
                             else where)
    return from_file(config, base) if isinstance(config, FileRequests) else synthetic(config)


def _check_offload(section: ServingSection, pools, where: str) -> None:
    attention = section.attention
    scope = _key(where, "serving.attention")
    if attention.offload == "pim":
        for pool in pools:
            if pool.spec.pim is None:
                raise ScenarioError(f"{scope}.offload: pim needs a device with PIM banks; {pool.spec.name} "
                                    f"has none (e.g. device: npu_pim)")
        if section.scheduler.policy not in ("prefill_first", "static"):
            raise ScenarioError(f"{scope}.offload: pim prices decode-only iterations (NeuPIMs runs prefill "
                                f"and decode apart); use scheduler.policy prefill_first or static")
    elif attention.offload == "device":
        if section.disaggregation is not None or pools[0].pp > 1:
            raise ScenarioError(f"{scope}.offload: device offload is modelled for single-stage replicas of one "
                                f"pool (no pipeline parallelism, no disaggregation)")
        if section.scheduler.policy not in ("prefill_first", "static"):
            raise ScenarioError(f"{scope}.offload: device prices decode-only iterations; use scheduler.policy "
                                f"prefill_first or static")
    elif attention.sub_batches > 1:
        raise ScenarioError(f"{scope}.sub_batches: sub-batch interleaving overlaps offloaded attention with "
                            f"GEMMs; it needs offload: pim or device")
    if attention.offload != "device" and attention.device is not None:
        raise ScenarioError(f"{scope}.device: only used with offload: device")


def serving_scenario_from_dict(raw: Mapping[str, Any], base: Path | None = None, where: str = "scenario",
                               default_name: str = "scenario", overrides: Any = ()) -> ServingScenario:
    """Validate and resolve a scenario with a ``serving:`` section (``overrides``: the
    ``--set`` items already applied to ``raw``, kept for provenance)."""
    from sim.network.topology import load_topology
    from sim.parallel.plan import model_from_dict

    top = validate(ServingTop, raw, where)
    section = validate(ServingSection, top.serving, _key(where, "serving"))
    model = model_from_dict(top.model, _key(where, "model"))
    roles = ([section.disaggregation.prefill, section.disaggregation.decode]
             if section.disaggregation is not None else [section])
    world = sum(p.replicas * p.tp * p.pp for p in roles)
    if top.cluster:
        name = f"ideal:{world}" if top.cluster == "ideal" else top.cluster
        cluster = load_topology(name, base, top.cluster_options or {})
    else:
        if not top.device:
            raise ScenarioError(f"{where}: a serving scenario needs a cluster or a device")
        cluster = load_topology(f"ideal:{world}")
    pools = _pools(section, top, model, cluster, base, where)
    _check_offload(section, pools, where)
    precision = _precision(section, model, where)
    limits = _limits(section, model, where)
    requests = _requests(section, base, where)
    too_long = check_lengths(requests, model.seq_len, section.too_long, _key(where, "serving.requests"))
    link_rows = top.outputs.link_rows
    record = cluster.size <= 64 if link_rows == "auto" else bool(link_rows)
    return ServingScenario(name=str(top.name or default_name), path=where, model=model, cluster=cluster,
                           pools=pools, section=section, requests=requests, too_long=too_long,
                           precision=precision, limits=limits, record_links=record, raw=dict(raw),
                           overrides=overrides)
