"""Where a run's time and memory go, phase by phase (issue 13).

    python benchmarks/phases.py SCENARIO [--set KEY=VALUE ...]

Runs the scenario once in this process (``sim.load_scenario`` then ``sim.run``,
no outputs written) and prints, per phase, the CPU seconds spent in it
(``time.process_time``) and the resident memory (MiB, from /proc/self/statm
where there is one) when it ended, then the run's peak RSS. Phases: imports,
trace generation (``expand_training``), trace validation (``validate_ops``),
simulation set-up (``Simulation.__init__``), the event loop
(``Environment.run``), the tables (``Simulation._result``),
the training summary and energy. A phase that does not occur (a trace file
instead of a generated trace) is not printed.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mib() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return pages * resource.getpagesize() / 2**20


class Phases:
    """CPU seconds and RSS at the end of each timed function."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []

    def wrap(self, owner, attr: str, label: str) -> None:
        function = getattr(owner, attr)

        def timed(*args, **kwargs):
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.rows.append((label, time.process_time() - start, rss_mib()))
        setattr(owner, attr, timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    args = parser.parse_args()
    start = time.process_time()
    import sim
    import sim.energy.run
    import sim.parallel.expand
    import sim.parallel.metrics
    import sim.runtime.simulate
    import sim.workload.trace
    phases = Phases()
    phases.rows.append(("imports", time.process_time() - start, rss_mib()))
    simulation = sim.runtime.simulate.Simulation
    phases.wrap(sim.parallel.expand, "expand_training", "trace generation")
    phases.wrap(sim.workload.trace, "validate_ops", "trace validation")
    phases.wrap(simulation, "__init__", "simulation set-up")
    phases.wrap(sim.runtime.simulate.Environment, "run", "event loop")
    phases.wrap(simulation, "_result", "tables")
    phases.wrap(sim.parallel.metrics, "training_summary", "training summary")
    phases.wrap(sim.energy.run, "attach_energy", "energy")
    scenario = sim.load_scenario(args.scenario, args.overrides)
    sim.run(scenario)
    total = time.process_time() - start
    rows = list(phases.rows)
    order = ["imports", "trace generation", "trace validation", "simulation set-up", "event loop", "tables",
             "training summary", "energy"]
    rows.sort(key=lambda row: order.index(row[0]))
    print(f"{'phase':20s} {'CPU s':>7s} {'RSS MiB at end':>15s}")
    for label, s, mib in rows:
        print(f"{label:20s} {s:7.2f} {mib:15.0f}")
    print(f"{'total':20s} {total:7.2f}   peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
