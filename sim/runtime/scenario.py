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
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional, Sequence, Union

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from sim.errors import AccsimError, ScenarioError, SpecError, TraceError
from sim.hardware.specs import DeviceSpec, load_device_spec
from sim.parallel.plan import ModelSchema, ParallelSchema
from sim.runtime.heap import collector_paused
from sim.schema import (MAX_NAME, Bool, Bytes, Name, StrictModel, Text, check_structure, choice,
                        load_yaml, one_line, parse_yaml_text, validate)
from sim.workload.trace import Trace, load_trace

# A generated iteration larger than this many ops (estimated before expanding)
# would take tens of GB: the scenario is refused with the estimate.
MAX_GENERATED_OPS = 10_000_000
# ``cluster: ideal`` builds one device per rank of the plan.
MAX_IDEAL_RANKS = 2**16
MAX_OVERRIDES = 1000


def _link_rows(value: Any) -> Union[str, bool]:
    if value == "auto" or isinstance(value, bool):
        return value
    raise PydanticCustomError("accsim", f"expected auto, true or false, got {value!r}")


class MemoryBlock(StrictModel):
    """``memory:``: bytes per tier already allocated before the first op, and
    a managed scratchpad (validated by sim.memory.config.ScratchpadConfig)."""

    resident_bytes: dict[Name, Bytes] = {}
    scratchpad: Optional[dict[Name, Any]] = None


class TrainingBlock(StrictModel):
    """``training:`` options of a training scenario."""

    fidelity: choice("folded", "full") = "folded"
    continue_on_oom: Bool = False
    optimizer_step: Bool = True


class OutputsBlock(StrictModel):
    """``outputs:``: what the run records."""

    link_rows: Annotated[Union[str, bool], BeforeValidator(_link_rows)] = "auto"


class ScenarioFile(StrictModel):
    """The schema of a scenario file (module docstring). Structure only: names
    of devices, clusters and traces are resolved by ``scenario_from_dict``;
    ``device_overrides`` and ``cluster_options`` by the spec and topology
    loaders, whose errors are reported under those keys."""

    name: Optional[Name] = None
    description: Optional[Text] = None
    device: Optional[Name] = None
    device_name: Optional[Name] = None
    device_overrides: dict[Name, Any] = {}
    trace: Optional[Text] = None
    memory: MemoryBlock = MemoryBlock()
    cluster: Optional[Name] = None
    cluster_options: dict[Name, Any] = {}
    model: Optional[ModelSchema] = None
    parallel: Optional[ParallelSchema] = None
    training: TrainingBlock = TrainingBlock()
    outputs: OutputsBlock = OutputsBlock()


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
    """A resolved scenario: specs and trace loaded and validated. ``raw`` is
    the scenario mapping after overrides, ``overrides`` what was applied."""

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
    overrides: Any = ()
    source_file: str | None = None

    def device_for(self, rank: int) -> DeviceSpec:
        return self.rank_specs.get(rank, self.device)

    def resident_tensors_for(self, rank: int) -> Mapping[str, tuple[str, int]]:
        return self.resident_by_rank.get(rank, {})

    @property
    def pipeline(self) -> bool:
        return self.training is not None

    def __repr__(self) -> str:
        kind = f"training {self.training.model.name}" if self.training else f"trace {self.trace.path}"
        return f"Scenario({self.name!r}, {kind}, {len(self.trace.ops)} ops, device {self.device.name})"


Overrides = Union[Sequence[str], Mapping[str, Any], str]


def override_items(overrides: Overrides) -> list[tuple[str, Any, str]]:
    """(dotted key, value, label for errors) of each override. ``overrides`` is
    ``key.path=value`` strings (values parsed as YAML, as ``--set`` does), one
    such string, or a mapping of dotted keys to values (used as they are)."""
    if isinstance(overrides, str):
        overrides = [overrides]
    if isinstance(overrides, Mapping):
        items = []
        for key, value in overrides.items():
            if not isinstance(key, str):
                raise ScenarioError(f"overrides: keys must be dotted key paths (strings), got {key!r}")
            check_structure(value, f"overrides[{key!r}]")
            items.append((key, value, f"overrides[{key!r}]"))
    elif isinstance(overrides, (list, tuple)):
        items = []
        for item in overrides:
            if not isinstance(item, str) or "=" not in item:
                raise ScenarioError(one_line(f"--set {item!r}: expected key.path=value"))
            key, text = item.split("=", 1)
            items.append((key, parse_yaml_text(text, f"--set {key.strip()}") if text.strip() else "",
                          f"--set {item}"))
    else:
        raise ScenarioError(f"overrides: expected key.path=value strings or a mapping of dotted keys "
                            f"to values, got {type(overrides).__name__}")
    if len(items) > MAX_OVERRIDES:
        raise ScenarioError(f"overrides: more than {MAX_OVERRIDES}")
    return items


