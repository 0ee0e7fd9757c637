"""Engine speed: simulated ops per wall second on a large synthetic trace,
next to raw SimPy timeouts per second measured in the same run.

    python benchmarks/engine.py [--ops 100000] [--repeat 3]

Target (issue 2): ops/s at least 25% of raw SimPy timeouts/s. The machine is
noisy: both figures are measured in the same process, interleaved, and the
best run of each is compared.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import simpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.hardware.specs import load_device_spec  # noqa: E402
from sim.runtime.scenario import Scenario  # noqa: E402
from sim.runtime.simulate import Simulation  # noqa: E402
from sim.workload.trace import Op, validate_ops  # noqa: E402


def raw_simpy_timeouts_per_s(count: int) -> float:
    env = simpy.Environment()

    def ticker():
        for _ in range(count):
            yield env.timeout(1.0)

    env.process(ticker())
    start = time.perf_counter()
    env.run()
    return count / (time.perf_counter() - start)


def calendar_chain_per_s(count: int) -> float:
    """The floor of our design: a chain of empty calendar callbacks, each at a
    new time, with no op work at all."""
    from sim.engine.calendar import Environment
    env = Environment()
    done = [0]

    def tick(_):
        done[0] += 1
        if done[0] < count:
            env.at(env.now + 1.0, tick)

    env.at(1.0, tick)
    start = time.perf_counter()
    env.run()
    return count / (time.perf_counter() - start)


def synthetic_ops(count: int, streams: int = 4) -> list[Op]:
    """GEMMs and elementwise ops round-robin over streams, each op also
    depending on an op of the previous stream 8 ops back (cross-stream deps)."""
    ops = []
    for i in range(count):
        stream = i % streams
        deps = (i - 8 - 1,) if i >= 9 and (i - 9) % streams != stream else ()
        if i % 3 == 0:
            m, n, k = 2048, 2048 + 128 * (i % 7), 1024
            ops.append(Op(id=i, name="gemm", op="gemm", m=m, n=n, k=k, flops=2.0 * m * n * k,
                          bytes_read=2.0 * (m * k + k * n), bytes_written=2.0 * m * n,
                          stream=stream, deps=deps))
        else:
            ops.append(Op(id=i, name="add", op="elementwise", flops=1e6, bytes_read=8e6,
                          bytes_written=4e6, stream=stream, deps=deps))
    return ops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each measurement, interleaved; the best of each is reported")
    args = parser.parse_args()

    t0 = time.perf_counter()
    trace = validate_ops(synthetic_ops(args.ops), "synthetic")
    t_validate = time.perf_counter() - t0
    spec = load_device_spec("a100_sxm4_80gb")
    raw_rates, loop_s, floor_rates = [], [], []
    for _ in range(args.repeat):
        raw_rates.append(raw_simpy_timeouts_per_s(args.ops * 2))
        simulation = Simulation(Scenario(name="bench", device=spec, device_name="gpu0", trace=trace))
        t0 = time.perf_counter()
        result = simulation.run()
        t_run = time.perf_counter() - t0
        loop_s.append(result.summary["wall_s"])
        floor_rates.append(calendar_chain_per_s(args.ops))
    raw_best = max(raw_rates)
    ops_per_s = args.ops / min(loop_s)
    floor = max(floor_rates)
    print(f"ops                          {args.ops}  (best of {args.repeat} runs, interleaved)")
    print(f"events scheduled             {result.summary['events']}  ({result.summary['events'] / args.ops:.2f} per op)")
    print(f"raw SimPy timeouts/s         {raw_best:,.0f}  (runs: {', '.join(f'{r:,.0f}' for r in raw_rates)})")
    print(f"simulated ops/s (event loop) {ops_per_s:,.0f}  (runs: {', '.join(f'{args.ops / s:,.0f}' for s in loop_s)})")
    print(f"ratio ops/s : timeouts/s     {ops_per_s / raw_best:.1%}  (target >= 25%)")
    print(f"empty calendar callbacks/s   {floor:,.0f}  ({floor / raw_best:.0%} of raw: the ceiling of this design)")
    print(f"validate trace               {t_validate:.2f} s")
    print(f"run incl. tables             {t_run:.2f} s ({args.ops / t_run:,.0f} ops/s)")
    print(f"timeline rows                {result.timeline.num_rows}")


if __name__ == "__main__":
    main()
