"""Scenarios, plans, models and overrides through the validation layer (sim.schema):
real booleans, bounded integers, errors that name the user's file and key."""

import dataclasses
import inspect
import json

import pytest

import sim
from sim.errors import AccsimError, ScenarioError, TraceError
from sim.parallel.plan import ModelSchema, ParallelSchema
from sim.runtime.scenario import MAX_GENERATED_OPS, ScenarioFile, apply_overrides
from sim.workload.transformer import ModelConfig

from conftest import ROOT

QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
SMALL = {"cluster": "ideal", "device": "a100_sxm4_80gb",
         "model": {"layers": 4, "hidden": 512, "heads": 8, "seq_len": 256, "vocab": 1000},
         "parallel": {"pp": 2, "microbatches": 2}}


def error_of(path=QUICKSTART, overrides=()):
    with pytest.raises(AccsimError) as info:
        sim.load_scenario(path, overrides)
    message = str(info.value)
    assert "\n" not in message and len(message) <= 400
    return message


@pytest.mark.parametrize("override, expected", [
    ('training.continue_on_oom="false"', "quickstart.yaml: training.continue_on_oom: expected true or false, got 'false'"),
    ("parallel.dp=abc", "quickstart.yaml: parallel.dp: expected an integer, got 'abc'"),
    ("parallel.dpp=2", "quickstart.yaml: parallel: unknown key 'dpp'"),
    ("model.layers=9223372036854775808", "quickstart.yaml: model.layers: expected an integer within int64"),
    ("model.layers=1e9", "quickstart.yaml: model.layers: expected at most 100000"),
    ("parallel.schedule=zigzag", "quickstart.yaml: parallel.schedule: expected one of gpipe, 1f1b, interleaved"),
    ("parallel.tp_algorithm=foo", "quickstart.yaml: parallel.tp_algorithm: unknown algorithm 'foo'"),
    ("model.dtype=int4", "quickstart.yaml: model.dtype: expected one of"),
    ("model.dtype=fp64", "quickstart.yaml: model.dtype: A100-SXM4-80GB's SM array vector has no fp64 peak"),
    ("model.kv_heads=3", "quickstart.yaml: model: heads 16 is not a multiple of kv_heads 3"),
    ("outputs.link_rows=maybe", "quickstart.yaml: outputs.link_rows: expected auto, true or false"),
    ("memory.resident_bytes.hbm=inf", "quickstart.yaml: memory.resident_bytes.hbm: expected a quantity"),
    ("colour=red", "quickstart.yaml: unknown key 'colour'"),
    ("device_overrides.sm_array.count=0", "quickstart.yaml: device_overrides: sm_array.count"),
    ("name=" + "[" * 100, "--set name: nested deeper than 64 levels"),
])
def test_bad_values_name_the_file_and_key(override, expected):
    assert error_of(overrides=[override]).endswith(expected) or expected in error_of(overrides=[override])


def test_a_string_false_never_runs_an_out_of_memory_plan():
    huge = ["model.layers=96", "model.hidden=12288", "model.heads=96"]
    assert "does not fit in memory" in error_of(overrides=huge + ["training.continue_on_oom=false"])
    assert "expected true or false" in error_of(overrides=huge + ['training.continue_on_oom="false"'])


def test_device_override_errors_name_the_scenario_not_the_catalog_file():
    message = error_of(overrides=["device_overrides.sm_array.count=-4"])
    assert message.startswith(f"{QUICKSTART}: device_overrides:") and "topologies/devices" not in message


def test_plan_algorithms_must_implement_the_collectives_the_plan_issues():
    message = error_of(overrides=["parallel.tp_algorithm=hierarchical", "parallel.sequence_parallel=true"])
    assert "parallel.tp_algorithm: hierarchical does not implement reduce_scatter" in message


def test_generated_iterations_are_bounded_before_expanding():
    message = error_of(overrides=["parallel.global_batch=null", "parallel.microbatches=1000000"])
    assert f"more than {MAX_GENERATED_OPS:,}" in message


def test_ideal_clusters_are_bounded():
    raw = dict(SMALL, parallel={"dp": 2**10, "tp": 2**10, "pp": 2, "microbatches": 2})
    with pytest.raises(ScenarioError, match="cluster: ideal is sized by dp x tp x pp"):
        sim.load_scenario_dict(raw)


def test_rank_without_a_cluster_is_refused(tmp_path):
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps({"id": i, "name": f"op{i}", "op": "elementwise", "flops": 1e6,
                                         "bytes_read": 1e3, "bytes_written": 1e3, "rank": i}) + "\n"
                             for i in range(2)))
    with pytest.raises(TraceError, match=r"op 1 \(op1\) is on rank 1; ranks and collectives need a cluster"):
        sim.load_scenario_dict({"device": "a100_sxm4_80gb", "trace": str(trace)})
    scenario = sim.load_scenario_dict({"cluster": "switch:2", "device": "a100_sxm4_80gb", "trace": str(trace)})
    assert sorted(scenario.trace.ranks) == [0, 1]


def test_model_schema_has_every_model_config_field():
    """A model option added to ModelConfig needs a field (type, bounds) in ModelSchema."""
    assert set(ModelSchema.model_fields) == {f.name for f in dataclasses.fields(ModelConfig)}


def test_scenario_schema_structure():
    assert set(ScenarioFile.model_fields) >= {"device", "trace", "cluster", "model", "parallel", "training"}
    assert ParallelSchema().microbatch_size == 1


def test_overrides_as_strings_a_mapping_or_one_string_agree():
    as_strings = apply_overrides(SMALL, ["parallel.pp=4", "model.name=x", "parallel.microbatches=null"])
    as_mapping = apply_overrides(SMALL, {"parallel.pp": 4, "model.name": "x", "parallel.microbatches": None})
    assert as_strings == as_mapping and "microbatches" not in as_strings["parallel"]
    assert apply_overrides(SMALL, "parallel.pp=4")["parallel"]["pp"] == 4
    for bad, words in ((["parallel.pp"], "expected key.path=value"), (["..=1"], "dotted key path"),
                       (["name.x=1"], "is not a mapping"), ({1: 2}, "keys must be dotted key paths"),
                       ({"a": object()}, "plain data"), ({"a": float("nan")}, "finite")):
        with pytest.raises(ScenarioError, match=words):
            apply_overrides({"name": "n"}, bad)


def test_python_api_takes_mappings_and_says_what_it_takes():
    by_mapping = sim.run(SMALL, overrides={"parallel.microbatches": 4})
    by_strings = sim.run(SMALL, overrides=["parallel.microbatches=4"])
    assert by_mapping.summary["iteration_time_s"] == by_strings.summary["iteration_time_s"]
    assert len(repr(by_mapping)) < 400 and "timeline" in repr(by_mapping)
    assert by_mapping.summary["provenance"]["overrides"] == {"parallel.microbatches": 4}
    scenario = sim.load_scenario_dict(SMALL)
    with pytest.raises(ScenarioError, match="not to a loaded Scenario"):
        sim.run(scenario, overrides=["parallel.pp=1"])
    with pytest.raises(ScenarioError, match="expected a YAML path, a mapping or a Scenario"):
        sim.run(42)
    assert "workers" in str(inspect.signature(sim.sweep)) and "timeout_s" in str(inspect.signature(sim.sweep))


def test_shipped_scenarios_resolve_by_name_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert sim.load_scenario("npu_pim_decode").name == "npu_pim_decode"
    assert sim.load_scenario("npu_pim_decode.yaml").trace.ops
    with pytest.raises(ScenarioError, match="scenario file not found"):
        sim.load_scenario("no_such_scenario")
