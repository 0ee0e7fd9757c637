"""``accsim plan``: search the parallel plans of a training scenario.

Enumerates the plans that divide (sim.parallel.search), rejects those that do
not validate or do not fit in memory by the dry-run estimate
(sim.parallel.fit), simulates the rest at folded fidelity through the sweep
engine on Dask (sim.sweeps.runner), prints them ranked and writes every
candidate, rejected ones with their reason, to DIR/candidates.parquet and
DIR/summary.json (whole or not at all; schema in docs/architecture.md).
"""

from __future__ import annotations

import argparse

OBJECTIVES = ("throughput", "memory")
DEFAULT_MAX_CANDIDATES = 200
DIMENSIONS = ("tp", "pp", "cp", "ep", "virtual_stages", "microbatch_size", "zero", "recompute",
              "sequence_parallel")


def _values(option: str, text: str, kind: str) -> tuple:
    """A comma-separated list of ``kind`` values (int, bool, or a recompute mode)."""
    from sim.errors import ScenarioError
    from sim.workload.transformer import RECOMPUTE_MODES
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(not p for p in parts) or len(parts) > 64:
        raise ScenarioError(f"{option}: expected a comma-separated list of values, got {text!r}")
    out = []
    for part in parts:
        if kind == "recompute":
            if part not in RECOMPUTE_MODES:
                raise ScenarioError(f"{option}: expected values among {', '.join(RECOMPUTE_MODES)}, got {part!r}")
            out.append(part)
        elif kind == "bool":
            if part.lower() not in ("true", "false"):
                raise ScenarioError(f"{option}: expected true and/or false, got {part!r}")
            out.append(part.lower() == "true")
        else:
            low, high = (0, 3) if option == "--zero" else (1, 2**20)
            if not (part.isascii() and part.isdigit()) or not low <= int(part) <= high:
                expected = "ZeRO stages 0 to 3" if option == "--zero" else "positive integers"
                raise ScenarioError(f"{option}: expected {expected}, got {part!r}")
            out.append(int(part))
    return tuple(dict.fromkeys(out))


def search_space(args: argparse.Namespace):
    """The SearchSpace the options give (``None`` where not given: the defaults)."""
    from sim.parallel.search import SearchSpace
    kinds = {"recompute": "recompute", "sequence_parallel": "bool"}
    given = {}
    for name in DIMENSIONS:
        text = getattr(args, name)
        if text is not None:
            given[name] = _values(f"--{name.replace('_', '-')}", text, kinds.get(name, "int"))
    return SearchSpace(**given)


def check_options(args: argparse.Namespace) -> None:
    from sim.errors import ScenarioError
    from sim.sweeps.runner import check_options as check_sweep_options
    if args.objective not in OBJECTIVES:
        raise ScenarioError(f"--objective: expected one of {', '.join(OBJECTIVES)}, got {args.objective!r}")
    if not 1 <= args.top <= 10_000:
        raise ScenarioError(f"--top: expected an integer from 1 to 10000, got {args.top}")
    if not 1 <= args.max_candidates <= 100_000:
        raise ScenarioError(f"--max-candidates: expected an integer from 1 to 100000, got {args.max_candidates}")
    check_sweep_options(args.workers, args.timeout, None)


def cmd_plan(args: argparse.Namespace) -> int:
    from sim.parallel.fit import load_training
    from sim.parallel.planner import judge, rank, simulate, summary_of, table_of
    from sim.progress import Progress
    from sim.reports.writer import prepare_output, write_run

    check_options(args)
    space = search_space(args)
    prepare_output(args.out, args.overwrite)          # before any work
    progress = Progress(enabled=not args.quiet)
    with progress.stage(f"loading {args.scenario}"):
        setup = load_training(args.scenario, list(args.set or []))
    with progress.stage("enumerating plans and estimating their memory"):
        judged = judge(setup, space)
    survivors = [j for j in judged if j.reason is None]
    _check_counts(setup, judged, survivors, args.max_candidates)
    results = simulate(setup, survivors, workers=args.workers, timeout_s=args.timeout, progress=not args.quiet)
    ranked = rank(judged, results, args.objective)
    table = table_of(ranked)
    summary = summary_of(setup, ranked, args.objective, space)
    with progress.stage(f"writing {args.out}"):
        write_run(args.out, {"candidates": table}, summary, overwrite=args.overwrite, fmt="parquet",
                  metadata={"accsim.version": _version(), "accsim.objective": args.objective})
    if not args.quiet:
        print_ranking(setup, ranked, summary, args.top, args.objective, args.out)
    return 0


def _version() -> str:
    from sim import __version__
    return __version__


