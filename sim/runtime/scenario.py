"""Scenarios: a YAML file naming the hardware and the workload.

Two kinds. A trace scenario names a ``device`` (or a ``cluster``) and a
``trace``. A training scenario names a ``cluster``, a ``model`` and a
``parallel`` plan, and the iteration's trace is generated
(sim.parallel.expand). Schema (docs/architecture.md, "Scenario files")::

    name: quickstart                 # optional, defaults to the file stem
    description: ...                 # optional
    device: npu_pim                  # catalog name or path to a device spec
    device_name: npu0                # optional instance name in outputs
    device_overrides:                # optional what-if changes to the device spec
      pim: {mode: blocked}
      memory: {hbm: {bandwidth_bytes_per_s: 2.4e12}}   # list items by name
    trace: ../traces/x.jsonl         # path, relative to this file or the cwd
    memory:
      resident_bytes: {hbm: 8GiB}    # optional, allocated before the first op
      scratchpad: {policy: belady}   # optional: a managed scratchpad (sim.memory.config)

    cluster: a100_1024               # topology: catalog name, path, ring:N ... ideal:N, or
                                     # ideal (sized dp x tp x pp): no communication time
    cluster_options: {nic_bandwidth: 50e9}   # generator options (parametric names and files)
    model: {layers: 96, hidden: 12288, heads: 96, seq_len: 2048, vocab: 51200}
    parallel: {dp: 8, tp: 8, pp: 16, global_batch: 1536, schedule: 1f1b, recompute: full}
    training: {fidelity: folded, continue_on_oom: false, optimizer_step: true}
    outputs: {link_rows: auto}       # per-link timeline rows: auto = clusters of <= 64 devices

``--set key.path=value`` overrides any key before validation; the value is
parsed as YAML (``--set memory.resident_bytes.hbm=4GiB``); ``null`` removes the key.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from sim.errors import ScenarioError, check_keys
from sim.hardware.specs import DeviceSpec, load_device_spec, read_yaml
from sim.units import parse_bytes
from sim.workload.trace import Trace, load_trace

TOP_LEVEL_KEYS = ("name", "description", "device", "device_name", "device_overrides", "trace",
                  "memory", "cluster", "cluster_options", "model", "parallel", "training", "outputs")
TRAINING_KEYS = ("fidelity", "continue_on_oom", "optimizer_step")


@dataclass(frozen=True)
class Training:
    """The training side of a scenario: model, plan and how it was expanded."""

    model: Any
    plan: Any
    fidelity: str
    expansion: Any
    memory: tuple


@dataclass(frozen=True)
class Scenario:
    """A resolved scenario: specs and trace loaded and validated."""

    name: str
    device: DeviceSpec
    device_name: str
    trace: Trace
    resident_bytes: Mapping[str, int] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    path: str = ""
    cluster: Any = None
    rank_specs: Mapping[int, DeviceSpec] = field(default_factory=dict)
    resident_by_rank: Mapping[int, Mapping[str, tuple[str, int]]] = field(default_factory=dict)
    training: Training | None = None
    record_links: bool = False
    continue_on_oom: bool = False
    memory_plan: Any = None          # sim.memory.manager.MemoryPlan when memory.scratchpad is set

    def device_for(self, rank: int) -> DeviceSpec:
        return self.rank_specs.get(rank, self.device)

    def resident_tensors_for(self, rank: int) -> Mapping[str, tuple[str, int]]:
        return self.resident_by_rank.get(rank, {})

    @property
    def pipeline(self) -> bool:
        return self.training is not None


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    """Return a copy of ``raw`` with each ``key.path=value`` applied."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ScenarioError(f"--set {item!r}: expected key.path=value")
        key, text = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ScenarioError(f"--set {item!r}: empty key")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ScenarioError(f"--set {item!r}: {part!r} is not a mapping in the scenario")
            node = child
        if value is None:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return out


