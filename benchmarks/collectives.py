"""Collective simulation speed: wall time to simulate ring and MST all-reduce
(1 GiB) on 8, 64, 256 and 1,024 ranks, NCCL's choice (``nccl``) on the DGX
clusters, and 100 concurrent collectives on disjoint groups.

    python benchmarks/collectives.py

Target (issue 3): a 1,024-rank ring all-reduce simulates in under 0.5 s.
Topologies: ring:N with uniform 100 GB/s, 1 us links, and the 1,024-GPU A100
cluster (a100_1024: 128 DGX nodes on a leaf/spine fat tree).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.network.runtime import simulate_collective, simulate_collectives  # noqa: E402
from sim.network.topology import from_name, load_topology  # noqa: E402

GIB = 1 << 30


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    print(f"{'topology':<16} {'ranks':>6} {'algorithm':>10} {'wall':>9} {'simulated':>12} {'busbw':>12} {'events':>7}")
    cases = [(f"ring:{p}", p) for p in (8, 64, 256, 1024)] + [("dgx_a100", 8), ("h100_64", 64),
                                                               ("a100_1024", 1024)]
    for name, p in cases:
        cluster = (from_name(name, {"bandwidth_bytes_per_s": 100e9, "latency_s": 1e-6})
                   if ":" in name else load_topology(name))
        for algorithm in ("ring", "mst") + (("nccl", "nccl_ring") if ":" not in name else ()):
            wall, result = timed(lambda: simulate_collective(cluster, "allreduce", algorithm, GIB))
            print(f"{name:<16} {p:>6} {algorithm:>10} {wall:>8.3f}s {result.time_s * 1e3:>9.2f} ms "
                  f"{result.busbw_bytes_per_s / 1e9:>7.1f} GB/s {result.events:>7}")
    cluster = load_topology("a100_1024")
    groups = [list(range(8 * i, 8 * i + 8)) for i in range(100)]
    wall, results = timed(lambda: simulate_collectives(
        cluster, [("allreduce", "ring", group, GIB) for group in groups]))
    print(f"100 concurrent 8-rank ring all-reduces (disjoint nodes of a100_1024): {wall:.3f} s wall, "
          f"each {results[0].time_s * 1e3:.2f} ms simulated, {results[0].events} events")
    groups = [list(range(i, 1024, 128))[:8] for i in range(100)]
    wall, results = timed(lambda: simulate_collectives(
        cluster, [("allreduce", "ring", group, GIB) for group in groups]))
    slowest = max(r.time_s for r in results)
    print(f"100 concurrent 8-rank ring all-reduces across nodes (sharing the fat tree): {wall:.3f} s wall, "
          f"slowest {slowest * 1e3:.2f} ms simulated")


if __name__ == "__main__":
    main()
