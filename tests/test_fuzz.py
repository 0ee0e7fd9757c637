"""Fuzzing every input surface (issue #14): traces (JSON Lines and Arrow), scenarios,
``--set``, device specs, topologies and ``accsim collective``, sweeps and their ``where``
language, ``accsim perfetto`` and the Python API, with hypothesis strategies and generated
corpora; more than 1,000 cases per run. Each case must exit 0 or 2, an error must be one
line naming what was wrong and leave nothing written, a success must write only finite
numbers, and nothing may hang (tests/fuzz_support.py). Most cases call ``sim.cli.main``
in this process for speed; a sample runs the real entry point as a subprocess.

Surfaces owned by other helpers in this wave (device specs: kernels, #10; topologies and
``accsim collective``: nccl, #11) run against whatever main has; inputs known to fail
there were listed as expected failures until they landed (COLLECTIVE_BOUNDS, nccl #11).
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import sim
from sim.errors import AccsimError
from sim.sweeps.points import expand_points, load_sweep
from sim.workload.trace import OP_TYPES, TRACE_SCHEMA

from fuzz_support import (CASES, ROOT, accsim, accsim_subprocess, check_error, check_finite_outputs,
                          check_outcome, dump_yaml, hang_guard, leaf_paths, listing, nothing_written,
                          set_path)

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

# ---------------------------------------------------------------- values

SPECIAL_NUMBERS = [0, -1, 1, 2**31, 2**62, 2**63 - 1, 2**63, -2**63 - 1, 2**64, 10**30, 1e308, -1e308,
                   float("nan"), float("inf"), float("-inf"), 1e-320, 0.5, -0.0]
SPECIAL_TEXT = ["", " ", "false", "true", "no", "null", "nan", "inf", "-inf", "1e400", "0x10", "1GiB",
                "3TB/s", "500ns", "1.41GHz", "-5MiB", "ideal", "ring:0", "\x00", "é", "∞", "a" * 300,
                "../../etc/passwd", "{", "[1, 2", "!!python/object:os.system", "*alias"]
NASTY = st.one_of(
    st.none(), st.booleans(), st.sampled_from(SPECIAL_NUMBERS), st.integers(-2**70, 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(SPECIAL_TEXT), st.text(max_size=12),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.sampled_from(["a", "name", "x"]),
                                                               st.integers(0, 3), max_size=2))


def yaml_safe(value):
    """YAML cannot hold every Python value literally; NaN and infinity it can."""
    return value


# ---------------------------------------------------------------- traces

BASE_OPS = [
    {"id": 0, "name": "load", "op": "copy", "flops": 0.0, "bytes_read": 4096.0, "bytes_written": 4096.0,
     "deps": [], "stream": 1, "src_tier": "hbm", "dst_tier": "scratchpad", "tensor": "w"},
    {"id": 1, "name": "gemm", "op": "gemm", "flops": 2.0 * 64 * 64 * 64, "bytes_read": 16384.0,
     "bytes_written": 8192.0, "deps": [0], "m": 64, "n": 64, "k": 64, "tier": "scratchpad", "frees": ["w"]},
    {"id": 2, "name": "act", "op": "elementwise", "flops": 4096.0, "bytes_read": 8192.0,
     "bytes_written": 8192.0, "deps": [1]},
    {"id": 3, "name": "attn", "op": "gemv", "flops": 2.0 * 128 * 1 * 64, "bytes_read": 16384.0,
     "bytes_written": 256.0, "deps": [2], "m": 128, "n": 1, "k": 64, "unit": "pim"},
]
TRACE_FIELDS = sorted(TRACE_SCHEMA.names)


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in records))
    return path


@FUZZ
@given(index=st.integers(0, len(BASE_OPS) - 1), field=st.sampled_from(TRACE_FIELDS + ["dep", "x_note"]),
       value=NASTY, drop=st.booleans())
def test_trace_fields(tmp_path_factory, index, field, value, drop):
    folder = tmp_path_factory.mktemp("trace")
    records = [dict(r) for r in BASE_OPS]
    if drop:
        records[index].pop(field, None)
    else:
        records[index][field] = value
    path = write_jsonl(folder / "t.jsonl", records)
    code, out, err = accsim("trace", "info", path, "--device", "npu_pim", surface="trace jsonl")
    check_outcome(code, err, f"trace field {field}={value!r}")


# Inputs that must be refused (the list and more): each is one error line, exit 2.
TRACE_MUST_FAIL = {
    "id beyond int64": [dict(BASE_OPS[2], id=2**63)],
    "dep beyond int64": [dict(BASE_OPS[2], deps=[2**64])],
    "flops NaN": [dict(BASE_OPS[2], flops=float("nan"))],
    "flops infinite": [dict(BASE_OPS[2], flops=float("inf"))],
    "bytes infinite": [dict(BASE_OPS[2], bytes_read=float("inf"))],
    "bytes 2^70": [dict(BASE_OPS[2], bytes_written=2.0**70)],
    "bool as number": [dict(BASE_OPS[2], flops=True)],
    "string as number": [dict(BASE_OPS[2], flops="1e9")],
    "gemm flops disagree": [dict(BASE_OPS[1], deps=[], frees=[], flops=1.0)],
    "partial shape": [dict(BASE_OPS[2], m=4)],
    "tensor freed twice": [BASE_OPS[0], dict(BASE_OPS[1]), dict(BASE_OPS[2], frees=["w"])],
    "tensor freed before it exists": [dict(BASE_OPS[2], id=0, frees=["w"]), dict(BASE_OPS[0], id=1, stream=0)],
    "tensor never produced": [dict(BASE_OPS[2], frees=["ghost"])],
    "unknown field": [dict(BASE_OPS[2], dep=[1])],
    "unknown op": [dict(BASE_OPS[2], op="conv9d")],
    "duplicate id": [BASE_OPS[2], BASE_OPS[2]],
    "self dependency": [dict(BASE_OPS[2], deps=[2])],
    "cycle": [dict(BASE_OPS[2], id=0, deps=[1]), dict(BASE_OPS[2], id=1, deps=[0], stream=1)],
    "collective without cluster group": [dict(BASE_OPS[2], op="allreduce")],
    "collective with tensor": [dict(BASE_OPS[2], op="allreduce", group=[0, 1], tensor="t")],
    "rank repeated in group": [dict(BASE_OPS[2], op="allreduce", group=[1, 1])],
    "negative rank": [dict(BASE_OPS[2], rank=-1)],
    "batch zero": [dict(BASE_OPS[2], batch=0)],
    "name not a string": [dict(BASE_OPS[2], name=["x"])],
    "not an object": [[1, 2, 3]],
    "empty name list": [dict(BASE_OPS[2], frees=[""])],
}


@pytest.mark.parametrize("name", sorted(TRACE_MUST_FAIL))
def test_trace_corpus_is_refused(tmp_path, name):
    path = write_jsonl(tmp_path / "t.jsonl", TRACE_MUST_FAIL[name])
    code, _, err = accsim("trace", "validate", path, surface="trace corpus")
    line = check_error(code, err, name)
    assert str(path) in line


RAW_TRACES = {
    "not UTF-8": b'{"id": 0, "name": "\xff\xfe", "op": "gemm"}\n',
    "deep nesting": b"[" * 50000 + b"]" * 50000 + b"\n",
    "5000-digit integer": b'{"id": ' + b"7" * 5000 + b"}\n",
    "truncated line": b'{"id": 0, "name": "x", "op": "ge',
    "NaN token": b'{"id": 0, "name": "x", "op": "elementwise", "flops": NaN, "bytes_read": 0, "bytes_written": 0}\n',
    "Infinity token": b'{"id": 0, "name": "x", "op": "elementwise", "flops": Infinity, "bytes_read": 0, "bytes_written": 0}\n',
    "a number": b"42\n",
    "null": b"null\n",
}


@pytest.mark.parametrize("name", sorted(RAW_TRACES))
def test_raw_trace_corpus_is_refused(tmp_path, name):
    path = tmp_path / "t.jsonl"
    path.write_bytes(RAW_TRACES[name])
    code, _, err = accsim("trace", "validate", path, surface="trace corpus")
    check_error(code, err, name)


@FUZZ
@given(data=st.binary(max_size=400))
def test_trace_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bytes") / "t.jsonl"
    path.write_bytes(data)
    code, _, err = accsim("trace", "validate", path, surface="trace bytes")
    check_outcome(code, err, f"bytes {data[:40]!r}")


@pytest.fixture(scope="module")
def arrow_trace(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("arrow") / "t.arrow"
    from sim.workload.trace import load_trace, write_trace
    write_trace(load_trace(write_jsonl(path.with_suffix(".jsonl"), BASE_OPS)).ops, path)
    return path.read_bytes()


@pytest.mark.parametrize("seed", range(100))
def test_corrupted_arrow_traces(tmp_path, arrow_trace, seed):
    rng = random.Random(seed)
    data = bytearray(arrow_trace)
    kind = seed % 4
    if kind == 0:
        data = data[: rng.randrange(len(data))]
    elif kind == 1:
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 2:
        start = rng.randrange(len(data))
        data[start:start + 64] = bytes(rng.randrange(256) for _ in range(64))
    else:
        data = bytearray(b"ARROW1\x00\x00") + bytearray(rng.randbytes(rng.randint(0, 2000)))
    path = tmp_path / "t.arrow"
    path.write_bytes(bytes(data))
    code, _, err = accsim("trace", "info", path, surface="trace arrow")
    check_outcome(code, err, f"arrow corruption {seed}")


ARROW_TABLES = {
    "id as text": lambda: pa.table({"id": ["0"], "name": ["x"], "op": ["elementwise"], "flops": [1.0],
                                    "bytes_read": [1.0], "bytes_written": [1.0]}),
    "id beyond int64": lambda: pa.table({"id": pa.array([2**64 - 1], pa.uint64()), "name": ["x"],
                                         "op": ["elementwise"], "flops": [1.0], "bytes_read": [1.0],
                                         "bytes_written": [1.0]}),
    "flops infinite": lambda: pa.table({"id": [0], "name": ["x"], "op": ["elementwise"],
                                        "flops": [float("inf")], "bytes_read": [1.0], "bytes_written": [1.0]}),
    "no columns": lambda: pa.table({"a": [1]}),
}


@pytest.mark.parametrize("name", sorted(ARROW_TABLES))
def test_arrow_tables_that_are_not_traces(tmp_path, name):
    path = tmp_path / "t.arrow"
    table = ARROW_TABLES[name]()
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    code, _, err = accsim("trace", "validate", path, surface="trace arrow")
    check_error(code, err, name)


# ---------------------------------------------------------------- scenarios

TRACE_SCENARIO = {"name": "fuzz", "device": "npu_pim", "device_name": "npu0",
                  "trace": str(ROOT / "traces" / "llm_decode_step.jsonl"),
                  "memory": {"resident_bytes": {"hbm": "1GiB"}}}
TRAINING_SCENARIO = {"name": "fuzz-train", "cluster": "ideal", "device": "a100_sxm4_80gb",
                     "model": {"layers": 2, "hidden": 256, "heads": 4, "seq_len": 128, "vocab": 1000},
                     "parallel": {"pp": 2, "microbatches": 2, "schedule": "1f1b"},
                     "training": {"fidelity": "folded", "continue_on_oom": False, "optimizer_step": True},
                     "outputs": {"link_rows": "auto"}}
SCENARIO_PATHS = sorted({p for base in (TRACE_SCENARIO, TRAINING_SCENARIO) for p in leaf_paths(base) if p}
                        | {("parallel", k) for k in ("dp", "tp", "virtual_stages", "microbatch_size",
                                                     "global_batch", "sequence_parallel", "zero", "recompute",
                                                     "mapping", "dp_bucket_bytes", "tp_algorithm")}
                        | {("model", k) for k in ("kv_heads", "ffn_hidden", "gated_mlp", "dtype", "name")}
                        | {("device_overrides", "vector", "flops_per_s"), ("device_overrides", "pim", "mode"),
                           ("device_overrides", "memory", "hbm", "capacity_bytes"), ("colour",),
                           ("cluster_options",), ("device_overrides",)})


def run_scenario(folder: Path, text: str, *extra, surface: str) -> tuple[bool, str]:
    path = folder / "s.yaml"
    path.write_text(text)
    before = listing(folder)
    out = folder / "out"
    code, _, err = accsim("run", path, "--out", out, "--quiet", *extra, surface=surface)
    ok = check_outcome(code, err, f"scenario {text[:300]!r} {extra}")
    if ok:
        check_finite_outputs(out, text[:200])
    else:
        nothing_written(folder, before, text[:200])
    return ok, err


@FUZZ
@given(base=st.sampled_from([TRACE_SCENARIO, TRAINING_SCENARIO]), path=st.sampled_from(SCENARIO_PATHS),
       value=NASTY)
def test_scenario_values(tmp_path_factory, base, path, value):
    folder = tmp_path_factory.mktemp("scenario")
    run_scenario(folder, dump_yaml(set_path(base, path, value)), surface="scenario")


SCENARIO_MUST_FAIL = {
    "string false": set_path(TRAINING_SCENARIO, ("training", "continue_on_oom"), "false"),
    "rank without cluster": None,       # built in the test (needs a trace file)
    "int beyond int64": set_path(TRAINING_SCENARIO, ("model", "layers"), 2**63),
    "NaN size": set_path(TRACE_SCENARIO, ("memory", "resident_bytes", "hbm"), float("nan")),
    "infinite size": set_path(TRACE_SCENARIO, ("memory", "resident_bytes", "hbm"), "inf"),
    "negative size": set_path(TRACE_SCENARIO, ("memory", "resident_bytes", "hbm"), "-1GiB"),
    "unknown key": set_path(TRACE_SCENARIO, ("colour",), "red"),
    "unknown tier": set_path(TRACE_SCENARIO, ("memory", "resident_bytes", "l3"), "1MiB"),
    "plan does not divide": set_path(TRAINING_SCENARIO, ("parallel", "pp"), 3),
    "huge plan": set_path(TRAINING_SCENARIO, ("parallel", "microbatches"), 10**6),
    "bad algorithm": set_path(TRAINING_SCENARIO, ("parallel", "tp_algorithm"), "magic"),
    "bad override": set_path(TRACE_SCENARIO, ("device_overrides", "vector", "flops_per_s"), "fast"),
    "missing trace": set_path(TRACE_SCENARIO, ("trace",), "nowhere.jsonl"),
    "unknown device": set_path(TRACE_SCENARIO, ("device",), "tpu_v9"),
    "trace and model": set_path(TRAINING_SCENARIO, ("trace",), "x.jsonl"),
}
YAML_MUST_FAIL = {
    "alias bomb": "\n".join(['a: &a ["x","x","x","x","x","x","x","x","x"]'] + [
        f"{n}: &{n} [" + ",".join([f"*{p}"] * 9) + "]" for p, n in zip("abcdefgh", "bcdefghi")]),
    "recursive alias": "a: &a [*a]",
    "deep nesting": "name: " + "[" * 200 + "]" * 200,
    "not a mapping": "- 1\n- 2\n",
    "python tag": "name: !!python/object/apply:os.system ['true']\n",
    "syntax error": "name: [unclosed\n",
    "tabs": "name:\tx\n\tdevice: y\n",
}


@pytest.mark.parametrize("name", sorted(SCENARIO_MUST_FAIL))
def test_scenario_corpus_is_refused(tmp_path, name):
    scenario = SCENARIO_MUST_FAIL[name]
    if scenario is None:
        trace = write_jsonl(tmp_path / "ranks.jsonl", [dict(BASE_OPS[2], rank=1, deps=[])])
        scenario = dict(TRACE_SCENARIO, trace=str(trace))
    ok, err = run_scenario(tmp_path, dump_yaml(scenario), surface="scenario corpus")
    assert not ok and str(tmp_path / "s.yaml") in err or "--set" in err, err


@pytest.mark.parametrize("name", sorted(YAML_MUST_FAIL))
def test_yaml_corpus_is_refused(tmp_path, name):
    ok, _ = run_scenario(tmp_path, YAML_MUST_FAIL[name], surface="scenario corpus")
    assert not ok


def test_scenario_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    code, _, err = accsim("run", path, "--out", tmp_path / "o", surface="scenario corpus")
    assert "not UTF-8" in check_error(code, err, "non-UTF-8 scenario")


KEYS = st.one_of(st.sampled_from([".".join(p) for p in SCENARIO_PATHS]),
                 st.text(alphabet=string.ascii_lowercase + "._", max_size=20))
SET_VALUES = st.one_of(st.sampled_from(["1", "-1", "0", "true", "false", "'false'", "null", "~", "1e400", ".nan",
                                        ".inf", "[1,2]", "{a: 1}", "[" * 80, "*x", "&a [*a]", "9223372036854775808",
                                        "1GiB", "ring:4", "gpipe", "interleaved", "\"\"", "!!binary aGk="]),
                       st.text(max_size=15))


@FUZZ
@given(base=st.sampled_from([TRACE_SCENARIO, TRAINING_SCENARIO]),
       sets=st.lists(st.tuples(KEYS, SET_VALUES), min_size=1, max_size=3), raw=st.booleans())
def test_set_overrides(tmp_path_factory, base, sets, raw):
    folder = tmp_path_factory.mktemp("set")
    flags = []
    for key, value in sets:
        flags += ["--set", key if raw and not value else f"{key}={value}"]
    run_scenario(folder, dump_yaml(base), *flags, surface="--set")


# ---------------------------------------------------------------- device specs (kernels, #10)

DEVICE = (ROOT / "topologies" / "devices" / "npu_pim.yaml").read_text()


@FUZZ
@given(path=st.sampled_from([("name",), ("default_tier",), ("default_dtype",), ("systolic_array", "rows"),
                             ("systolic_array", "count"), ("systolic_array", "clock_hz"),
                             ("systolic_array", "dataflow"), ("vector", "flops_per_s"),
                             ("vector", "flops_per_s", "bf16"), ("pim", "banks"), ("pim", "tier"),
                             ("pim", "mode"), ("pim", "bank_flops_per_s"), ("memory",), ("sm_array",),
                             ("colour",)]),
       value=NASTY)
def test_device_specs(tmp_path_factory, path, value):
    import yaml
    folder = tmp_path_factory.mktemp("spec")
    spec = folder / "dev.yaml"
    spec.write_text(dump_yaml(set_path(yaml.safe_load(DEVICE), path, value)))
    code, _, err = accsim("trace", "info", ROOT / "traces" / "llm_decode_step.jsonl", "--device", spec,
                          surface="device spec")
    check_outcome(code, err, f"device spec {path}={value!r}")


# ---------------------------------------------------------------- topologies and collectives (nccl, #11)

# Inputs that once hung or were accepted (fixed by nccl, #11): each is one error line, exit 2
# (in a subprocess, so a hang would cost HANG_S and no more).
COLLECTIVE_BOUNDS = {
    "switch:100000 builds a huge cluster": ["--topology", "switch:100000", "--op", "allreduce",
                                            "--algorithm", "ring", "--bytes", "1KiB"],
    "a size range of a million steps": ["--topology", "ring:4", "--op", "allreduce", "--algorithm", "ring",
                                        "--bytes", "1:1e6:1.000001"],
    "gamma NaN is accepted": ["--topology", "ring:4", "--op", "allreduce", "--algorithm", "ring",
                              "--bytes", "1KiB", "--gamma", "nan"],
    "ring:99999999999999999999 builds a huge cluster": ["--topology", "ring:99999999999999999999", "--op",
                                                        "allreduce", "--algorithm", "ring", "--bytes", "1KiB"],
}


@pytest.mark.parametrize("name", sorted(COLLECTIVE_BOUNDS))
def test_collective_inputs_are_bounded(tmp_path, name):
    code, _, err = accsim_subprocess("collective", *COLLECTIVE_BOUNDS[name], surface="collective", hang_s=15)
    check_error(code, err, name)


TOPOLOGIES = st.one_of(
    st.sampled_from(["ring:4", "ring:0", "ring:-1", "fully_connected:3", "switch:4", "tree:8", "torus:2x2",
                     "torus:0x2", "cluster:2x4", "cluster:0x4", "ideal:4", "dgx_a100", "a100_2node", "nowhere",
                     "ring:", "ring:4x", "torus:2x2x2x2x2x2", "", "../x"]),
    st.builds(lambda kind, n: f"{kind}:{n}", st.sampled_from(["ring", "switch", "tree", "fully_connected"]),
              st.integers(-2, 40)))
SIZES = st.one_of(st.sampled_from(["1KiB", "1KiB:1MiB", "0", "-1", "1e30", "nan", "inf", "1:8:2", "8:1", "1:2:0",
                                   "1:2:1", "abc", "1KiB:4GiB", "3TB/s", ""]),
                  st.builds(lambda a, b: f"{a}:{b}", st.integers(0, 10**6), st.integers(0, 10**6)))


@FUZZ
@given(topology=TOPOLOGIES, op=st.sampled_from(["allreduce", "all-reduce", "broadcast", "alltoall", "sendrecv",
                                                "magic", ""]),
       algorithm=st.sampled_from(["ring", "mst", "auto", "nccl", "hierarchical", "double_binary_tree", "x"]),
       size=SIZES, extra=st.lists(st.sampled_from([("--group", "0:4:2"), ("--group", "0-99"), ("--group", "x"),
                                                   ("--link-bandwidth", "100e9"), ("--link-bandwidth", "0"),
                                                   ("--link-latency", "1e-6"), ("--link-latency", "inf"),
                                                   ("--json",), ("--ecmp",)]), max_size=2))
def test_collectives(tmp_path_factory, topology, op, algorithm, size, extra):
    flags = [x for item in extra for x in item]
    code, _, err = accsim("collective", "--topology", topology, "--op", op, "--algorithm", algorithm,
                          "--bytes", size, *flags, surface="collective")
    check_outcome(code, err, f"collective {topology} {op} {algorithm} {size} {flags}")


CLUSTER = (ROOT / "topologies" / "clusters" / "dgx_a100.yaml").read_text()


@FUZZ
@given(key=st.sampled_from(["generator", "device", "nvlink_bandwidth", "nvlink_efficiency", "nvlink_latency",
                            "nic_bandwidth", "nic_latency", "name", "colour"]), value=NASTY)
def test_cluster_files(tmp_path_factory, key, value):
    import yaml
    folder = tmp_path_factory.mktemp("cluster")
    path = folder / "c.yaml"
    path.write_text(dump_yaml(dict(yaml.safe_load(CLUSTER), **{key: value})))
    code, _, err = accsim("collective", "--topology", path, "--op", "allreduce", "--algorithm", "ring",
                          "--bytes", "1MiB", surface="topology")
    check_outcome(code, err, f"cluster {key}={value!r}")


# ---------------------------------------------------------------- sweeps

PIPELINE = str(ROOT / "scenarios" / "pipeline_ideal.yaml")
SWEEP = {"scenario": PIPELINE, "grid": {"parallel.pp": [2, 4]}, "zip": {"parallel.microbatches": [4, 8]},
         "random": {"n": 2, "seed": 0, "params": {"model.hidden": {"low": 512, "high": 1024, "type": "int"}}},
         "where": "parallel.pp <= 4"}


@FUZZ
@given(path=st.sampled_from(sorted(p for p in leaf_paths(SWEEP) if p) + [("grid", "status"), ("name",),
                                                                          ("grid", "parallel.microbatchs")]),
       value=NASTY)
def test_sweep_files(path, value):
    CASES["sweep"] += 1
    raw = set_path(SWEEP, path, value)
    try:
        with hang_guard():
            load_sweep(raw)
    except AccsimError as exc:
        assert "\n" not in str(exc)


ATOMS = st.sampled_from(["p.x", "p.y", "1", "2.5", "0", "-3", "'a'", "true", "null", "[1, 2]", "p.z",
                         "9", "64", "1e308", "()"])
OPERATORS = st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "<", "<=", "==", "!=", " in ", " not in ",
                             " and ", " or "])


@st.composite
def expressions(draw, depth=0):
    if depth > 3 or draw(st.booleans()):
        return draw(ATOMS)
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return f"({draw(expressions(depth + 1))}{draw(OPERATORS)}{draw(expressions(depth + 1))})"
    if kind == 1:
        return f"not {draw(expressions(depth + 1))}"
    if kind == 2:
        return f"{draw(st.sampled_from(['min', 'max', 'abs', 'len', 'eval', '__import__']))}({draw(expressions(depth + 1))})"
    return draw(st.text(alphabet=string.printable, max_size=30))


@settings(FUZZ, max_examples=250)
@given(expression=expressions())
def test_where_expressions(expression):
    CASES["where"] += 1
    try:
        with hang_guard(10):
            points, _ = expand_points({"grid": {"p.x": [1, 2, 3], "p.y": ["a", "b"]}, "where": expression})
        assert len(points) <= 6
    except AccsimError as exc:
        assert "\n" not in str(exc)


SWEEP_MUST_FAIL = {
    "exponent tower": dict(SWEEP, where="9**9**9 > 0"),
    "class walk": dict(SWEEP, where="().__class__.__bases__[0].__subclasses__()"),
    "reserved axis": dict(SWEEP, grid={"status": [1, 2]}),
    "typo in an axis": dict(SWEEP, grid={"parallel.microbatchs": [4]}),
    "too many points": dict(SWEEP, grid={f"model.a{i}": list(range(20)) for i in range(5)}),
    "random n too large": dict(SWEEP, random={"n": 10**7, "params": {"model.hidden": {"low": 1, "high": 2}}}),
    "missing scenario": {"grid": {"parallel.pp": [2]}},
}


@pytest.mark.parametrize("name", sorted(SWEEP_MUST_FAIL))
def test_sweep_corpus_is_refused(tmp_path, name):
    path = tmp_path / "sweep.yaml"
    path.write_text(dump_yaml(SWEEP_MUST_FAIL[name]))
    before = listing(tmp_path)
    code, _, err = accsim("sweep", path, "--out", tmp_path / "out", "--quiet", surface="sweep corpus")
    check_error(code, err, name)
    nothing_written(tmp_path, before, name)


@pytest.mark.parametrize("flags", [["--workers", "-2"], ["--workers", "0"], ["--timeout", "nan"],
                                   ["--timeout", "-1"], ["--scheduler", "nowhere"], ["--workers", "x"]])
def test_sweep_flags_are_refused(tmp_path, flags):
    path = tmp_path / "sweep.yaml"
    path.write_text(dump_yaml(SWEEP))
    code, _, err = accsim("sweep", path, "--out", tmp_path / "out", "--quiet", *flags, surface="sweep corpus")
    check_error(code, err, " ".join(flags))
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- accsim perfetto

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("perfetto") / "run"
    sim.run(TRACE_SCENARIO).write(out)
    return out


@pytest.mark.parametrize("case", range(60))
def test_perfetto_inputs(tmp_path, run_dir, case):
    import shutil
    rng = random.Random(case)
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    names = sorted(p.name for p in run.iterdir())
    action = case % 6
    target = run / rng.choice(names)
    if action == 0:
        target.unlink()
    elif action == 1:
        data = bytearray(target.read_bytes())
        for _ in range(rng.randint(1, 30)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        target.write_bytes(bytes(data))
    elif action == 2:
        target.write_bytes(target.read_bytes()[: rng.randrange(max(1, target.stat().st_size))])
    elif action == 3:
        run = tmp_path / "missing"
    elif action == 4:
        run = run / "summary.json"
    flags = rng.choice([[], ["--format", "json"], ["--start", "nan"], ["--start", "1", "--end", "0"],
                        ["--max-slices", "-1"], ["--max-slices", "3"], ["--devices", "[x"], ["--end", "1e300"],
                        ["--start", "-inf"]])
    output = tmp_path / ("trace.json" if "json" in flags else "trace.pftrace")
    if case % 10 == 9:
        output = tmp_path            # a directory
    before = listing(tmp_path)
    code, _, err = accsim("perfetto", run, "-o", output, "--quiet", *flags, surface="perfetto")
    if not check_outcome(code, err, f"perfetto case {case} {flags}"):
        nothing_written(tmp_path, before, f"perfetto case {case}")
    elif output.suffix == ".json":
        json.loads(output.read_text(), parse_constant=lambda c: 1 / 0)


# ---------------------------------------------------------------- the Python API

API_SCENARIOS = st.one_of(
    st.builds(lambda path, value: set_path(TRACE_SCENARIO, path, value), st.sampled_from(SCENARIO_PATHS), NASTY),
    st.builds(lambda path, value: set_path(TRAINING_SCENARIO, path, value), st.sampled_from(SCENARIO_PATHS), NASTY),
    NASTY, st.sampled_from(["quickstart_typo", str(ROOT / "README.md"), "", ROOT]))
API_OVERRIDES = st.one_of(st.none(), st.just(()), st.lists(SET_VALUES, max_size=2),
                          st.dictionaries(KEYS, NASTY, max_size=2), NASTY)


@FUZZ
@given(scenario=API_SCENARIOS, overrides=API_OVERRIDES)
def test_python_api(tmp_path_factory, scenario, overrides):
    CASES["python api"] += 1
    try:
        with hang_guard():
            result = sim.run(scenario, overrides=overrides or ())
    except AccsimError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    folder = tmp_path_factory.mktemp("api")
    result.write(folder / "out")
    check_finite_outputs(folder / "out", repr(scenario)[:200])


@pytest.mark.parametrize("options", [{"workers": -2}, {"workers": True}, {"timeout_s": float("inf")},
                                     {"scheduler": 5}, {"workers": 2**40}])
def test_python_api_sweep_options(tmp_path, options):
    CASES["python api"] += 1
    with pytest.raises(AccsimError):
        sim.sweep(SWEEP, out=tmp_path / "o", progress=False, **options)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- the real entry point

SUBPROCESS_CASES = [
    ["trace", "validate", "{tmp}/bad.jsonl"],
    ["trace", "info", "{tmp}/bad.arrow"],
    ["run", "{tmp}/bomb.yaml", "--out", "{tmp}/o"],
    ["run", "{tmp}/scenario.yaml", "--out", "{tmp}/o", "--set", "training.continue_on_oom='false'"],
    ["run", "{tmp}/scenario.yaml", "--out", "{tmp}/o", "--set", "model.layers=9223372036854775808"],
    ["run", "{tmp}/scenario.yaml", "--out", "{tmp}/file"],
    ["run", "{tmp}/scenario.yaml", "--out", "{tmp}/o", "--set", "parallel.pp=3"],
    ["run", "{tmp}/scenario.yaml", "--out", "{tmp}/o", "--bogus"],
    ["run", "{tmp}/\udcff.yaml", "--out", "{tmp}/o"],
    ["perfetto", "{tmp}", "-o", "{tmp}/x.pftrace"],
    ["sweep", "{tmp}/sweep.yaml", "--out", "{tmp}/o", "--workers", "-2"],
    ["sweep", "{tmp}/tower.yaml", "--out", "{tmp}/o"],
    ["collective", "--topology", "ring:0", "--op", "allreduce", "--algorithm", "ring", "--bytes", "1KiB"],
    ["trace", "info", "{tmp}/bad.jsonl", "--device", "{tmp}/scenario.yaml"],
    ["devices", "--colour"],
    ["nonsense"],
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    write_jsonl(folder / "bad.jsonl", [dict(BASE_OPS[2], id=2**63)])
    (folder / "bad.arrow").write_bytes(b"ARROW1\x00\x00garbage")
    (folder / "bomb.yaml").write_text(YAML_MUST_FAIL["alias bomb"])
    (folder / "scenario.yaml").write_text(dump_yaml(TRAINING_SCENARIO))
    (folder / "file").write_text("x")
    (folder / "sweep.yaml").write_text(dump_yaml(SWEEP))
    (folder / "tower.yaml").write_text(dump_yaml(SWEEP_MUST_FAIL["exponent tower"]))
    return folder


@pytest.mark.parametrize("args", SUBPROCESS_CASES, ids=lambda a: " ".join(a)[:40])
def test_entry_point(corpus, args):
    argv = [a.replace("{tmp}", str(corpus)) for a in args]
    before = listing(corpus)
    code, _, err = accsim_subprocess(*argv, surface="subprocess")
    check_error(code, err, " ".join(argv))
    nothing_written(corpus, before, " ".join(argv))


def test_entry_point_successes(tmp_path):
    code, out, err = accsim_subprocess("run", "npu_pim_decode", "--out", tmp_path / "o", "--format", "parquet",
                                       surface="subprocess", cwd=tmp_path)
    assert code == 0 and "Traceback" not in err, err
    json.loads((tmp_path / "o" / "summary.json").read_text(), parse_constant=lambda c: 1 / 0)
    code, out, _ = accsim_subprocess("--version", surface="subprocess")
    assert code == 0 and out.startswith("accsim ")


# ---------------------------------------------------------------- the count

def test_zz_more_than_a_thousand_cases(request):
    """Runs last (file order): the whole module ran at least 1,000 cases."""
    selected = [item for item in request.session.items if item.module is request.module]
    if len(selected) < len([name for name in dir(request.module) if name.startswith("test_")]):
        pytest.skip("only part of the fuzz suite was selected")
    assert sum(CASES.values()) >= 1000, dict(CASES)
    print("fuzz cases per surface:", dict(sorted(CASES.items())), "total", sum(CASES.values()))
