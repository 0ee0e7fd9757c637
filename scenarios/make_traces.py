"""Regenerate the example traces in traces/ from their model configs.

    python scenarios/make_traces.py

Shapes, FLOPs and bytes come from sim.workload.transformer (Megatron-LM
shapes); tests/test_example_traces.py checks the committed files equal what
this script writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.memory.offload import coe_switching_ops, zero_offload_ops  # noqa: E402
from sim.memory.workloads import layer_training_ops  # noqa: E402
from sim.workload.trace import write_trace  # noqa: E402
from sim.workload.transformer import ModelConfig, decode_step_ops, training_ops  # noqa: E402

# One layer of GPT-3 2.7B (Brown et al. 2020, Table 2.1: 32 layers, d_model 2560, 32 heads of
# 80) at sequence 2048: forward and backward, microbatch 1.
GPT_LAYER = ModelConfig(name="gpt3-2.7b", layers=32, hidden=2560, heads=32, seq_len=2048,
                        vocab=50257)
# A 24-layer, 1024-hidden decoder (GPT-2 medium shapes, Radford et al. 2019) for decode.
DECODE_MODEL = ModelConfig(name="gpt2-medium", layers=24, hidden=1024, heads=16, seq_len=1024,
                           vocab=50257)

# The experts the router sends 12 requests to, in arrival order.
COE_REQUESTS = [0, 1, 0, 2, 3, 1, 4, 0, 5, 2, 1, 0]


def build() -> dict[str, list]:
    return {
        "gpt_layer_fwd_bwd": training_ops(GPT_LAYER, microbatch=1, layers=1),
        "llm_decode_step": decode_step_ops(DECODE_MODEL, batch=32, context_len=1024, layers=4),
        # Two 1024-hidden layers (GPT-2 medium widths), batch 2 x 256 tokens, forward and backward
        # with true data dependencies: the scratchpad-management example (scenarios/npu_scratchpad.yaml).
        "npu_layer_fwd_bwd": layer_training_ops(layers=2, hidden=1024, heads=16, seq_len=256, batch=2),
        # Samba-CoE-like model switching: 7B-parameter experts (Llama-2-7B size) in DDR, 3 cached in
        # HBM, 12 requests of 16 decode tokens at batch 8; with and without prefetching the next expert.
        "coe_switching": coe_switching_ops(COE_REQUESTS, 6.74e9, 16, 8, hbm_slots=3, prefetch=True),
        "coe_switching_on_demand": coe_switching_ops(COE_REQUESTS, 6.74e9, 16, 8, hbm_slots=3,
                                                     prefetch=False),
        # ZeRO-Offload-like iteration of 24 GPT layers of hidden 2048 (GPT-3 1.3B shapes), sequence
        # 2048, microbatch 1: gradients, optimizer and parameters offloaded; with activations offloaded too.
        "zero_offload_step": zero_offload_ops(24, 2048, 2048, 1, offload_activations=False),
        "zero_offload_step_act": zero_offload_ops(24, 2048, 2048, 1, offload_activations=True),
    }


def main() -> None:
    for stem, ops in build().items():
        for suffix in (".jsonl", ".arrow"):
            write_trace(ops, ROOT / "traces" / f"{stem}{suffix}")
            print(f"wrote traces/{stem}{suffix} ({len(ops)} ops)")


if __name__ == "__main__":
    main()
