"""The dry run: does a training plan fit in memory, without simulating.

``load_training`` validates a training scenario as far as its plan (the
file, ``--set`` overrides, cluster, device specs, model, parallel plan, the
size of the generated iteration and the dtypes the devices run), without
generating the iteration. ``plan_fit`` computes each pipeline stage's memory
per GPU with sim.parallel.memory.stage_memory (ZeRO paper and Korthikanti et
al. formulas, cited there) and compares its peak with the capacity of the
default memory tier of the stage's device, the same check ``accsim run``
makes before expanding (sim.runtime.scenario), so a plan the dry run passes
is not refused for memory by a run, and one it fails would be.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from sim.errors import ScenarioError
from sim.parallel.memory import StageMemory, stage_memory
from sim.parallel.plan import ParallelPlan
from sim.workload.transformer import ModelConfig


@dataclass(frozen=True)
class StageFit:
    """One pipeline stage's memory per GPU against its device's capacity."""

    memory: StageMemory
    device: str
    tier: str
    capacity_bytes: float

    @property
    def fits(self) -> bool:
        return self.memory.total_bytes <= self.capacity_bytes

    def as_dict(self) -> dict:
        return {**self.memory.as_dict(), "device": self.device, "tier": self.tier,
                "capacity_bytes": self.capacity_bytes, "fits": self.fits}


@dataclass(frozen=True)
class PlanFit:
    stages: tuple[StageFit, ...]

    @property
    def fits(self) -> bool:
        return all(s.fits for s in self.stages)

    @property
    def worst(self) -> StageFit:
        """The stage with the largest peak (the first of equals)."""
        return max(self.stages, key=lambda s: (s.memory.total_bytes, -s.memory.stage))

    @property
    def peak_bytes(self) -> float:
        return self.worst.memory.total_bytes

    def overflow(self) -> StageFit | None:
        """The first stage that does not fit, else None."""
        return next((s for s in self.stages if not s.fits), None)


def plan_fit(model: ModelConfig, plan: ParallelPlan, spec_of_rank: Callable[[int], Any]) -> PlanFit:
    """Memory per GPU of every stage of ``plan`` against the default tier of
    the device that runs the stage's first rank."""
    stages = []
    for stage in range(plan.pp):
        spec = spec_of_rank(plan.rank(0, stage, 0))
        tier = spec.default_tier
        stages.append(StageFit(stage_memory(model, plan, stage), spec.name, tier,
                               float(spec.tier(tier).capacity_bytes)))
    return PlanFit(tuple(stages))


def overflow_message(fit: PlanFit) -> str:
    """The one-line reason a plan does not fit (as accsim run words it)."""
    from sim.units import format_bytes
    s = fit.overflow()
    m = s.memory
    return (f"the plan does not fit in memory: stage {m.stage} needs {format_bytes(m.total_bytes)} per GPU "
            f"(weights {format_bytes(m.weights_bytes)}, gradients {format_bytes(m.gradients_bytes)}, "
            f"optimizer state {format_bytes(m.optimizer_bytes)}, activations {format_bytes(m.activations_bytes)} "
            f"for {m.in_flight} microbatches in flight) but {s.device} has {format_bytes(s.capacity_bytes)} "
            f"of {s.tier}")


def ops_bound_message(model: ModelConfig, plan: ParallelPlan, fidelity: str) -> str | None:
    """Why the generated iteration would be too large to simulate (as accsim run refuses it), else None."""
    from sim.runtime.scenario import MAX_GENERATED_OPS, estimated_ops
    count = estimated_ops(model, plan, fidelity)
    if count <= MAX_GENERATED_OPS:
        return None
    return (f"the iteration would have about {count:,} ops (more than {MAX_GENERATED_OPS:,}); use "
            f"training.fidelity: folded, fewer microbatches or fewer layers")


@dataclass(frozen=True)
class TrainingSetup:
    """A training scenario validated up to its plan (nothing generated)."""

    name: str
    path: Path
    raw: Mapping[str, Any]
    model: ModelConfig
    plan: ParallelPlan
    world: int
    spec_of_rank: Callable[[int], Any]
    continue_on_oom: bool
    fidelity: str

    @property
    def device_names(self) -> str:
        names = sorted({self.spec_of_rank(self.plan.rank(0, s, 0)).name for s in range(self.plan.pp)})
        return ", ".join(names)


def load_training(path: str | Path, overrides=()) -> TrainingSetup:
    """Validate a training scenario file (and ``--set`` overrides) as far as its plan."""
    from sim.runtime import scenario as sc
    from sim.parallel.plan import model_from_dict, plan_from_dict
    from sim.schema import check_structure, validate

    path = sc.resolve_scenario_path(path)
    raw = sc.apply_overrides(sc.read_scenario_file(path), overrides)
    where = str(path)
    check_structure(raw, where)
    if "serving" in raw or "model" not in raw or "parallel" not in raw:
        raise ScenarioError(f"{where}: not a training scenario (it needs model: and parallel:); a dry run "
                            f"and a plan search are for training scenarios")
    doc = validate(sc.ScenarioFile, raw, where)
    if doc.cluster is None:
        raise ScenarioError(f"{where}: a training scenario needs 'cluster' (with model and parallel)")
    cluster = sc._cluster(doc, path.parent, where)
    specs: dict[str, Any] = {}

    def spec_named(name: str):
        if name not in specs:
            specs[name] = sc._device_spec(name, path.parent, doc.device_overrides, where)
        return specs[name]

    if doc.device:
        spec_of_rank = lambda rank: spec_named(doc.device)  # noqa: E731
    else:
        if any(not cluster.device_spec(r) for r in range(cluster.size)):
            raise ScenarioError(f"{where}: the cluster {cluster.name} does not say which device its ranks "
                                f"are; add device: NAME to the scenario")
        spec_of_rank = lambda rank: spec_named(cluster.device_spec(rank))  # noqa: E731
    model = model_from_dict(doc.model.model_dump(), f"{where}: model")
    plan = plan_from_dict(doc.parallel.model_dump(exclude_unset=True), model, cluster.size, f"{where}: parallel")
    too_many = ops_bound_message(model, plan, doc.training.fidelity)
    if too_many:
        raise ScenarioError(f"{where}: {too_many}")
    sc._check_dtype(model, plan, spec_of_rank, where)
    return TrainingSetup(doc.name or path.stem, path, raw, model, plan, cluster.size, spec_of_rank,
                         doc.training.continue_on_oom, doc.training.fidelity)
