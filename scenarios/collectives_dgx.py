"""All-reduce bus bandwidth on one DGX from 1 KiB to 4 GiB: the alpha-beta ring,
each NCCL algorithm and protocol, and what NCCL's tuner picks (and where it
switches).

    python scenarios/collectives_dgx.py [--topology dgx_a100] [--op allreduce]

The link figures (topologies/links/nvlink3.yaml, ib_hdr.yaml) and NCCL's tuning
constants (topologies/nccl/tuning.yaml) carry their sources; the algorithms
know nothing of them. The alpha-beta ring reaches the links' effective rate
(240 GB/s on NVLink3) at every large size and costs a few microseconds at
small ones; NCCL's protocols trade latency for bandwidth (LL: ~20 us, half the
bandwidth; LL128; Simple: the full bandwidth after ~60 us of per-step latency),
and its tuner walks from LL to LL128 to Simple as the size grows, which is
the shape nccl-tests measures (docs/validation.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.errors import AccsimError  # noqa: E402
from sim.network.collectives import normalize_op  # noqa: E402
from sim.network.runtime import simulate_collective  # noqa: E402
from sim.network.topology import load_topology  # noqa: E402
from sim.units import format_bytes  # noqa: E402

COLUMNS = [("ring", None), ("nccl_ring", "LL"), ("nccl_ring", "LL128"), ("nccl_ring", "Simple"),
           ("nccl_tree", "Simple"), ("nvls", "Simple")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topology", default="dgx_a100")
    parser.add_argument("--op", default="allreduce")
    args = parser.parse_args()
    op = normalize_op(args.op)
    cluster = load_topology(args.topology)
    sizes = [1024 * 4 ** i for i in range(12)]
    columns = []
    for algorithm, protocol in COLUMNS:
        try:
            simulate_collective(cluster, op, algorithm, sizes[-1], protocol=protocol)
            columns.append((algorithm, protocol))
        except AccsimError:
            pass                     # not on this machine (NVLS on A100) or not for this op
    print(f"# {op} bus bandwidth (GB/s) on {cluster.name}, {cluster.size} ranks")
    names = [f"{a}/{p}" if p else a for a, p in columns]
    print(f"{'size':>10} " + " ".join(f"{n:>16}" for n in names) + f" {'nccl picks':>20} {'time':>10}")
    previous = None
    for size in sizes:
        row = [simulate_collective(cluster, op, a, size, protocol=p) for a, p in columns]
        pick = simulate_collective(cluster, op, "nccl", size)
        choice = f"{pick.algorithm}/{pick.protocol}"
        note = "" if previous in (None, choice) else f"   <- switches from {previous}"
        previous = choice
        print(f"{format_bytes(size):>10} " + " ".join(f"{r.busbw_bytes_per_s / 1e9:>16.2f}" for r in row)
              + f" {choice:>20} {pick.time_s * 1e6:>8.1f}us{note}")


if __name__ == "__main__":
    main()