def _resolve(path_text: str, base: Path | None) -> Path:
    path = Path(path_text)
    if path.is_absolute():
        return path
    if base is not None and (base / path).exists():
        return base / path
    return path


def scenario_from_dict(raw: Mapping[str, Any], base: Path | None = None, where: str = "scenario",
                       default_name: str = "scenario") -> Scenario:
    check_keys(raw, TOP_LEVEL_KEYS, where)
    training_mode = "model" in raw or "parallel" in raw
    if training_mode:
        for key in ("cluster", "model", "parallel"):
            if not raw.get(key):
                raise ScenarioError(f"{where}: a training scenario needs {key!r} (with model and parallel)")
        if raw.get("trace"):
            raise ScenarioError(f"{where}: give either a trace or a model with a parallel plan, not both")
    else:
        if not raw.get("trace"):
            raise ScenarioError(f"{where}: missing required key 'trace' (or 'model' and 'parallel')")
        if not raw.get("device") and not raw.get("cluster"):
            raise ScenarioError(f"{where}: missing required key 'device' (or 'cluster')")
    device_overrides = raw.get("device_overrides") or {}
    if not isinstance(device_overrides, Mapping):
        raise ScenarioError(f"{where}: device_overrides: expected a mapping")

    cluster = None
    if raw.get("cluster"):
        from sim.network.topology import load_topology
        name = str(raw["cluster"])
        if name == "ideal":
            plan = raw.get("parallel") or {}
            try:
                world = int(plan.get("dp", 1)) * int(plan.get("tp", 1)) * int(plan.get("pp", 1))
            except (TypeError, ValueError, AttributeError):
                raise ScenarioError(f"{where}: cluster: ideal is sized by parallel.dp x tp x pp, "
                                    f"which must be integers") from None
            name = f"ideal:{max(world, 1)}"
        options = raw.get("cluster_options") or {}
        if not isinstance(options, Mapping):
            raise ScenarioError(f"{where}: cluster_options: expected a mapping of generator options")
        cluster = load_topology(name, base, options)
    specs: dict[str, DeviceSpec] = {}

    def spec_named(name: str) -> DeviceSpec:
        if name not in specs:
            specs[name] = load_device_spec(name, base, device_overrides)
        return specs[name]

    if raw.get("device"):
        device = spec_named(str(raw["device"]))
        spec_of_rank = lambda rank: device  # noqa: E731
    else:
        names = {cluster.device_spec(r) for r in range(cluster.size)}
        if "" in names:
            raise ScenarioError(f"{where}: the cluster {cluster.name} does not say which device its ranks "
                                f"are; add device: NAME to the scenario")
        spec_of_rank = lambda rank: spec_named(cluster.device_spec(rank))  # noqa: E731
        device = spec_of_rank(0)

    memory = raw.get("memory") or {}
    if not isinstance(memory, Mapping):
        raise ScenarioError(f"{where}: memory: expected a mapping")
    resident: dict[str, int] = {}
    for tier, size in (memory.get("resident_bytes") or {}).items():
        if tier not in device.tier_names:
            raise ScenarioError(f"{where}: memory.resident_bytes.{tier}: not a tier of {device.name}; "
                                f"expected one of {list(device.tier_names)}")
        try:
            resident[tier] = parse_bytes(size, f"{where}: memory.resident_bytes.{tier}")
        except ValueError as exc:
            raise ScenarioError(str(exc)) from None

    training_raw = raw.get("training") or {}
    if not isinstance(training_raw, Mapping) or set(training_raw) - set(TRAINING_KEYS):
        raise ScenarioError(f"{where}: training: expected a mapping with some of {list(TRAINING_KEYS)}")
    continue_on_oom = bool(training_raw.get("continue_on_oom", False))
    training = None
    resident_by_rank: dict = {}
    if training_mode:
        trace, training, resident_by_rank = _expand(raw, cluster, spec_of_rank, training_raw,
                                                     continue_on_oom, where)
    else:
        trace = load_trace(_resolve(str(raw["trace"]), base))
    memory_plan = None
    if memory.get("scratchpad") is not None:
        from sim.memory.manager import manage_scratchpad
        trace, memory_plan = manage_scratchpad(trace, spec_of_rank, memory["scratchpad"], where)
    outputs = raw.get("outputs") or {}
    link_rows = outputs.get("link_rows", "auto") if isinstance(outputs, Mapping) else "auto"
    record_links = (cluster is not None and cluster.size <= 64) if link_rows == "auto" else bool(link_rows)
    rank_specs = {rank: spec_of_rank(rank) for rank in trace.ranks} if cluster is not None else {}
    return Scenario(name=str(raw.get("name") or default_name), device=device,
                    device_name=str(raw.get("device_name") or "dev0"), trace=trace,
                    resident_bytes=resident, raw=dict(raw), path=where, cluster=cluster,
                    rank_specs=rank_specs, resident_by_rank=resident_by_rank, training=training,
                    record_links=record_links, continue_on_oom=continue_on_oom,
                    memory_plan=memory_plan)


