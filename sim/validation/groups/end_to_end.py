"""End-to-end training throughput against published runs."""

from __future__ import annotations

from sim.validation import Group, Point


def _tflops_per_gpu(scenario: str) -> float:
    import sim
    from sim.paths import scenario_path
    return sim.run(scenario_path(scenario)).summary["model_flops_per_gpu_per_s"] / 1e12


def group() -> Group:
    source = "Narayanan et al., Megatron-LM, SC'21, Sec. 5.1 and Table 1"
    return Group(
        name="end_to_end",
        title="Training throughput of published runs",
        description=(
            "Model FLOP/s per GPU as Megatron-LM counts them (their Eq. 3, which includes the "
            "recomputed forward pass): `summary.json`'s `model_flops_per_gpu_per_s`."),
        points=(
            Point("GPT-3 175B, 1,024 A100, TP 8 PP 16 DP 8, batch 1536", 140.0, "TFLOP/s per GPU",
                  source, "calibration", lambda: _tflops_per_gpu("gpt3_175b_1024_a100.yaml"),
                  "accsim run scenarios/gpt3_175b_1024_a100.yaml --out runs/gpt3"),
        ),
        mape_tolerance=0.05, max_tolerance=0.05)
