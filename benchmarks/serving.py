"""Simulator speed on serving: requests with ShareGPT-like lengths on 8 GPUs under
continuous batching (vLLM's prefill-first scheduler, paged KV cache).

    python benchmarks/serving.py [--only 70b-10k|70b-100k|7b-10k|7b-100k]

Cases: Llama-2 70B on one DGX H100 as a single tensor-parallel-8 replica
(scenarios/serve_llama2_70b_h100.yaml), and Llama-2 7B as eight single-GPU
replicas behind a round-robin router; 10,000 and 100,000 requests each, Poisson
arrivals at a rate each configuration sustains. Targets (issue 12): 10,000
requests in at most 10 s and 100,000 in at most 60 s of wall time. Each case
runs in a fresh process; wall time covers loading the scenario, drawing the
requests, simulating, and building the tables and metrics; ``cpu`` is the
process's CPU time (user + system), which a busy machine does not inflate.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LLAMA_7B = {"name": "llama2-7b", "layers": 32, "hidden": 4096, "heads": 32, "ffn_hidden": 11008,
            "gated_mlp": True, "seq_len": 4096, "vocab": 32000}
CASES = {
    "70b-10k": ("70B, 1 x TP 8", 10_000, 12.0),
    "70b-100k": ("70B, 1 x TP 8", 100_000, 12.0),
    "7b-10k": ("7B, 8 x TP 1", 10_000, 80.0),
    "7b-100k": ("7B, 8 x TP 1", 100_000, 80.0),
}


def scenario(name: str) -> tuple[dict, list[str]]:
    import yaml
    _, count, rate = CASES[name]
    raw = yaml.safe_load((ROOT / "scenarios/serve_llama2_70b_h100.yaml").read_text())
    if name.startswith("7b"):
        raw["model"] = dict(LLAMA_7B)
        raw["serving"]["tp"] = 1
        raw["serving"]["replicas"] = 8
    sets = [f"serving.requests.count={count}", f"serving.requests.arrivals.rate_per_s={rate}"]
    return raw, sets


def case(name: str) -> None:
    import sim
    from sim.runtime.scenario import load_scenario_dict
    start = time.perf_counter()
    raw, sets = scenario(name)
    result = sim.run(load_scenario_dict(raw, sets, base=ROOT / "scenarios"))
    wall = time.perf_counter() - start
    s = result.summary
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"case": name, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "simulation_s": s["wall_s"], "iterations": s["iterations"],
                      "events": s["events"], "finished": s["finished"], "mean_batch": s["mean_batch_size"],
                      "tpot_p50_s": s["tpot_s"]["p50"], "ttft_p50_s": s["ttft_s"]["p50"],
                      "tokens_per_s": s["throughput_tokens_per_s"],
                      "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(CASES))
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        case(args.case)
        return 0
    print(f"{'case':<10} {'config':<14} {'requests':>8} {'iterations':>10} {'wall':>8} {'cpu':>8} {'sim':>8} "
          f"{'RSS':>8} {'target':>8}")
    for name in ([args.only] if args.only else list(CASES)):
        proc = subprocess.run([sys.executable, __file__, "--case", name], capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr, file=sys.stderr)
            return 1
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        config, count, _ = CASES[name]
        target = 10.0 if count <= 10_000 else 60.0
        print(f"{name:<10} {config:<14} {count:>8} {row['iterations']:>10} {row['wall_s']:>7.1f}s "
              f"{row['cpu_s']:>7.1f}s {row['simulation_s']:>7.1f}s {row['peak_rss_gib']:>6.2f}Gi {target:>6.0f}s "
              f"{'met' if row['wall_s'] <= target else 'MISSED'}")
        print(f"           TPOT p50 {1e3 * row['tpot_p50_s']:.1f} ms, TTFT p50 {1e3 * row['ttft_p50_s']:.1f} ms, "
              f"{row['tokens_per_s']:.0f} tokens/s, mean batch {row['mean_batch']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
