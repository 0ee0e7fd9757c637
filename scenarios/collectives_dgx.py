"""All-reduce bus bandwidth on one DGX A100 from 1 KiB to 4 GiB, per algorithm,
and where ``auto`` switches algorithm.

    python scenarios/collectives_dgx.py [--topology dgx_a100] [--op allreduce]

The link figures (NVLink3 300 GB/s per direction at 76.7% efficiency, per-hop
latency) live in topologies/clusters/dgx_a100.yaml with their sources; the
algorithms know nothing of them. Small messages are latency-bound (bus
bandwidth grows with size), large ones bandwidth-bound: the ring plateaus near
the ~230 GB/s NCCL's maintainers report for 8 A100s.

Two ``auto`` columns: over every algorithm we implement (on a non-blocking
NVSwitch, Rabenseifner's halving-doubling has the ring's bandwidth term and a
log p latency term, so it wins at every size), and over NCCL's own choices,
ring and the double binary tree, which switches from tree to ring.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.network.collectives import algorithms_for, normalize_op  # noqa: E402
from sim.network.runtime import simulate_collective  # noqa: E402
from sim.network.topology import load_topology  # noqa: E402
from sim.units import format_bytes  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology", default="dgx_a100")
    parser.add_argument("--op", default="allreduce")
    args = parser.parse_args()
    op = normalize_op(args.op)
    cluster = load_topology(args.topology)
    algorithms = [a for a in algorithms_for(op) if a != "hierarchical" or len(set(
        cluster.machine(r) for r in range(cluster.size))) > 1]
    sizes = [1024 * 4 ** i for i in range(12)]
    print(f"# {op} bus bandwidth (GB/s) on {cluster.name}, {cluster.size} ranks")
    nccl_like = [a for a in ("ring", "double_binary_tree") if a in algorithms]
    print(f"{'size':>10} " + " ".join(f"{a:>17}" for a in algorithms)
          + f" {'auto (all)':>17} {'auto (ring|tree)':>18} {'time':>10}")
    previous = None
    for size in sizes:
        row = {a: simulate_collective(cluster, op, a, size) for a in algorithms}
        auto = simulate_collective(cluster, op, "auto", size)
        nccl = simulate_collective(cluster, op, "auto", size, candidates=nccl_like)
        note = "" if previous in (None, nccl.algorithm) else f"   <- switches from {previous}"
        previous = nccl.algorithm
        print(f"{format_bytes(size):>10} " + " ".join(f"{row[a].busbw_bytes_per_s / 1e9:>17.2f}" for a in algorithms)
              + f" {auto.algorithm:>17} {nccl.algorithm:>18} {nccl.time_s * 1e6:>8.1f}us{note}")


if __name__ == "__main__":
    main()
