"""accsim import chakra: Chakra execution traces (one protobuf file per rank) as traces,
replayed to closed-form step times; every malformed input is one line and exit 2."""

import importlib.util
import json
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

import sim
from sim.engine.device import bind_op, isolated_seconds
from sim.hardware.specs import load_device_spec
from sim.importers import TraceImportError
from sim.importers.chakra import convert
from sim.importers.chakra_schema import (COMM_TYPE, NODE_TYPE, GlobalMetadata, IOInfo, Node, attr,
                                         attribute_value, read_messages, write_et)

from conftest import ROOT


def accsim(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "sim", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def make_traces():
    spec = importlib.util.spec_from_file_location("make_chakra", ROOT / "scenarios" / "make_chakra_traces.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_ranks(tmp_path, stem, per_rank):
    for rank, nodes in enumerate(per_rank):
        with open(tmp_path / f"{stem}.{rank}.et", "wb") as fh:
            write_et(fh, GlobalMetadata(version="0.0.4"), nodes)
    return tmp_path / stem


def comp(i, name="k", us=10, deps=(), **attrs):
    extra = [attr(k, **v) for k, v in attrs.items()]
    return Node(id=i, name=name, type=NODE_TYPE["COMP_NODE"], duration_micros=us, data_deps=list(deps), attr=extra)


def coll(i, kind="ALL_REDUCE", size=1024, pg=None, deps=()):
    attrs = [attr("comm_type", int64_val=COMM_TYPE[kind]), attr("comm_size", int64_val=size)]
    if pg is not None:
        attrs.append(attr("pg_name", string_val=pg))
    return Node(id=i, name=f"coll{i}", type=NODE_TYPE["COMM_COLL_NODE"], data_deps=list(deps), attr=attrs)


# ---------------------------------------------------------------- shipped examples


def test_shipped_files_are_what_the_script_writes_and_import_to_the_shipped_traces(tmp_path):
    make_traces().main(tmp_path)
    for path in sorted(tmp_path.iterdir()):
        assert path.read_bytes() == (ROOT / "traces" / path.name).read_bytes(), path.name
    out = tmp_path / "dp.arrow"
    proc = accsim("import", "chakra", "traces/chakra_dp", "--comm-groups", "traces/chakra_dp.comm_groups.json",
                  "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "40 ops (allreduce 4, elementwise 4, gemm 32) on 4 ranks" in proc.stdout
    assert out.read_bytes() == (ROOT / "traces" / "chakra_dp.arrow").read_bytes()
    proc = accsim("import", "chakra", "traces/chakra_pipeline", "--out", tmp_path / "pp.arrow")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pp.arrow").read_bytes() == (ROOT / "traces" / "chakra_pipeline.arrow").read_bytes()


BANDWIDTH, LATENCY = 100e9, 1e-6  # the scenarios' links


def test_data_parallel_step_in_closed_form():
    """Per rank L forward (F) and backward (B) layers; each layer's gradient
    all-reduce is a ring on 4 ranks, 2 (p - 1) steps of S / p bytes plus the
    link latency, shorter than B, so all but the last hide behind backward:
    step = L F + L B + T_ar + O."""
    dp = make_traces().DP
    p, s = dp["ranks"], dp["grad_bytes"]
    t_ar = 2 * (p - 1) * (LATENCY + s / p / BANDWIDTH)
    assert t_ar < dp["bwd_us"] * 1e-6
    expected = dp["layers"] * (dp["fwd_us"] + dp["bwd_us"]) * 1e-6 + t_ar + dp["opt_us"] * 1e-6
    result = sim.run(ROOT / "scenarios" / "chakra_dp.yaml")
    assert result.summary["makespan_s"] == pytest.approx(expected, rel=1e-9)
    assert result.summary["devices"] == 4


def test_pipeline_step_in_closed_form():
    """GPipe on p = 2 stages, m microbatches, uniform F and B, one transfer of
    T = latency + bytes / bandwidth each way per microbatch:
    step = (m + p - 1)(F + B) + 2 T."""
    pp = make_traces().PP
    m, t = pp["microbatches"], LATENCY + pp["act_bytes"] / BANDWIDTH
    expected = (m + 1) * (pp["fwd_us"] + pp["bwd_us"]) * 1e-6 + 2 * t
    result = sim.run(ROOT / "scenarios" / "chakra_pipeline.yaml")
    assert result.summary["makespan_s"] == pytest.approx(expected, rel=1e-9)


def test_trace_info_and_perfetto_on_an_imported_trace(tmp_path):
    proc = accsim("trace", "info", "traces/chakra_pipeline.arrow")
    assert proc.returncode == 0 and "sendrecv 8" in proc.stdout
    proc = accsim("run", "scenarios/chakra_dp.yaml", "--out", tmp_path / "run", "--perfetto", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "trace.pftrace").stat().st_size > 0


# ---------------------------------------------------------------- semantics


def test_cpu_memory_and_reprice(tmp_path):
    rank = [comp(0, "aten::linear", 50, num_ops={"int64_val": 2 * 10 ** 12}, tensor_size={"uint64_val": 10 ** 9}),
            comp(1, "python", 7, [0], is_cpu_op={"bool_val": True}),
            Node(id=2, name="load", type=NODE_TYPE["MEM_LOAD_NODE"], data_deps=[1],
                 attr=[attr("tensor_size", uint64_val=4096)]),
            comp(3, "relu", 5, [2], num_ops={"int64_val": 1000})]
    prefix = write_ranks(tmp_path, "w", [rank])
    measured = convert(prefix)
    assert [(o.op, o.stream, o.duration_s) for o in measured] == [
        ("gemm", 0, 50e-6), ("host", 1, 7e-6), ("copy", 2, None), ("elementwise", 0, 5e-6)]
    assert (measured[2].src_tier, measured[2].dst_tier, measured[2].bytes_read) == ("host", "hbm", 4096)
    repriced = convert(prefix, reprice=True)
    assert repriced[0].duration_s is None and repriced[1].duration_s == 7e-6
    # priced on the device: a launch plus a roofline of num_ops at the calibrated tensor-core rate
    # and tensor_size over the achievable HBM bandwidth (sim.hardware.kernels, an unshaped matrix op)
    spec = load_device_spec("a100_sxm4_80gb")
    sm, hbm = spec.sm_array, spec.tier("hbm")
    op = repriced[0]
    compute = op.flops / (sm.count * sm.matrix_per_sm("bf16") * sm.efficiency("bf16"))
    memory = op.bytes_read / hbm.achievable_bandwidth_bytes_per_s
    assert isolated_seconds(bind_op(op, spec, "t"), spec) == pytest.approx(sm.launch_overhead_s + max(compute, memory))


def test_metadata_node_declares_process_groups(tmp_path):
    pg = '["[{\\"pg_name\\": \\"7\\", \\"ranks\\": [0, 1]}]"]'
    ranks = [[Node(id=0, name="pg", type=NODE_TYPE["METADATA_NODE"], inputs=IOInfo(values=pg)),
              comp(1, deps=[0]), coll(2, pg="7", deps=[1])] for _ in range(2)]
    ops = convert(write_ranks(tmp_path, "m", ranks))
    assert [(o.op, o.group, o.deps) for o in ops if o.op == "allreduce"] == [("allreduce", (0, 1), (0, 1))]


def test_send_before_its_receive_is_posted_is_eager(tmp_path):
    send = Node(id=1, name="send", type=NODE_TYPE["COMM_SEND_NODE"], data_deps=[0],
                attr=[attr("comm_dst", int32_val=1), attr("comm_tag", int32_val=3), attr("comm_size", int64_val=10)])
    recv = Node(id=1, name="recv", type=NODE_TYPE["COMM_RECV_NODE"], data_deps=[0],
                attr=[attr("comm_src", int32_val=0), attr("comm_tag", int32_val=3)])
    ops = convert(write_ranks(tmp_path, "p", [[comp(0), send], [comp(0, us=99), recv, comp(2, deps=[1])]]))
    transfer = next(o for o in ops if o.op == "sendrecv")
    assert transfer.group == (0, 1) and transfer.deps == (0,)          # only the sender's work
    after = next(o for o in ops if o.rank == 1 and o.name == "k" and o.deps)
    assert set(after.deps) == {transfer.id, 1}                  # after arrival and rank 1's own node


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2 ** 40), st.text(max_size=12), st.sampled_from(sorted(NODE_TYPE.values())),
                          st.lists(st.integers(0, 2 ** 20), max_size=4), st.integers(0, 2 ** 30),
                          st.one_of(st.integers(-2 ** 40, 2 ** 40), st.text(max_size=5), st.booleans())),
                min_size=1, max_size=8))