def _expand(raw, cluster, spec_of_rank, training_raw, continue_on_oom, where):
    """Generate a training scenario's trace and check its memory fits."""
    from sim.parallel.expand import FIDELITIES, expand_training
    from sim.parallel.memory import stage_memory
    from sim.parallel.plan import model_from_dict, plan_from_dict
    from sim.units import format_bytes
    from sim.workload.trace import validate_ops

    model = model_from_dict(raw["model"], f"{where}: model")
    plan = plan_from_dict(raw["parallel"], model, cluster.size, f"{where}: parallel")
    fidelity = str(training_raw.get("fidelity", "folded"))
    if fidelity not in FIDELITIES:
        raise ScenarioError(f"{where}: training.fidelity: expected one of {list(FIDELITIES)}, got {fidelity!r}")
    memory = tuple(stage_memory(model, plan, s) for s in range(plan.pp))
    for stage in memory:
        rank = plan.rank(0, stage.stage, 0)
        spec = spec_of_rank(rank)
        capacity = spec.tier(spec.default_tier).capacity_bytes
        if stage.total_bytes > capacity and not continue_on_oom:
            raise ScenarioError(
                f"{where}: the plan does not fit in memory: stage {stage.stage} needs "
                f"{format_bytes(stage.total_bytes)} per GPU (weights {format_bytes(stage.weights_bytes)}, "
                f"gradients {format_bytes(stage.gradients_bytes)}, optimizer state "
                f"{format_bytes(stage.optimizer_bytes)}, activations {format_bytes(stage.activations_bytes)} "
                f"for {stage.in_flight} microbatches in flight) but {spec.name} has "
                f"{format_bytes(capacity)} of {spec.default_tier}; set training.continue_on_oom: true to run anyway")
    expansion = expand_training(model, plan, spec_of_rank, fidelity,
                                optimizer_step=bool(training_raw.get("optimizer_step", True)))
    trace = validate_ops(expansion.ops, f"{where} (generated {model.name} iteration)")
    training = Training(model, plan, fidelity, expansion, memory)
    return trace, training, expansion.resident


def load_scenario_dict(raw: Mapping[str, Any], overrides: Sequence[str] = (),
                       base: Path | None = None) -> Scenario:
    """Resolve a scenario given as a mapping (paths relative to ``base`` or the cwd)."""
    return scenario_from_dict(apply_overrides(dict(raw), overrides), base=base)


def load_scenario(path: str | Path, overrides: Sequence[str] = ()) -> Scenario:
    """Read a scenario YAML, apply ``--set`` overrides, and resolve it."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"{path}: scenario file not found")
    raw = read_yaml(path, ScenarioError) or {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top level")
    raw = apply_overrides(raw, overrides)
    return scenario_from_dict(raw, base=path.parent, where=str(path), default_name=path.stem)
