"""Unit templates (sim.parallel.emit.replay) give the very trace the emitters give:
the same ops (ids, deps, names, tensors, every field, in order), reservations,
resident tensors and FLOPs, on plans of every schedule, recomputation, sequence
parallelism, ZeRO-1 and offload, folded and full; and they are used."""

from __future__ import annotations

import pytest

import sim
import sim.parallel.emit as emit
import sim.parallel.emit.replay as replay
from sim.parallel.emit import expand_training

VARIANTS = {
    "1f1b": {}, "gpipe": {"schedule": "gpipe"}, "zb-h1": {"schedule": "zb-h1"},
    "zb-h2.recompute": {"schedule": "zb-h2", "recompute": "full"},
    "interleaved.sp": {"schedule": "interleaved", "virtual_stages": 2, "sequence_parallel": True,
                       "recompute": "full"},
    "sync_tp.selective": {"async_tp_allreduce": False, "overlap_grad_reduce": False, "recompute": "selective"},
    "zero1.offload": {"zero": 1, "offload_optimizer": True, "dp_bucket_bytes": "1MiB"},
    "tp1": {"tp": 1, "dp": 4},
}


def _expansions(raw: dict, monkeypatch) -> tuple:
    scenario = sim.load_scenario_dict(raw)
    training = scenario.training
    spec = next(iter(scenario.rank_specs.values()))
    replays = []
    real = replay.Template.replay

    def counted(self, stage, m):
        done = real(self, stage, m)
        replays.append(done)
        return done

    monkeypatch.setattr(replay.Template, "replay", counted)
    out = []
    for templates in (True, False):
        monkeypatch.setattr(emit, "TEMPLATES", templates)
        out.append(expand_training(training.model, training.plan, lambda rank: spec, training.fidelity))
    return out[0], out[1], sum(replays)


@pytest.mark.parametrize("fidelity", ["folded", "full"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_templates_give_the_emitters_trace(variant, fidelity, monkeypatch):
    raw = {"cluster": "cluster:2x8", "device": "a100_sxm4_80gb",
           "model": {"layers": 8, "hidden": 1024, "heads": 16, "seq_len": 512, "vocab": 8192},
           "parallel": {"dp": 2, "tp": 2, "pp": 4, "microbatches": 12, **VARIANTS[variant]},
           "training": {"fidelity": fidelity}}
    copied, emitted, replays = _expansions(raw, monkeypatch)
    assert replays > 0
    assert copied.ops == emitted.ops
    assert [type(op) for op in copied.ops] == [type(op) for op in emitted.ops]
    assert (copied.hardware_flops, copied.resident, copied.stage_of_rank, copied.info) == \
        (emitted.hardware_flops, emitted.resident, emitted.stage_of_rank, emitted.info)