def test_schema_round_trip(nodes):
    import io
    messages = []
    for node_id, name, kind, deps, micros, value in nodes:
        field = {bool: "bool_val", int: "int64_val", str: "string_val"}[type(value)]
        messages.append(Node(id=node_id, name=name, type=kind, data_deps=deps, duration_micros=micros,
                             attr=[attr("x", **{field: value})]))
    buffer = io.BytesIO()
    write_et(buffer, GlobalMetadata(version="0.0.4"), messages)
    parsed = list(read_messages(buffer.getvalue()))
    assert len(parsed) == len(messages) + 1
    for (_, payload), original in zip(parsed[1:], messages):
        node = Node()
        node.ParseFromString(payload)
        assert node == original and attribute_value(node.attr[0]) == attribute_value(original.attr[0])


# ---------------------------------------------------------------- bad input


def error_of(tmp_path, *args):
    out = tmp_path / "out.arrow"
    proc = accsim("import", "chakra", *args, "--out", out)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert not out.exists() and not list(tmp_path.glob("out.arrow*"))
    return lines[0]


def test_truncated_protobuf(tmp_path):
    prefix = write_ranks(tmp_path, "t", [[comp(0), comp(1, deps=[0]), comp(2, deps=[1])]])
    data = (tmp_path / "t.0.et").read_bytes()
    (tmp_path / "t.0.et").write_bytes(data[:-4])
    message = error_of(tmp_path, prefix)
    assert re.search(r"t\.0\.et: truncated or corrupt protobuf at byte \d+: a message of \d+ bytes, but only "
                     r"\d+ bytes are left \(truncated file\) \(after node 1\)", message), message


