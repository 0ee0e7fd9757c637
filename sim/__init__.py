"""accsim: a discrete-event simulator of accelerator clusters on SimPy.

Python API::

    import sim
    result = sim.run("scenarios/quickstart.yaml", overrides={"parallel.schedule": "gpipe"})
    result.summary["iteration_time_s"]; result.timeline  # a pyarrow.Table
    result.write("runs/gpipe", overwrite=True)
    table = sim.sweep("scenarios/sweep_pipeline.yaml", out="runs/sweep")   # see docs/sweeps.md
"""

from sim.errors import AccsimError, CapacityError, ScenarioError, SpecError, TraceError
from sim.runtime.scenario import Scenario, load_scenario, load_scenario_dict
from sim.runtime.simulate import Result, run
from sim.sweeps.runner import sweep

__version__ = "0.1.0"

__all__ = ["AccsimError", "CapacityError", "Result", "Scenario", "ScenarioError", "SpecError",
           "TraceError", "load_scenario", "load_scenario_dict", "run", "sweep", "__version__"]
