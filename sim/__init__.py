"""accsim: a discrete-event simulator of accelerator clusters on SimPy.

Python API::

    import sim
    result = sim.run("scenarios/quickstart.yaml", overrides={"parallel.schedule": "gpipe"})
    result.summary["iteration_time_s"]; result.timeline  # a pyarrow.Table
    result.write("runs/gpipe", overwrite=True)
    table = sim.sweep("scenarios/sweep_pipeline.yaml", out="runs/sweep")   # see docs/sweeps.md
    sim.kernel("h100_sxm5_80gb", "gemm", m=4096, n=4096, k=4096).flops_per_s  # one kernel
"""

from sim.errors import AccsimError, CapacityError, ScenarioError, SpecError, TraceError
from sim.runtime.scenario import Scenario, load_scenario, load_scenario_dict
from sim.runtime.simulate import Result, run
from sim.sweeps.runner import sweep

__version__ = "0.1.0"


def kernel(device, op="gemm", overrides=None, **args):
    """Time of one kernel on a device: ``sim.kernel("h100_sxm5_80gb", "gemm", m=4096, n=4096,
    k=4096)`` returns a KernelResult (seconds, flops_per_s, bound, tile, waves, ...); see
    sim.hardware.query for the ops and arguments."""
    from sim.hardware.query import kernel as price_kernel
    return price_kernel(device, op, overrides, **args)


__all__ = ["AccsimError", "CapacityError", "Result", "Scenario", "ScenarioError", "SpecError",
           "TraceError", "kernel", "load_scenario", "load_scenario_dict", "run", "sweep", "__version__"]