def apply_overrides(raw: Mapping[str, Any], overrides: Overrides) -> dict:
    """Return a copy of ``raw`` with each override applied (see ``override_items``);
    a value of null (None) removes the key."""
    out = copy.deepcopy(dict(raw))
    for key, value, label in override_items(overrides):
        parts = key.strip().split(".")
        if not key.strip() or any(not part.strip() for part in parts) or len(key) > MAX_NAME:
            raise ScenarioError(one_line(f"{label}: expected a dotted key path such as parallel.pp"))
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ScenarioError(one_line(f"{label}: {part!r} is not a mapping in the scenario"))
            node = child
        if value is None:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = copy.deepcopy(value)
    return out


def _resolve(path_text: str, base: Path | None) -> Path:
    path = Path(path_text)
    if path.is_absolute():
        return path
    if base is not None and (base / path).exists():
        return base / path
    return path


def _device_spec(name: str, base: Path | None, overrides: Mapping[str, Any], where: str) -> DeviceSpec:
    """The device spec ``name`` with ``device_overrides``; an error the
    overrides cause is reported under the scenario's ``device_overrides``."""
    try:
        return load_device_spec(name, base, overrides or None)
    except SpecError as exc:
        if not overrides:
            raise _under_key(exc, where, "device") from None
        plain = load_device_spec(name, base)        # the spec alone is broken: its own error
        message = str(exc)
        for prefix in (plain.path, "device_overrides"):
            if message.startswith(prefix):
                message = message[len(prefix):].lstrip(".: ")
        raise ScenarioError(one_line(f"{where}: device_overrides: {message}")) from None


def _cluster(doc: ScenarioFile, base: Path | None, where: str):
    from sim.network.topology import load_topology
    name = doc.cluster
    if name == "ideal":
        plan = doc.parallel or ParallelSchema()
        world = plan.dp * plan.tp * plan.pp * plan.cp
        if world > MAX_IDEAL_RANKS:
            raise ScenarioError(f"{where}: parallel: cluster: ideal is sized by dp x tp x pp x cp = {world}; "
                                f"at most {MAX_IDEAL_RANKS} devices")
        name = f"ideal:{world}"
    try:
        return load_topology(name, base, doc.cluster_options)
    except SpecError as exc:
        raise _under_key(exc, where, "cluster") from None


def _under_key(exc: AccsimError, where: str, key: str) -> AccsimError:
    """A spec or topology loader's error, named under the scenario's key unless
    it already names the (user's) file that is wrong."""
    message = str(exc)
    if ".yaml" in message.split(":", 1)[0] or message.startswith(where):
        return exc
    return type(exc)(one_line(f"{where}: {key}: {message}"))


