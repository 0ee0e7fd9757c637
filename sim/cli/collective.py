"""``accsim collective``: time a collective on a topology, in nccl-tests' format."""

from __future__ import annotations

import argparse
import json

from sim.errors import AccsimError


def _harness_time(result, host_call_s: float, gpus_per_process: int) -> float:
    """What nccl-tests measures: the collective, or, when one host thread drives
    ``gpus_per_process`` GPUs (``-g``), the time it takes to issue one call per
    GPU, whichever is longer (the cluster's ``nccl.host_call_overhead``)."""
    return max(result.time_s, gpus_per_process * host_call_s)


def _simulate(cluster, op, algorithm, ranks, sizes, args, protocol, record=False):
    from sim.network.runtime import simulate_collectives
    results, networks = [], []
    for size in sizes:
        results.append(simulate_collectives(cluster, [(op, algorithm, ranks, size)], args.gamma, args.ecmp,
                                            record=record, on_network=networks.append,
                                            protocol=protocol)[0])
    return results, networks


def cmd_collective(args: argparse.Namespace) -> int:
    from sim.network.cli_support import parse_group, parse_sizes
    from sim.network.collectives import normalize_algorithm, normalize_op, normalize_protocol
    from sim.network.topology import load_topology, with_links

    if not (args.gamma >= 0 and args.gamma < float("inf")):
        raise AccsimError(f"--gamma: expected a non-negative number of seconds per byte, got {args.gamma}")
    if args.gpus_per_process < 1:
        raise AccsimError(f"--gpus-per-process: expected a positive integer, got {args.gpus_per_process}")
    from sim.network.collectives import NCCL_NAMES
    algorithm = normalize_algorithm(args.algorithm)
    protocol = normalize_protocol(args.protocol)
    if protocol is not None and algorithm not in NCCL_NAMES:
        raise AccsimError(f"--protocol applies to the NCCL family ({', '.join(NCCL_NAMES)}), not to {algorithm}")
    log = None
    if args.nccl_tests:
        from sim.network.nccl_tests import read_log
        log = read_log(args.nccl_tests)
    op_text = args.op or (log.op if log is not None else None)
    if op_text is None:
        raise AccsimError("--op is required (the nccl-tests log does not name its test either)"
                          if log is not None else "--op is required")
    op = normalize_op(op_text)
    if log is None and not args.bytes:
        raise AccsimError("--bytes is required (or --nccl-tests FILE to take the sizes from a log)")
    sizes = [row.size_bytes for row in log.rows] if log is not None and not args.bytes else parse_sizes(args.bytes)
    cluster = with_links(load_topology(args.topology), args.link_bandwidth, args.link_latency)
    ranks = parse_group(args.group, cluster.size)
    if not args.group and log is not None and log.ranks:
        if log.ranks > cluster.size:
            raise AccsimError(f"{args.nccl_tests}: the log has {log.ranks} ranks but {cluster.name} has "
                              f"{cluster.size}")
        ranks = ranks[:log.ranks]
    if op == "sendrecv" and not args.group:
        ranks = ranks[:2]
    gpus = args.gpus_per_process if args.gpus_per_process_given or log is None else log.gpus_per_process
    results, networks = _simulate(cluster, op, algorithm, ranks, sizes, args, protocol, bool(args.out))
    host = cluster.nccl.host_call_overhead
    times = [_harness_time(r, host, gpus) for r in results]
    if args.out:
        from sim.reports.network import write_collective_run
        write_collective_run(args.out, cluster, networks[-1], results[-1])
    if log is not None:
        _print_comparison(args, op, cluster, ranks, log, results, times, gpus)
        return 0
    if args.json:
        for result, time_s in zip(results, times):
            print(json.dumps({**result.as_dict(), "measured_like_time_s": time_s,
                              "gpus_per_process": gpus}))
        return 0
    _print_table(op, cluster, ranks, results, times, gpus)
    return 0


def _print_table(op, cluster, ranks, results, times, gpus) -> None:
    from sim.network.collectives import BUSBW_FACTOR
    from sim.network.nccl_tests import header, row_text
    print("\n".join(header(op, len(ranks), gpus, f"{cluster.name}")))
    factor = BUSBW_FACTOR[op](len(ranks))
    for result, time_s in zip(results, times):
        algbw = result.nbytes / time_s if time_s > 0 else 0.0
        print(row_text(op, int(result.nbytes), time_s, algbw, algbw * factor, result.algorithm,
                       result.protocol))


