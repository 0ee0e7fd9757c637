"""LLM inference serving on the simulated cluster (docs/serving.md).

A scenario with a ``serving:`` section is resolved by
``sim.serving.scenario.serving_scenario_from_dict`` and simulated by
``sim.serving.run.simulate``; ``sim.run`` dispatches both.
"""
