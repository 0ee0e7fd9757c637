"""Simulator speed on large training jobs (folded fidelity): wall time and peak
memory of the simulator for GPT-3 175B on 1,024 A100s (scenarios/gpt3_175b_1024_a100.yaml)
and a 1T-parameter model on 3,072 A100s (scenarios/validation/gpt_1t_3072_a100.yaml: Megatron-LM SC'21
Table 1, 128 layers, hidden 25600, 160 heads; TP 8, PP 64, DP 6, global batch 3072).

    python benchmarks/parallel.py [--only 175b|1t]

Targets (issue 4): 175B/1024 under 30 s and 1T/3072 under 120 s of wall time.
Each case runs in a fresh process so peak RSS is the case's own.
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

SCENARIOS = {"175b": "gpt3_175b_1024_a100.yaml", "1t": "validation/gpt_1t_3072_a100.yaml"}


def case(name: str) -> None:
    import sim
    start = time.perf_counter()
    scenario = sim.load_scenario(ROOT / "scenarios" / SCENARIOS[name])
    built = time.perf_counter() - start
    result = sim.run(scenario)
    total = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s = result.summary
    print(json.dumps({"case": name, "wall_s": round(total, 2), "build_s": round(built, 2),
                      "simulate_s": round(s["wall_s"], 2), "peak_rss_mib": round(peak_mib),
                      "ops": s["ops"], "events": s["events"], "iteration_time_s": s["iteration_time_s"],
                      "model_flops_per_gpu_per_s": s["model_flops_per_gpu_per_s"], "mfu": s["mfu"],
                      "bubble_fraction": s["bubble_fraction"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["175b", "1t"])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        case(args.case)
        return
    for name in ([args.only] if args.only else ["175b", "1t"]):
        proc = subprocess.run([sys.executable, __file__, "--case", name], capture_output=True, text=True)
        print(proc.stdout.strip() or proc.stderr.strip()[-2000:])


if __name__ == "__main__":
    main()
