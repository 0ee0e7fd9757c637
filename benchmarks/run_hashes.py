"""Exactness check for speed work (issue 13): one hash per shipped scenario's
run directory, so a change meant to be faster can be shown to change no output.

    python benchmarks/run_hashes.py OUT.json                 # hash 13 runs, write them
    python benchmarks/run_hashes.py OUT.json --against BEFORE.json   # and compare

Each case runs ``python -m sim run SCENARIO [--set ...] --out DIR`` in a fresh
process (large scenarios reduced with ``--set``, e.g. GPT-3 175B at a global
batch of 64) and hashes its Arrow files byte for byte and its summary.json
without the keys that measure the simulator itself (``wall_s``,
``ops_per_wall_s``, ``provenance``). Take BEFORE.json on the commit before the
change, OUT.json after; every hash must match. About a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "quickstart": ["quickstart.yaml"],
    "quickstart.full": ["quickstart.yaml", "--set", "training.fidelity=full"],
    "llama2_70b": ["llama2_70b_64_h100.yaml"],
    "gpt3_175b.small": ["gpt3_175b_1024_a100.yaml", "--set", "parallel.global_batch=64"],
    "gpt_1t.small": ["gpt_1t_3072_a100.yaml", "--set", "parallel.global_batch=48"],
    "mixtral": ["mixtral_8x7b_moe.yaml"],
    "long_context_cp": ["long_context_cp.yaml"],
    "zero_offload": ["zero_offload.yaml"],
    "pipeline_ideal": ["pipeline_ideal.yaml"],
    "astra64.full": ["astra_sim_gpt_1024.yaml", "--set", "cluster=ring:64", "--set", "parallel.dp=8"],
    "chakra_pipeline": ["chakra_pipeline.yaml"],
    "npu_scratchpad": ["npu_scratchpad.yaml"],
    "resnet50_tpu": ["resnet50_tpu.yaml"],
}
VOLATILE = {"wall_s", "ops_per_wall_s", "provenance"}


def digest(run_dir: Path) -> str:
    """SHA-256 (first 16 hex digits) of a run directory's files, summary without VOLATILE keys."""
    h = hashlib.sha256()
    for f in sorted(run_dir.iterdir()):
        if f.suffix == ".json":
            data = json.loads(f.read_text())
            if isinstance(data, dict):
                for key in VOLATILE:
                    data.pop(key, None)
            h.update(json.dumps(data, sort_keys=True).encode())
        else:
            h.update(f.read_bytes())
        h.update(f.name.encode())
    return h.hexdigest()[:16]


def run_case(args: list[str]) -> str:
    scenario, rest = f"scenarios/{args[0]}", args[1:]     # relative: paths recorded in outputs match
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        proc = subprocess.run([sys.executable, "-m", "sim", "run", scenario, *rest, "--out", str(out)],
                              capture_output=True, text=True, cwd=ROOT, env={**os.environ, "ACCSIM_QUIET": "1"})
        if proc.returncode != 0:
            return f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
        return digest(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="JSON file to write the hashes to")
    parser.add_argument("--against", help="hashes written before the change: report every difference")
    args = parser.parse_args()
    hashes = {}
    for name, case in CASES.items():
        hashes[name] = run_case(case)
        print(f"{name:18s} {hashes[name]}", flush=True)
    Path(args.out).write_text(json.dumps(hashes, indent=1) + "\n")
    if args.against:
        before = json.loads(Path(args.against).read_text())
        differ = [name for name in hashes if before.get(name) != hashes[name]]
        print("all equal" if not differ else f"DIFFER: {', '.join(differ)}")
        sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
