"""accsim: a discrete-event simulator of accelerator clusters on SimPy.

Python API::

    import sim
    result = sim.run("scenarios/quickstart.yaml", overrides={"parallel.schedule": "gpipe"})
    result.summary["iteration_time_s"]; result.timeline  # a pyarrow.Table
    result.write("runs/gpipe", overwrite=True)
    table = sim.sweep("scenarios/sweep_pipeline.yaml", out="runs/sweep")   # see docs/sweeps.md
    sim.kernel("h100_sxm5_80gb", "gemm", m=4096, n=4096, k=4096).flops_per_s  # one kernel

``import sim`` is cheap: the simulator's modules (pydantic models, numpy,
pyarrow, networkx, dask) load on first use of the names below (PEP 562
module ``__getattr__``), so ``accsim --help`` and small commands start fast.
"""

from sim.errors import AccsimError, CapacityError, ScenarioError, SpecError, TraceError

__version__ = "0.1.0"

# public name -> module that defines it, imported on first access
_LAZY = {
    "Scenario": "sim.runtime.scenario",
    "load_scenario": "sim.runtime.scenario",
    "load_scenario_dict": "sim.runtime.scenario",
    "Result": "sim.runtime.simulate",
    "run": "sim.runtime.simulate",
    "sweep": "sim.sweeps.runner",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sim' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value          # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


def kernel(device, op="gemm", overrides=None, **args):
    """Time of one kernel on a device: ``sim.kernel("h100_sxm5_80gb", "gemm", m=4096, n=4096,
    k=4096)`` returns a KernelResult (seconds, flops_per_s, bound, tile, waves, ...); see
    sim.hardware.query for the ops and arguments."""
    from sim.hardware.query import kernel as price_kernel
    return price_kernel(device, op, overrides, **args)


__all__ = ["AccsimError", "CapacityError", "Result", "Scenario", "ScenarioError", "SpecError",
           "TraceError", "kernel", "load_scenario", "load_scenario_dict", "run", "sweep", "__version__"]