@pytest.mark.parametrize("per_rank,groups,pattern", [
    ([[comp(0), comp(1, deps=[5])]], None,
     r"m\.0\.et: node 1 \(k\): depends on node 5, which is not in the file"),
    ([[comp(0, deps=[2]), comp(1, deps=[0]), comp(2, deps=[1])]], None,
     r"m\.0\.et: node \d \(k\): dependency cycle: \d \(k\) -> \d \(k\) -> \d \(k\) -> \d \(k\)"),
    ([[coll(0, size=1024)], [coll(0, size=2048)]], None,
     r"m\.1\.et: node 0 \(coll0\): collective 0 on group 'world' is ALL_REDUCE of 2048 bytes, but on rank 0 "
     r"\(.*m\.0\.et: node 0 \(coll0\)\) it is ALL_REDUCE of 1024 bytes"),
    ([[coll(0, kind="ALL_GATHER")], [coll(0)]], None, r"is ALL_REDUCE of 1024 bytes, but on rank 0"),
    ([[coll(0, pg="1"), coll(1, pg="1")], [coll(0, pg="1")]], {"1": [0, 1]},
     r"m\.1\.et: rank 1 has 1 collectives on group '1' but rank 0 has 2"),
    ([[coll(0, pg="1")], [coll(0, pg="1")]], None,
     r"m\.0\.et: node 0 \(coll0\): pg_name '1' is not a known communicator group; pass --comm-groups"),
    ([[coll(0, pg="1")], [comp(0)]], {"1": [1]}, r"m\.0\.et: node 0 \(coll0\): rank 0 runs a collective on group '1'"),
    ([[coll(0, pg="a"), coll(1, pg="b", deps=[0])], [coll(0, pg="b"), coll(1, pg="a", deps=[0])]],
     {"a": [0, 1], "b": [0, 1]}, r"across ranks deadlocks \(the ranks wait on each other\): rank \d node \d"),
    ([[Node(id=0, name="s", type=NODE_TYPE["COMM_SEND_NODE"],
            attr=[attr("comm_dst", int32_val=1), attr("comm_tag", int32_val=4)])], [comp(0)]], None,
     r"m\.0\.et: node 0 \(s\): send to rank 1 with tag 4 has no matching receive"),
    ([[Node(id=0, name="ckpt", type=NODE_TYPE["CHECKPOINT_NODE"])]], None,
     r"node 0 \(ckpt\): node type CHECKPOINT_NODE is not supported"),
])
def test_malformed_traces(tmp_path, per_rank, groups, pattern):
    prefix = write_ranks(tmp_path, "m", per_rank)
    args = [prefix]
    if groups is not None:
        (tmp_path / "g.json").write_text(json.dumps(groups))
        args += ["--comm-groups", tmp_path / "g.json"]
    message = error_of(tmp_path, *args)
    assert re.search(pattern, message), message


def test_process_group_disagreeing_across_ranks(tmp_path):
    def pg(ranks):
        return Node(id=0, name="pg", type=NODE_TYPE["METADATA_NODE"],
                    inputs=IOInfo(values=json.dumps([{"pg_name": "3", "ranks": ranks}])))
    prefix = write_ranks(tmp_path, "g", [[pg([0, 1])], [pg([0, 1, 2])], [pg([0, 1])]])
    message = error_of(tmp_path, prefix)
    assert re.search(r"g\.1\.et: node 0 \(pg\): process group '3' is ranks \[0, 1, 2\] here but \[0, 1\] in "
                     r".*g\.0\.et", message), message


def test_missing_rank_file_and_garbage(tmp_path):
    write_ranks(tmp_path, "x", [[comp(0)], [comp(0)]])
    (tmp_path / "x.1.et").rename(tmp_path / "x.2.et")
    assert "x.1.et: missing (ranks 0..2 need one file each)" in error_of(tmp_path, tmp_path / "x")
    assert "no Chakra files" in error_of(tmp_path, tmp_path / "nothing")
    (tmp_path / "j.0.et").write_bytes(b"\x05\xff\xff\xff\xff\xff")
    assert "j.0.et: byte 0: not a Chakra GlobalMetadata message" in error_of(tmp_path, tmp_path / "j")
    with pytest.raises(TraceImportError, match="not JSON"):
        (tmp_path / "bad.json").write_text("{")
        convert(write_ranks(tmp_path, "y", [[comp(0)]]), comm_groups=tmp_path / "bad.json")
