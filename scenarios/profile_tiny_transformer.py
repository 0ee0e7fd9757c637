"""Profile a few training steps of a tiny transformer with the PyTorch profiler (on CPU).

    pip install torch          # only for this script: torch is not an accsim dependency
    python scenarios/profile_tiny_transformer.py [--out traces/kineto_tiny_transformer.json.gz]

Writes the Kineto (Chrome trace) JSON that torch.profiler records for two
training steps (after one wait and one warm-up step) of a 2-layer transformer
encoder language model (d_model 64, 4 heads, FFN 128, vocabulary 256, batch 8 x
32 tokens, AdamW), with input shapes recorded, on one CPU thread. The committed
``traces/kineto_tiny_transformer.json.gz`` is its output on the machine accsim
was developed on; import and replay it with

    accsim import kineto traces/kineto_tiny_transformer.json.gz --out runs/tiny.arrow
    accsim run scenarios/kineto_tiny_transformer.yaml --out runs/tiny
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "traces" / "kineto_tiny_transformer.json.gz"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="trace to write (.json or .json.gz)")
    args = parser.parse_args(argv)
    try:
        import torch
        from torch import nn
        from torch.profiler import ProfilerActivity, profile, schedule
    except ImportError:
        print("this script needs PyTorch: pip install torch", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    torch.set_num_threads(1)
    layer = nn.TransformerEncoderLayer(d_model=64, nhead=4, dim_feedforward=128, batch_first=True)
    model = nn.Sequential(nn.Embedding(256, 64), nn.TransformerEncoder(layer, num_layers=2), nn.Linear(64, 256))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, 256, (8, 32))
    targets = torch.randint(0, 256, (8, 32))
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True,
                 schedule=schedule(wait=1, warmup=1, active=2)) as prof:
        for _ in range(4):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(tokens).reshape(-1, 256), targets.reshape(-1))
            loss.backward()
            optimizer.step()
            prof.step()
    prof.export_chrome_trace(str(args.out))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