@collector_paused(freeze=True)     # a generated trace is a million long-lived objects (sim.runtime.heap)
def scenario_from_dict(raw: Mapping[str, Any], base: Path | None = None, where: str = "scenario",
                       default_name: str = "scenario", overrides: Overrides = ()) -> Scenario:
    """Validate a scenario mapping (ScenarioFile), load its specs, cluster and
    trace (or generate the training iteration), and check they agree."""
    check_structure(raw, where)
    if "serving" in raw:            # LLM serving (sim.serving, docs/serving.md)
        from sim.serving.scenario import serving_scenario_from_dict
        return serving_scenario_from_dict(raw, base, where, default_name, overrides)
    doc = validate(ScenarioFile, raw, where)
    training_mode = doc.model is not None or doc.parallel is not None
    if training_mode:
        for key in ("cluster", "model", "parallel"):
            if getattr(doc, key) is None:
                raise ScenarioError(f"{where}: a training scenario needs {key!r} (with model and parallel)")
        if doc.trace:
            raise ScenarioError(f"{where}: give either a trace or a model with a parallel plan, not both")
    else:
        if not doc.trace:
            raise ScenarioError(f"{where}: missing required key 'trace' (or 'model' and 'parallel')")
        if not doc.device and not doc.cluster:
            raise ScenarioError(f"{where}: missing required key 'device' (or 'cluster')")
    cluster = _cluster(doc, base, where) if doc.cluster else None
    specs: dict[str, DeviceSpec] = {}

    def spec_named(name: str) -> DeviceSpec:
        if name not in specs:
            specs[name] = _device_spec(name, base, doc.device_overrides, where)
        return specs[name]

    if doc.device:
        device = spec_named(doc.device)
        spec_of_rank = lambda rank: device  # noqa: E731
    else:
        names = {cluster.device_spec(r) for r in range(cluster.size)}
        if "" in names:
            raise ScenarioError(f"{where}: the cluster {cluster.name} does not say which device its ranks "
                                f"are; add device: NAME to the scenario")
        spec_of_rank = lambda rank: spec_named(cluster.device_spec(rank))  # noqa: E731
        device = spec_of_rank(0)
    resident = dict(doc.memory.resident_bytes)
    for tier in resident:
        if tier not in device.tier_names:
            raise ScenarioError(f"{where}: memory.resident_bytes.{tier}: not a tier of {device.name}; "
                                f"expected one of {list(device.tier_names)}")
    training = None
    resident_by_rank: dict = {}
    if training_mode:
        trace, training, resident_by_rank = _expand(doc, cluster, spec_of_rank, where)
    else:
        trace = _load_trace(doc.trace, base, where, cluster)
    memory_plan = None
    if doc.memory.scratchpad is not None:
        from sim.memory.manager import manage_scratchpad
        trace, memory_plan = manage_scratchpad(trace, spec_of_rank, doc.memory.scratchpad, where)
    link_rows = doc.outputs.link_rows
    record_links = (cluster is not None and cluster.size <= 64) if link_rows == "auto" else bool(link_rows)
    rank_specs = {rank: spec_of_rank(rank) for rank in trace.ranks} if cluster is not None else {}
    return Scenario(name=doc.name or default_name, device=device,
                    device_name=doc.device_name or "dev0", trace=trace,
                    resident_bytes=resident, raw=dict(raw), path=where, cluster=cluster,
                    rank_specs=rank_specs, resident_by_rank=resident_by_rank, training=training,
                    record_links=record_links, continue_on_oom=doc.training.continue_on_oom,
                    memory_plan=memory_plan, overrides=overrides)


def _load_trace(text: str, base: Path | None, where: str, cluster) -> Trace:
    """The scenario's trace; without a cluster every op must be on rank 0."""
    from sim.workload.trace import COMM_OPS
    path = _resolve(text, base)
    if not path.is_file():
        raise ScenarioError(one_line(f"{where}: trace: {text!r} not found (relative paths are tried "
                                     f"beside the scenario, then in the working directory)"))
    trace = load_trace(path)
    if cluster is None:
        for op in trace.ops:
            if op.rank != 0 or op.op in COMM_OPS:
                what = f"a {op.op}" if op.op in COMM_OPS else f"on rank {op.rank}"
                raise TraceError(f"{trace.path}: op {op.id} ({op.name}) is {what}; ranks and collectives "
                                 f"need a cluster: in the scenario {where} (without one, every op runs on "
                                 f"its single device)")
    return trace