def cmd_dry_run(args: argparse.Namespace) -> int:
    """``accsim run SCENARIO --dry-run``: validate, build the plan, print memory per
    stage against capacity; nothing simulated or written. A plan that does not
    fit is an error (exit 2) unless training.continue_on_oom is set."""
    import json

    from sim.errors import ScenarioError
    from sim.parallel.fit import load_training, overflow_message, plan_fit
    overrides = list(args.set or [])
    if args.fidelity:
        overrides.append(f"training.fidelity={args.fidelity}")
    setup = load_training(args.scenario, overrides)
    fit = plan_fit(setup.model, setup.plan, setup.spec_of_rank)
    if args.json:
        print(json.dumps({"scenario": setup.name, "model": setup.model.name, "gpus": setup.world,
                          "parallel": plan_dict(setup.plan), "fits": fit.fits,
                          "peak_bytes": fit.peak_bytes, "worst_stage": fit.worst.memory.stage,
                          "stages": [s.as_dict() for s in fit.stages]}, indent=2, allow_nan=False))
    elif not args.quiet:
        print("\n".join(dry_run_lines(setup, fit)))
    if not fit.fits and not setup.continue_on_oom:
        raise ScenarioError(f"{setup.path}: {overflow_message(fit)}")
    return 0


def plan_dict(plan) -> dict:
    from dataclasses import asdict
    out = asdict(plan)
    out["mapping"] = ",".join(plan.mapping)
    return out


def plan_line(plan) -> str:
    return (f"tp {plan.tp}, pp {plan.pp}, dp {plan.dp}" + (f", cp {plan.cp}" if plan.cp > 1 else "")
            + (f", ep {plan.ep}" if plan.ep > 1 else "") + f"; {plan.schedule}"
            + (f" x{plan.virtual_stages}" if plan.virtual_stages > 1 else "")
            + f", {plan.microbatches} microbatches of {plan.microbatch_size}, zero {plan.zero}, "
            f"recompute {plan.recompute}" + (", sequence parallel" if plan.sequence_parallel else ""))


def dry_run_lines(setup, fit) -> list[str]:
    """The dry run's printout: one row per pipeline stage, then the verdict."""
    from sim.cli.format import format_bytes
    b = lambda n: format_bytes(n) if n else "0 B"  # noqa: E731
    lines = [f"dry run    {setup.name}: {setup.model.name} on {setup.world} x {setup.device_names} "
             f"({plan_line(setup.plan)})",
             "memory per GPU by pipeline stage (nothing simulated):",
             f"{'stage':>5} {'weights':>10} {'gradients':>10} {'optimizer':>10} {'activations':>11} "
             f"{'buffers':>10} {'in flight':>9} {'peak':>10} {'capacity':>10} {'use':>6}  fits"]
    for s in fit.stages:
        m = s.memory
        lines.append(f"{m.stage:>5} {b(m.weights_bytes):>10} {b(m.gradients_bytes):>10} "
                     f"{b(m.optimizer_bytes):>10} {b(m.activations_bytes):>11} {b(m.buffers_bytes):>10} "
                     f"{m.in_flight:>9} {b(m.total_bytes):>10} {b(s.capacity_bytes):>10} "
                     f"{100 * m.total_bytes / s.capacity_bytes:>5.1f}%  {'yes' if s.fits else 'NO'}")
    host = sum(s.memory.host_bytes for s in fit.stages)
    if host:
        lines.append(f"optimizer state offloaded to host memory: {b(max(s.memory.host_bytes for s in fit.stages))} "
                     f"per GPU at most")
    worst = fit.worst
    if fit.fits:
        lines.append(f"the plan fits: peak {b(worst.memory.total_bytes)} per GPU (stage {worst.memory.stage}) "
                     f"of {b(worst.capacity_bytes)} of {worst.tier}")
    else:
        over = fit.overflow()
        lines.append(f"the plan does NOT fit: stage {over.memory.stage} needs {b(over.memory.total_bytes)} of "
                     f"{b(over.capacity_bytes)} of {over.tier}"
                     + ("; training.continue_on_oom is set, so a run would go on" if setup.continue_on_oom else ""))
    return lines


def _check_counts(setup, judged, survivors, max_candidates: int) -> None:
    from sim.errors import ScenarioError
    where = str(setup.path)
    if not judged:
        raise ScenarioError(f"{where}: no plan of the search space divides the {setup.world} devices and the "
                            f"global batch of {setup.plan.global_batch}; widen the values given")
    if not survivors:
        best = min(judged, key=lambda j: j.peak_bytes if j.peak_bytes is not None else float("inf"))
        raise ScenarioError(f"{where}: none of the {len(judged)} plans is valid and fits; the first reason: "
                            f"{best.reason}")
    if len(survivors) > max_candidates:
        raise ScenarioError(f"{where}: {len(survivors)} plans fit in memory, more than --max-candidates "
                            f"{max_candidates}; narrow the search (e.g. --tp 4,8 --zero 1 --recompute selective) "
                            f"or raise --max-candidates")