def _print_comparison(args, op, cluster, ranks, log, results, times, gpus) -> None:
    from sim.cli.format import format_bytes
    print(f"# {args.nccl_tests}: {op} on {len(ranks)} ranks of {cluster.name}, {gpus} GPU(s) per process")
    print(f"# {'size':>10}  {'measured':>10}  {'predicted':>10}  {'error':>7}  {'busbw meas':>10}  "
          f"{'busbw pred':>10}  {'algorithm':>14}  {'protocol':>8}")
    print(f"# {'(B)':>10}  {'(us)':>10}  {'(us)':>10}  {'':>7}  {'(GB/s)':>10}  {'(GB/s)':>10}")
    errors = []
    from sim.network.collectives import BUSBW_FACTOR
    factor = BUSBW_FACTOR[op](len(ranks))
    for row, result, time_s in zip(log.rows, results, times):
        error = (time_s - row.time_s) / row.time_s
        errors.append(abs(error))
        busbw = result.nbytes / time_s * factor if time_s > 0 else 0.0
        print(f"{row.size_bytes:>12}  {row.time_s * 1e6:>10.2f}  {time_s * 1e6:>10.2f}  {error * 100:>+6.1f}%  "
              f"{row.busbw_bytes_per_s / 1e9:>10.2f}  {busbw / 1e9:>10.2f}  {result.algorithm:>14}  "
              f"{result.protocol or '-':>8}")
    print(f"# {len(errors)} sizes ({format_bytes(log.rows[0].size_bytes)} .. "
          f"{format_bytes(log.rows[-1].size_bytes)}): mean |error| of time {sum(errors) / len(errors) * 100:.1f}%, "
          f"worst {max(errors) * 100:.1f}%")


class _GpusAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.gpus_per_process_given = True


def register(sub) -> None:
    coll = sub.add_parser(
        "collective", help="time a collective on a topology (nccl-tests-style table)",
        description="Simulate one collective per size on a cluster topology and print it as nccl-tests "
                    "does: size, count, type, time, algbw, busbw (nccl-tests' bus-bandwidth factors), "
                    "plus the algorithm and protocol that ran. With --nccl-tests, read a saved "
                    "nccl-tests log and print predicted against measured times.",
        epilog="Examples:\n"
               "  accsim collective --topology dgx_a100 --op all-reduce --bytes 8:4GiB\n"
               "  accsim collective --topology dgx_h100 --op allreduce --algorithm nccl_ring --protocol LL128 --bytes 1MiB:64MiB\n"
               "  accsim collective --topology ring:8 --op allreduce --algorithm ring --bytes 1GiB\n"
               "  accsim collective --topology dgx_a100 --nccl-tests all_reduce_perf.log\n"
               "Algorithms: nccl (NCCL's tuner over nccl_ring, nccl_tree, nvls, nvls_tree, collnet_direct,\n"
               "collnet_chain; all-to-all, scatter, gather, sendrecv as nccl_p2p or nccl_hierarchical), and\n"
               "the alpha-beta models ring, mst, halving_doubling, double_binary_tree, hierarchical, auto.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    coll.add_argument("--topology", required=True,
                      help="YAML file, catalog name (topologies/clusters) or ring:N, fully_connected:N, "
                           "switch:N, tree:N, torus:AxB[xC], cluster:NODESxGPUS")
    coll.add_argument("--op",
                      help="allreduce, reduce_scatter, allgather, broadcast, reduce, scatter, gather, "
                           "alltoall, sendrecv (hyphens accepted); with --nccl-tests, taken from the log")
    coll.add_argument("--algorithm", default="nccl",
                      help="nccl (default: NCCL's own choice), an NCCL algorithm, or an alpha-beta one "
                           "(see below)")
    coll.add_argument("--protocol", default="auto", help="NCCL protocol: LL, LL128, Simple or auto (default)")
    coll.add_argument("--bytes", action="append", metavar="SIZE",
                      help="message size (4096, 64MiB) or a range LOW:HIGH[:FACTOR] (doubling by default); "
                           "repeatable; at most 1,000 sizes")
    coll.add_argument("--group", help="ranks taking part, in ring order: 0,1,2 or 0-7 or 0:64:8 (default: all)")
    coll.add_argument("--gpus-per-process", type=int, default=1, action=_GpusAction, metavar="G",
                      help="GPUs one host thread drives, as nccl-tests -g G: times are at least G calls "
                           "of the cluster's nccl.host_call_overhead (default 1; with --nccl-tests, the log's nGpus)")
    coll.add_argument("--nccl-tests", metavar="FILE",
                      help="a saved nccl-tests log (all_reduce_perf etc.): predict each of its sizes and "
                           "print predicted against measured times")
    coll.add_argument("--link-bandwidth", type=float, metavar="BYTES_PER_S",
                      help="set every link's bandwidth (bytes/s per direction)")
    coll.add_argument("--link-latency", type=float, metavar="SECONDS", help="set every link's latency")
    coll.add_argument("--gamma", type=float, default=0.0, metavar="S_PER_BYTE",
                      help="reduction cost of the alpha-beta algorithms, seconds per byte reduced (default 0)")
    coll.add_argument("--ecmp", action="store_true", help="spread flows over equal-cost paths")
    coll.add_argument("--json", action="store_true", help="one JSON object per size")
    coll.add_argument("--out", metavar="DIR",
                      help="write timeline.arrow, utilization.arrow (per link) and summary.json for the last size")
    coll.set_defaults(func=cmd_collective, gpus_per_process_given=False)