def estimated_ops(model, plan, fidelity: str) -> int:
    """An upper estimate of a generated iteration's op count: per simulated
    rank, per microbatch forward and backward, a few ops per layer."""
    ranks = plan.pp if fidelity == "folded" else plan.world
    per_rank = 2 * plan.microbatches * (model.layers // plan.pp + 1) * 8
    return ranks * per_rank


def _expand(doc: ScenarioFile, cluster, spec_of_rank, where: str):
    """Generate a training scenario's trace and check its memory fits."""
    from sim.parallel.expand import expand_training
    from sim.parallel.memory import stage_memory
    from sim.parallel.plan import model_from_dict, plan_from_dict
    from sim.units import format_bytes
    from sim.workload.trace import validate_ops

    model = model_from_dict(doc.model.model_dump(), f"{where}: model")
    plan = plan_from_dict(doc.parallel.model_dump(exclude_unset=True), model, cluster.size, f"{where}: parallel")
    fidelity = doc.training.fidelity
    count = estimated_ops(model, plan, fidelity)
    if count > MAX_GENERATED_OPS:
        raise ScenarioError(f"{where}: the iteration would have about {count:,} ops (more than "
                            f"{MAX_GENERATED_OPS:,}); use training.fidelity: folded, fewer microbatches "
                            f"or fewer layers")
    _check_dtype(model, plan, spec_of_rank, where)
    continue_on_oom = doc.training.continue_on_oom
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
                                optimizer_step=doc.training.optimizer_step)
    trace = validate_ops(expansion.ops, f"{where} (generated {model.name} iteration)")
    expansion.ops = trace.ops       # the trace's tuple of the ops, not a list of them beside it (8 MB a million)
    training = Training(model, plan, fidelity, expansion, memory)
    return trace, training, expansion.resident


def _check_dtype(model, plan, spec_of_rank, where: str) -> None:
    """Every unit the generated iteration runs on must list the dtype it runs
    in: an SM array's tensor cores the GEMMs' (fp8 GEMMs need fp8 tensor
    cores), its CUDA cores and a vector unit the pointwise kernels' (the
    model's storage dtype: bf16 under fp8 training, sim.workload.transformer)."""
    from sim.hardware.gemm import precision
    seen = set()
    for stage in range(plan.pp):
        spec = spec_of_rank(plan.rank(0, stage, 0))
        if spec.name in seen:
            continue
        seen.add(spec.name)
        sm, vector = getattr(spec, "sm_array", None), getattr(spec, "vector", None)
        tables = {"SM array matrix": (getattr(sm, "matrix_flops_per_s", None), precision(model.dtype).math),
                  "SM array vector": (getattr(sm, "vector_flops_per_s", None), model.storage_dtype),
                  "vector unit": (getattr(vector, "flops_per_s", None), model.storage_dtype)}
        for label, (table, dtype) in tables.items():
            if isinstance(table, Mapping) and dtype not in table:
                raise ScenarioError(f"{where}: model.dtype: {spec.name}'s {label} has no {dtype} "
                                    f"peak; it lists {sorted(table)}")


def load_scenario_dict(raw: Mapping[str, Any], overrides: Overrides = (),
                       base: Path | None = None, where: str = "scenario") -> Scenario:
    """Resolve a scenario given as a mapping (paths relative to ``base`` or the cwd)."""
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{where}: expected a mapping, got {type(raw).__name__}")
    check_structure(raw, where)
    return scenario_from_dict(apply_overrides(raw, overrides), base=base, where=where,
                              overrides=overrides)


def read_scenario_file(path: str | Path) -> dict:
    """The mapping in a scenario file (bounded YAML), or one ScenarioError line."""
    path = Path(path)
    if not path.exists():
        raise ScenarioError(f"{path}: scenario file not found")
    raw = load_yaml(path, ScenarioError)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def load_scenario(path: str | Path, overrides: Overrides = ()) -> Scenario:
    """Read a scenario YAML, apply ``--set`` overrides, and resolve it. A path
    that does not exist but names a shipped scenario (``quickstart``) is that."""
    path = resolve_scenario_path(path)
    raw = apply_overrides(read_scenario_file(path), overrides)
    scenario = scenario_from_dict(raw, base=path.parent, where=str(path), default_name=path.stem,
                                  overrides=overrides)
    return dataclasses.replace(scenario, source_file=str(path))


def resolve_scenario_path(path: str | Path) -> Path:
    """``path`` if it exists, else the shipped scenario of that name
    (``quickstart`` or ``quickstart.yaml``, sim.paths), else ``path``."""
    from sim.paths import scenario_path
    path = Path(path)
    if path.exists() or path.parent != Path("."):
        return path
    shipped = scenario_path(path.name)
    return shipped if shipped.is_file() else path