def print_ranking(setup, ranked, summary: dict, top: int, objective: str, out_dir) -> None:
    from sim.cli.format import format_bytes, format_seconds, format_si
    counts = summary["counts"]
    print(f"plan       {setup.name}: {setup.model.name} on {setup.world} x {setup.device_names}, global batch "
          f"{setup.plan.global_batch}; {counts['enumerated']} plans, {counts['rejected']} rejected, "
          f"{counts['simulated']} simulated ({counts['ok']} ok)")
    key = "tokens/s" if objective == "throughput" else "peak memory"
    print(f"ranked by {key} (objective {objective}); top {min(top, counts['ok'])}:")
    header = (f"{'rank':>4}  {'dp':>4} {'tp':>3} {'pp':>3} {'v':>2} {'cp':>3} {'ep':>3} {'mbs':>3} {'zero':>4} "
              f"{'recompute':<9} {'sp':<3} {'iteration':>10} {'tokens/s':>13} {'FLOP/s/GPU':>13} {'MFU':>6} "
              f"{'peak mem':>10}")
    print(header)
    for row in ranked:
        if row.rank is None or row.rank > top:
            continue
        c, r = row.candidate, row.result
        print(f"{row.rank:>4}  {c.dp:>4} {c.tp:>3} {c.pp:>3} {c.virtual_stages:>2} {c.cp:>3} {c.ep:>3} "
              f"{c.microbatch_size:>3} {c.zero:>4} {c.recompute:<9} {'yes' if c.sequence_parallel else 'no':<3} "
              f"{format_seconds(r['iteration_time_s']):>10} {format_si(r['tokens_per_s'], 'tok/s'):>13} "
              f"{format_si(r['model_flops_per_gpu_per_s'], 'FLOP/s'):>13} {100 * r['mfu']:>5.1f}% "
              f"{format_bytes(r['peak_memory_per_gpu_bytes']):>10}")
    print(f"wrote {out_dir}/candidates.parquet ({counts['enumerated']} rows, rejected ones with their reason), "
          f"summary.json")


def register(sub) -> None:
    p = sub.add_parser(
        "plan", help="search parallel plans: enumerate, reject what does not fit, simulate, rank",
        description="Enumerate the parallel plans of a training scenario's model on its cluster and global "
                    "batch (dp, tp, pp, virtual stages, microbatch size, ZeRO stage, recompute, sequence "
                    "parallelism, and cp / ep where the model allows), reject those that do not divide, "
                    "do not validate or do not fit in memory (the dry run's estimate, as accsim run "
                    "--dry-run), simulate the survivors at folded fidelity on a Dask cluster, print them "
                    "ranked and write DIR/candidates.parquet (every candidate, rejected ones with the "
                    "reason) and DIR/summary.json, whole or not at all.",
        epilog="Example: accsim plan scenarios/plan_gpt_13b_64_a100.yaml --out runs/plan --workers 2. "
               "Dimension options take comma-separated values (--tp 4,8 --recompute selective,full); "
               "dimensions not given take every value that divides (tp up to 8).")
    p.add_argument("scenario", help="training scenario YAML (or a shipped scenario's name); its model, "
                                    "cluster and global batch are kept, its plan is searched")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output directory: created; if it exists it must be empty (see --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in DIR")
    p.add_argument("--objective", default="throughput", metavar="{throughput,memory}",
                   help="rank by simulated tokens/s, highest first (throughput, default), or by simulated "
                        "peak memory per GPU, lowest first (memory)")
    p.add_argument("--top", type=int, default=10, metavar="N", help="plans printed (default 10; the "
                                                                     "Parquet file has all)")
    p.add_argument("--workers", type=int, metavar="N", help="Dask worker processes (default: the CPU count)")
    p.add_argument("--timeout", type=float, metavar="S", help="per-plan simulation time limit in seconds")
    p.add_argument("--max-candidates", type=int, default=DEFAULT_MAX_CANDIDATES, metavar="N",
                   help=f"refuse to simulate more than N plans (default {DEFAULT_MAX_CANDIDATES})")
    p.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                   help="override a scenario key before validation; repeatable")
    for name in DIMENSIONS:
        flag = f"--{name.replace('_', '-')}"
        example = {"recompute": "none,selective,full", "sequence_parallel": "false,true",
                   "zero": "0,1,2,3"}.get(name, "1,2,4")
        p.add_argument(flag, dest=name, metavar="LIST", help=f"values of {name} to search (e.g. {example})")
    p.add_argument("--quiet", action="store_true", help="print nothing on success (no progress either)")
    p.set_defaults(func=cmd_plan)
