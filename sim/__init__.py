"""accsim: a discrete-event simulator of accelerator clusters on SimPy.

Python API::

    import sim
    result = sim.run("scenarios/quickstart.yaml", overrides=["memory.resident_bytes.hbm=4GiB"])
    result.summary["makespan_s"]; result.timeline  # a pyarrow.Table
    result.write("runs/quickstart")
"""

from sim.errors import AccsimError, CapacityError, ScenarioError, SpecError, TraceError
from sim.runtime.scenario import Scenario, load_scenario, load_scenario_dict
from sim.runtime.simulate import Result, run

__version__ = "0.1.0"


def sweep(*args, **kwargs):
    """Run a parameter sweep on Dask (see sim.sweeps.runner.sweep)."""
    from sim.sweeps.runner import sweep as run_sweep
    return run_sweep(*args, **kwargs)

__all__ = ["AccsimError", "CapacityError", "Result", "Scenario", "ScenarioError", "SpecError",
           "TraceError", "load_scenario", "load_scenario_dict", "run", "sweep", "__version__"]
