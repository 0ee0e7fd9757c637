"""The speed tools of issue 13 run as documented (docs/performance.md): the
per-phase profile prints every phase of a generated training run, and the
run-directory hash ignores only what measures the simulator itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_phases_prints_every_phase_of_a_training_run():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "phases.py"),
                           str(ROOT / "scenarios" / "quickstart.yaml"), "--set", "parallel.pp=2"],
                          capture_output=True, text=True, check=True)
    labels = [line.split("  ")[0].strip() for line in proc.stdout.splitlines()[1:-1]]
    assert labels == ["imports", "trace generation", "trace validation", "simulation set-up", "event loop",
                      "tables", "training summary", "energy"]
    assert "peak RSS" in proc.stdout.splitlines()[-1]


def test_run_hash_ignores_wall_clock_but_not_results(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from run_hashes import digest
    finally:
        sys.path.pop(0)
    run = tmp_path / "run"
    run.mkdir()
    (run / "timeline.arrow").write_bytes(b"rows")
    (run / "summary.json").write_text(json.dumps({"iteration_time_s": 1.0, "wall_s": 3.0}))
    first = digest(run)
    (run / "summary.json").write_text(json.dumps({"iteration_time_s": 1.0, "wall_s": 9.0}))
    assert digest(run) == first
    (run / "summary.json").write_text(json.dumps({"iteration_time_s": 1.5, "wall_s": 9.0}))
    assert digest(run) != first
