"""The training expansion's traces stay identical across refactors.

``tests/data/expansion_fingerprints.json`` holds, for every shipped training
scenario (snapshotted as the mapping it was when the fingerprints were taken)
and the folded / full variants the other tests use, a SHA-256 fingerprint of
the generated trace: every field of every op, the resident tensors and the
memory model per stage. The fingerprints were computed from the expansion
before it was split into per-technique emitters (sim/parallel/emit/), so a
change to the emitters that alters any existing trace fails here.

Compute segments are priced by ``layer_segments`` (the kernel models, owned
elsewhere and free to change): an op whose (flops, bytes, duration) equals a
segment's is fingerprinted by the segment's key instead of the numbers, so the
check covers which segment each op carries without freezing the kernel models;
other compute ops (optimizer step, MoE segments) keep their FLOPs and bytes
but not their priced duration.

Regenerate (only when a trace is meant to change, saying why in the commit):
``python tests/test_expansion_identity.py --write``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "expansion_fingerprints.json"


def _small(cluster, parallel, fidelity="folded", **model):
    return {"cluster": cluster, "device": "a100_sxm4_80gb",
            "model": {"layers": 8, "hidden": 1024, "heads": 16, "seq_len": 512, "vocab": 8192, **model},
            "parallel": parallel, "training": {"fidelity": fidelity}}


def cases() -> dict[str, dict]:
    """The mappings fingerprinted (read from the shipped files when regenerating)."""
    import yaml
    root = HERE.parent
    shipped = {}
    for path in sorted((root / "scenarios").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        if isinstance(raw, dict) and "model" in raw and "serving" not in raw:   # training, not serving
            shipped[path.stem] = raw
    # the speed benchmark's copy of scenarios/validation/gpt_1t_3072_a100.yaml (issue 13): a million
    # ops would add minutes to every test run, and gpt3_175b_1024_a100 covers the same expansion
    shipped.pop("gpt_1t_3072_a100", None)
    out = dict(shipped)
    out["quickstart.full"] = {**shipped["quickstart"], "training": {"fidelity": "full"}}
    for schedule, v, m in (("gpipe", 1, 8), ("interleaved", 2, 8)):
        ideal = shipped["pipeline_ideal"]
        out[f"pipeline_ideal.{schedule}"] = {**ideal, "parallel": {**ideal["parallel"], "schedule": schedule,
                                                                     "virtual_stages": v, "microbatches": m}}
    flops = {"dp": 2, "tp": 2, "pp": 2, "microbatches": 4, "recompute": "full"}
    out["flops.folded"] = _small("ideal", flops)
    out["flops.full"] = _small("ideal", flops, "full")
    big = {"cluster": "cluster:8x8", "device": "a100_sxm4_80gb",
           "model": {"layers": 16, "hidden": 2048, "heads": 16, "seq_len": 1024, "vocab": 32000},
           "parallel": {"dp": 2, "tp": 4, "pp": 8, "microbatches": 8, "schedule": "1f1b"}}
    out["64gpu.folded"] = {**big, "training": {"fidelity": "folded"}}
    out["64gpu.full"] = {**big, "training": {"fidelity": "full"}}
    llama_like = {"dp": 2, "tp": 2, "pp": 2, "virtual_stages": 2, "schedule": "interleaved", "microbatches": 4,
                  "sequence_parallel": True, "zero": 1, "recompute": "selective", "dp_bucket_bytes": "4MiB"}
    out["sp_zero1_interleaved.folded"] = _small("cluster:2x4", llama_like, kv_heads=4, gated_mlp=True,
                                                ffn_hidden=2816)
    out["sp_zero1_interleaved.full"] = _small("cluster:2x4", llama_like, "full", kv_heads=4, gated_mlp=True,
                                              ffn_hidden=2816)
    out["mapping_dp_first.full"] = _small("cluster:2x4", {"dp": 2, "tp": 2, "pp": 2, "microbatches": 3,
                                                          "mapping": "dp,tp,pp", "schedule": "gpipe"}, "full")
    out["no_vocab_tp.full"] = _small("cluster:1x8", {"dp": 2, "tp": 4, "microbatches": 2, "recompute": "full"},
                                     "full", vocab=0)
    out["zero3_prefetch.full"] = _small("cluster:1x8", {"dp": 4, "tp": 2, "microbatches": 2, "zero": 3}, "full")
    out["hybrid_offload.full"] = _small("cluster:1x8", {"dp": 4, "tp": 2, "microbatches": 2, "zero": 2,
                                                        "shard_group": 2, "offload_optimizer": True}, "full")
    out["zb_h2_zero3.folded"] = _small("cluster:2x4", {"dp": 2, "pp": 4, "microbatches": 8, "zero": 3,
                                                       "schedule": "zb-h2", "recompute": "full"})
    out["moe_skewed_zb.full"] = _small("cluster:2x4", {"dp": 2, "tp": 2, "pp": 2, "microbatches": 4, "ep": 4,
                                                       "sequence_parallel": True, "zero": 1, "schedule": "zb-h1"},
                                       "full", gated_mlp=True,
                                       moe={"experts": 8, "top_k": 2, "routing_alpha": 1.0, "shared_experts": 1,
                                            "first_dense_layers": 1, "capacity_factor": 1.5})
    out["cp_ring_unbalanced.full"] = _small("cluster:2x4", {"dp": 1, "tp": 2, "cp": 2, "pp": 2, "microbatches": 4,
                                                            "sequence_parallel": True, "cp_load_balance": False,
                                                            "recompute": "full"}, "full", seq_len=2048)
    out["cp_allgather_zero3.folded"] = _small("cluster:2x4", {"dp": 2, "tp": 2, "cp": 2, "microbatches": 2,
                                                              "sequence_parallel": True, "cp_algorithm": "allgather",
                                                              "zero": 3}, seq_len=2048)
    return out


def fingerprint(raw: dict) -> str:
    import sim
    from sim.workload.trace import CONV_FIELDS
    from sim.parallel.expand import layer_segments

    scenario = sim.load_scenario_dict(raw)
    training = scenario.training
    keys: dict[tuple, str] = {}
    for spec in {spec.name: spec for spec in scenario.rank_specs.values()}.values():
        segments = layer_segments(training.model, training.plan, spec)
        if training.plan.cp > 1:
            from sim.parallel.emit.context import layer_segments as context_segments
            segments = context_segments(training.model, training.plan, spec)
        for key, seg in segments.items():
            keys.setdefault((seg.flops, seg.bytes_read, seg.bytes_written, seg.duration_s), f"{spec.name}:{key}")
    digest = hashlib.sha256()
    for op in training.expansion.ops:
        record = op.fields()
        for name in CONV_FIELDS:  # optional fields added after the fingerprints were taken
            if record[name] is None:
                del record[name]
        segment = keys.get((op.flops, op.bytes_read, op.bytes_written, op.duration_s))
        if segment is not None and not op.group:
            for field in ("flops", "bytes_read", "bytes_written", "duration_s"):
                del record[field]
            record["segment"] = segment
        elif op.op in ("gemm", "elementwise") and not op.group:
            del record["duration_s"]
        digest.update(json.dumps(record, sort_keys=True).encode())
    digest.update(json.dumps(sorted((r, sorted(v.items())) for r, v in training.expansion.resident.items())).encode())
    digest.update(json.dumps(sorted(training.expansion.stage_of_rank.items())).encode())
    base = ("stage", "weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes",
            "in_flight_microbatches", "total_bytes")  # the keys every plan has
    digest.update(json.dumps([{k: m.as_dict()[k] for k in base} for m in training.memory],
                             sort_keys=True).encode())
    return digest.hexdigest()


def _stored() -> dict:
    return json.loads(DATA.read_text())


@pytest.mark.parametrize("name", sorted(_stored()))
def test_expansion_trace_is_unchanged(name):
    entry = _stored()[name]
    assert fingerprint(entry["scenario"]) == entry["sha256"], (
        f"{name}: the generated trace changed (see this module's docstring)")


def test_every_shipped_training_scenario_is_fingerprinted():
    stored = _stored()
    shipped = [name for name, raw in cases().items() if "." not in name]
    assert shipped and all(name in stored for name in shipped)


if __name__ == "__main__" and "--write" in sys.argv:
    existing = _stored() if DATA.exists() else {}
    for name, raw in cases().items():
        if name in existing and "--all" not in sys.argv:
            continue
        existing[name] = {"scenario": raw, "sha256": fingerprint(raw)}
        print(name, existing[name]["sha256"][:16], flush=True)
    DATA.write_text(json.dumps(existing, indent=1, sort_keys=True) + "\n")
