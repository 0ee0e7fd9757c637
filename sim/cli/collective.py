"""``accsim collective``: time a collective on a topology."""

from __future__ import annotations

import argparse
import json

from sim.cli.format import format_bytes, format_seconds


def cmd_collective(args: argparse.Namespace) -> int:
    from sim.network.cli_support import parse_group, parse_sizes
    from sim.network.collectives import normalize_algorithm, normalize_op
    from sim.network.runtime import NetworkRuntime, simulate_collectives
    from sim.network.topology import load_topology, with_links

    op, algorithm = normalize_op(args.op), normalize_algorithm(args.algorithm)
    cluster = with_links(load_topology(args.topology), args.link_bandwidth, args.link_latency)
    ranks = parse_group(args.group, cluster.size)
    if op == "sendrecv" and not args.group:
        ranks = ranks[:2]
    sizes = parse_sizes(args.bytes)
    results = []
    networks: list[NetworkRuntime] = []
    for size in sizes:
        results.append(simulate_collectives(cluster, [(op, algorithm, ranks, size)], args.gamma,
                                            args.ecmp, record=bool(args.out),
                                            on_network=networks.append)[0])
    if args.out:
        from sim.reports.network import write_collective_run
        write_collective_run(args.out, cluster, networks[-1], results[-1])
    if args.json:
        for result in results:
            print(json.dumps(result.as_dict()))
        return 0
    print(f"# {op} on {cluster.name}, {len(ranks)} ranks, algorithm {algorithm}")
    print(f"{'size':>12} {'algorithm':>17} {'time':>12} {'algbw':>12} {'busbw':>12}")
    for r in results:
        print(f"{format_bytes(r.nbytes):>12} {r.algorithm:>17} {format_seconds(r.time_s):>12} "
              f"{r.algbw_bytes_per_s / 1e9:>8.2f} GB/s {r.busbw_bytes_per_s / 1e9:>7.2f} GB/s")
    return 0


def register(sub) -> None:
    coll = sub.add_parser(
        "collective", help="time a collective on a topology (nccl-tests-like table)",
        description="Simulate one collective on a cluster topology and print time, algorithm "
                    "bandwidth and bus bandwidth (nccl-tests' busbw factors).",
        epilog="Examples:\n  accsim collective --topology ring:8 --op allreduce --algorithm ring --bytes 1GiB\n"
               "  accsim collective --topology dgx_a100 --op all-reduce --algorithm auto --bytes 1KiB:4GiB",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    coll.add_argument("--topology", required=True,
                      help="YAML file, catalog name (topologies/clusters) or ring:N, fully_connected:N, "
                           "switch:N, tree:N, torus:AxB[xC], cluster:NODESxGPUS")
    coll.add_argument("--op", required=True,
                      help="allreduce, reduce_scatter, allgather, broadcast, reduce, scatter, gather, "
                           "alltoall, sendrecv (hyphens accepted)")
    coll.add_argument("--algorithm", default="auto",
                      help="ring, mst, halving_doubling, double_binary_tree, hierarchical, auto (fastest "
                           "predicted), nccl (fastest of NCCL's own: ring, double_binary_tree, hierarchical); "
                           "default auto")
    coll.add_argument("--bytes", action="append", required=True, metavar="SIZE",
                      help="message size (4096, 64MiB) or a range LOW:HIGH[:FACTOR]; repeatable")
    coll.add_argument("--group", help="ranks taking part, in ring order: 0,1,2 or 0-7 or 0:64:8 (default: all)")
    coll.add_argument("--link-bandwidth", type=float, metavar="BYTES_PER_S",
                      help="set every link's bandwidth (bytes/s per direction)")
    coll.add_argument("--link-latency", type=float, metavar="SECONDS", help="set every link's latency")
    coll.add_argument("--gamma", type=float, default=0.0, metavar="S_PER_BYTE",
                      help="reduction cost, seconds per byte reduced (default 0)")
    coll.add_argument("--ecmp", action="store_true", help="spread flows over equal-cost paths")
    coll.add_argument("--json", action="store_true", help="one JSON object per size")
    coll.add_argument("--out", metavar="DIR",
                      help="write timeline.arrow, utilization.arrow (per link) and summary.json for the last size")
    coll.set_defaults(func=cmd_collective)
