"""Trace parsing and validation: every error names the file, the op and what was expected."""

import json

import pytest
from hypothesis import given, settings, strategies as st

from sim.errors import TraceError
from sim.workload.trace import (COMM_OPS, OP_TYPES, Op, critical_path, load_trace, validate_ops,
                                write_trace)


def write_jsonl(tmp_path, records, name="t.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def rec(i, **kw):
    base = {"id": i, "name": f"op{i}", "op": "gemm", "flops": 10.0, "bytes_read": 4.0,
            "bytes_written": 4.0, "deps": []}
    base.update(kw)
    return base


@pytest.mark.parametrize("bad,pattern", [
    (rec(3, flops="ten"), r"line 1, op 3: field 'flops': expected a number, got 'ten'"),
    ({k: v for k, v in rec(3).items() if k != "bytes_read"}, r"op 3: missing required field 'bytes_read'"),
    (rec(3, op="conv9d"), r"op 3: field 'op': unknown op type 'conv9d'"),
    (rec(3, bytes_written=-1), r"op 3: field 'bytes_written': expected a non-negative number"),
    (rec(3, deps=[99]), r"op 3: depends on unknown op 99"),
    (rec(3, deps=["a"]), r"op 3: field 'deps': expected a list of integer op ids"),
    (rec(3, m=1.5), r"op 3: field 'm': expected an integer"),
    (rec(3, unit="fpga"), r"op 3: field 'unit': unknown unit kind 'fpga'"),
    (rec(3, op="copy"), r"op 3: copy ops need 'dst_tier'"),
    (rec(3, frees=["ghost"]), r"op 3: frees tensor 'ghost' that no op produces"),
    (rec(3, op="allreduce"), r"op 3: allreduce ops need 'group'"),
    (rec(3, op="allreduce", group=[0, 1], mirror_groups=[[2]]), r"op 3: field 'mirror_groups'"),
    ({"name": "x"}, r"line 1: missing required field 'id'"),
    (rec(3, op="host"), r"op 3: host ops need 'duration_s'"),
    (rec(3, op="conv2d", ifmap_h=8, ifmap_w=8, filter_h=3), r"op 3: conv2d ops need 'filter_w', 'channels', 'filters'"),
    (rec(3, op="conv2d", ifmap_h=8, ifmap_w=8, filter_h=3, filter_w=3, channels=4, filters=6, m=4),
     r"op 3: conv2d ops take their GEMM shape from the ifmap and filter fields"),
    (rec(3, op="conv2d", ifmap_h=8, ifmap_w=8, filter_h=9, filter_w=3, channels=4, filters=6),
     r"op 3: filter 9x3 is larger than the ifmap 8x8"),
    (rec(3, op="conv2d", ifmap_h=8, ifmap_w=8, filter_h=3, filter_w=3, channels=4, filters=6, groups=4),
     r"op 3: groups 4 must divide channels \(4\) and filters \(6\)"),
    (rec(3, op="conv2d", ifmap_h=8, ifmap_w=8, filter_h=3, filter_w=3, channels=4, filters=6, stride_h=0),
     r"op 3: field 'stride_h': expected a positive integer"),
    (rec(True), r"field 'id': expected an integer"),
])
def test_each_validation_error_is_one_clear_line(tmp_path, bad, pattern):
    path = write_jsonl(tmp_path, [bad])
    with pytest.raises(TraceError, match=pattern) as info:
        load_trace(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_cycle_names_the_ops_on_it(tmp_path):
    path = write_jsonl(tmp_path, [rec(1, deps=[3], stream=0), rec(2, deps=[1], stream=1),
                                  rec(3, deps=[2], stream=2), rec(4)])
    with pytest.raises(TraceError, match=r"dependency cycle .*: (1 \(op1\) -> 2 \(op2\) -> 3 \(op3\) -> 1 \(op1\)"
                                         r"|2 \(op2\) -> 3 \(op3\) -> 1 \(op1\) -> 2 \(op2\)"
                                         r"|3 \(op3\) -> 1 \(op1\) -> 2 \(op2\) -> 3 \(op3\))"):
        load_trace(path)


def test_dependency_on_a_later_op_of_the_same_stream_is_a_cycle(tmp_path):
    path = write_jsonl(tmp_path, [rec(1, deps=[2]), rec(2)])
    with pytest.raises(TraceError, match="dependency cycle"):
        load_trace(path)


def test_duplicate_ids_and_bad_json(tmp_path):
    with pytest.raises(TraceError, match="op 1: duplicate id"):
        load_trace(write_jsonl(tmp_path, [rec(1), rec(1)]))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1,\n')
    with pytest.raises(TraceError, match=r"bad.jsonl: line 1: invalid JSON"):
        load_trace(bad)


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(TraceError, match="not found"):
        load_trace(tmp_path / "nope.jsonl")
    other = tmp_path / "t.csv"
    other.write_text("id\n")
    with pytest.raises(TraceError, match="expected .jsonl or .arrow"):
        load_trace(other)


def test_critical_path_in_ops_and_flops():
    ops = [Op(0, "a", "gemm", 5, 0, 0, stream=0), Op(1, "b", "gemm", 1, 0, 0, stream=1),
           Op(2, "c", "gemm", 1, 0, 0, stream=0, deps=(1,)), Op(3, "d", "gemm", 100, 0, 0, stream=2)]
    trace = validate_ops(ops, "t")
    length, path = critical_path(trace)
    assert length == 2.0 and path in ([0, 2], [1, 2])
    assert critical_path(trace, {op.id: op.flops for op in ops}) == (100.0, [3])


op_strategy = st.builds(
    lambda i, kind, flops, rd, wr, stream, m, layer: Op(
        id=i, name=f"op{i}", op=kind, flops=2.0 * m**3 if kind in ("gemm", "gemv") and m else flops,
        bytes_read=rd, bytes_written=wr, stream=stream,
        m=None if kind == "conv2d" else m, n=None if kind == "conv2d" else m,
        k=None if kind == "conv2d" else m, layer=layer, dtype="bf16",
        dst_tier="hbm" if kind == "copy" else None,
        duration_s=1e-6 if kind == "host" else None,
        **(dict(ifmap_h=56, ifmap_w=56, filter_h=3, filter_w=3, channels=64, filters=128, stride_h=1)
           if kind == "conv2d" else {}),
        group=(0, 1) if kind in COMM_OPS else (), mirror_groups=((2, 3),) if kind in COMM_OPS else (),
        rank=stream, stage=layer, phase="fwd" if layer else None),
    st.just(0), st.sampled_from(OP_TYPES), st.floats(0, 1e15), st.floats(0, 1e12),
    st.floats(0, 1e12), st.integers(0, 3), st.one_of(st.none(), st.integers(1, 8192)),
    st.one_of(st.none(), st.integers(0, 95)))


@settings(max_examples=40, deadline=None)
@given(st.lists(op_strategy, min_size=1, max_size=20), st.data())
def test_jsonl_and_arrow_round_trip_to_the_same_ops(tmp_path_factory, ops, data):
    ops = [Op(**{**op.fields(), "id": i,
                 "deps": tuple(sorted(set(data.draw(st.lists(st.integers(0, i - 1), max_size=3)))))
                 if i else ()})
           for i, op in enumerate(ops)]
    folder = tmp_path_factory.mktemp("rt")
    for suffix in (".jsonl", ".arrow"):
        path = folder / f"trace{suffix}"
        write_trace(ops, path)
        assert load_trace(path).ops == tuple(ops)


@pytest.mark.parametrize("bad,pattern", [
    (rec(2**63), r"field 'id': expected an integer in \[-9223372036854775808, 9223372036854775807\]"),
    (rec(3, deps=[2**64]), r"op 3: field 'deps': expected an integer in"),
    (rec(3, flops=1e300), r"op 3: field 'flops': expected at most 1e\+30"),
    (rec(3, bytes_read=2.0**70), r"op 3: field 'bytes_read': expected at most"),
    (rec(3, m=4, n=4), r"op 3: give all of m, n and k"),
    (rec(3, m=4, n=4, k=4, flops=10.0), r"op 3: field 'flops': 10 disagrees with 2 m n k batch = 2 x 4 x 4 x 4 x 1 = 128"),
    (rec(3, m=2**40, n=2**40, k=2**40), r"op 3: the shape .* FLOPs; at most 1e\+30"),
    (rec(3, op="allreduce", group=[0, 0]), r"op 3: field 'group': a rank appears twice"),
    (rec(3, op="allreduce", group=[0, 1], tensor="t"), r"op 3: a allreduce op cannot allocate or free tensors"),
    (rec(3, alloc_bytes=4), r"op 3: field 'alloc_bytes': needs 'tensor'"),
    (rec(3, dep=[1]), r"op 3: unknown field 'dep'"),
    (rec(3, rank=2**30), r"op 3: field 'rank': expected an integer in \[0, 1048576\]"),
    (rec(3, frees=["a", "a"]), r"op 3: field 'frees': a tensor is listed twice"),
    (rec(3, duration_s=float("inf")), r"op 3: field 'duration_s': expected a finite number"),
])
def test_scalars_are_bounded_and_shapes_agree_with_flops(tmp_path, bad, pattern):
    with pytest.raises(TraceError, match=pattern) as info:
        load_trace(write_jsonl(tmp_path, [bad]))
    assert "\n" not in str(info.value)


def test_gemm_flops_are_derived_from_the_shape_and_own_fields_are_kept_out(tmp_path):
    record = {k: v for k, v in rec(0, m=8, n=4, k=2, batch=3, x_source="profiler").items() if k != "flops"}
    (op,) = load_trace(write_jsonl(tmp_path, [record])).ops
    assert op.flops == 2 * 8 * 4 * 2 * 3


def tensor_ops(*specs):
    return [rec(i, **kw) for i, kw in enumerate(specs)]


@pytest.mark.parametrize("ops,pattern", [
    (tensor_ops({"tensor": "a"}, {"frees": ["a"], "deps": [0]}, {"frees": ["a"], "deps": [1]}),
     r"op 2: frees tensor 'a' again: no op produces it between op 1, which freed it, and this one"),
    (tensor_ops({"tensor": "a"}, {"frees": ["a"], "deps": [0], "stream": 1}, {"frees": ["a"], "deps": [0], "stream": 2}),
     r"op 2: frees tensor 'a', which op 1 frees too, and neither runs after the other"),
    (tensor_ops({"tensor": "a", "stream": 1}, {"frees": ["a"], "stream": 2}),
     r"op 1: frees tensor 'a' before it exists: no op producing it \(0\) comes before it"),
    (tensor_ops({"frees": ["a"]}, {"tensor": "a"}),
     r"op 0: frees tensor 'a' before it exists"),
    (tensor_ops({"tensor": "a", "rank": 0}, {"frees": ["a"], "rank": 1, "deps": [0]}),
     r"op 1: frees tensor 'a' that no op produces on rank 1"),
])
def test_each_tensor_is_freed_once_and_only_after_it_exists(tmp_path, ops, pattern):
    with pytest.raises(TraceError, match=pattern):
        load_trace(write_jsonl(tmp_path, ops))


def test_frees_after_a_path_through_other_streams_are_fine(tmp_path):
    ops = tensor_ops({"tensor": "a", "stream": 1}, {"stream": 2, "deps": [0]}, {"stream": 3, "frees": ["a"], "deps": [1]},
                     {"stream": 1, "tensor": "a", "deps": [2]}, {"stream": 1, "frees": ["a"]})
    assert len(load_trace(write_jsonl(tmp_path, ops)).ops) == 5     # produced, freed, produced again, freed


def test_files_that_are_not_utf8_json_or_arrow_are_one_line(tmp_path):
    cases = {
        "bad.jsonl": b'{"id": 0, "name": "\xff"}\n',
        "deep.jsonl": b"[" * 100000 + b"]" * 100000 + b"\n",
        "digits.jsonl": b'{"id": ' + b"9" * 5000 + b"}\n",
        "garbage.arrow": b"ARROW1\x00\x00" + bytes(range(256)) * 4,
        "empty.arrow": b"",
    }
    good = tmp_path / "good.arrow"
    write_trace([Op(id=i, name=f"op{i}", op="elementwise", flops=1.0, bytes_read=1.0, bytes_written=1.0)
                 for i in range(50)], good)
    data = good.read_bytes()
    cases["truncated.arrow"] = data[: len(data) // 2]
    flipped = bytearray(data)
    for index in range(64, len(flipped), 97):
        flipped[index] ^= 0xFF
    cases["flipped.arrow"] = bytes(flipped)
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        try:
            load_trace(path)
        except TraceError as exc:
            message = str(exc)
            assert message.startswith(str(path)) and "\n" not in message and len(message) < 400, message
        else:
            assert name == "flipped.arrow", name    # a flip may land in padding only


@settings(max_examples=40, deadline=None)
@given(ids=st.one_of(st.permutations(list(range(6))),
                     st.lists(st.integers(-3, 20), min_size=1, max_size=6, unique=True)))
def test_ops_are_found_by_id_whatever_the_ids(ids):
    """op(), find(), by_id() and positions_of() on dense ids in any order (the compact index of
    generated traces) and on sparse or negative ids (a dictionary) agree."""
    ops = [Op(id=i, name=f"op{i}", op="gemm", flops=1.0, bytes_read=0.0, bytes_written=0.0) for i in ids]
    trace = validate_ops(ops, "t")
    values = trace.by_id([f"v{position}" for position in range(len(ops))])
    for position, op_id in enumerate(ids):
        assert trace.op(op_id) is ops[position] and trace.find(op_id) is ops[position]
        assert values[op_id] == f"v{position}"
    assert list(values) == ids and len(values) == len(ids)
    assert trace.positions_of(list(reversed(ids))).tolist() == list(reversed(range(len(ids))))
    for missing in (-100, 100, max(ids) + 1, "x"):
        assert trace.find(missing) is None and values.get(missing) is None and missing not in values
        with pytest.raises(KeyError):
            trace.op(missing)
        if missing != "x":
            with pytest.raises(KeyError):
                trace.positions_of([ids[0], missing])


@st.composite
def _graph_traces(draw):
    """Ops with ids in any order, deps on any ops (cycles included), collectives on
    groups, sendrecvs, and ranks and streams small (one 16-bit sort key) or large."""
    count = draw(st.integers(1, 30))
    ids = draw(st.permutations(range(count))) if draw(st.booleans()) else \
        draw(st.lists(st.integers(0, 10**6), min_size=count, max_size=count, unique=True))
    big = draw(st.booleans())
    ranks = st.integers(0, 2**20 if big else 3)
    streams = st.integers(0, 2**40 if big else 3)
    ops = []
    for i in ids:
        kind = draw(st.sampled_from(("gemm", "allreduce", "sendrecv", "copy")))
        group = tuple(draw(st.lists(ranks, min_size=2, max_size=4, unique=True))) if kind in COMM_OPS else ()
        deps = tuple(draw(st.lists(st.sampled_from(ids), max_size=3, unique=True)))
        ops.append(Op(id=i, name=f"op{i}", op=kind, flops=0.0, bytes_read=1.0, bytes_written=1.0,
                      deps=tuple(d for d in deps if d != i), stream=draw(streams),
                      rank=group[0] if group else draw(ranks), group=group,
                      dst_tier="hbm" if kind == "copy" else None))
    return ops


@settings(max_examples=150, deadline=None)
@given(_graph_traces())
def test_edge_arrays_and_acyclicity_match_the_reference_generator(ops):
    """The numpy edge arrays are ``_edges`` (the plain reference) in its order, and
    the acyclicity check (with its shortcuts) agrees with Kahn's algorithm on ids."""
    from sim.workload.trace import (_acyclic, _dep_positions, _edge_arrays, _edges, _kahn, _runs_acyclic,
                                    topological_order)
    position = {op.id: i for i, op in enumerate(ops)}
    owner, dep_pos = _dep_positions(ops)
    src, dst = _edge_arrays(ops, dep_pos, owner)
    assert list(zip(src.tolist(), dst.tolist())) == [(position[a], position[b]) for a, b in _edges(ops)]
    acyclic = topological_order(ops) is not None
    assert _acyclic(len(ops), src, dst) == acyclic
    assert _kahn(len(ops), src, dst) == acyclic
    # the proof through runs of ops is sound, with runs cut anywhere (validate_ops: where the rank changes)
    every = list(range(1, len(ops)))
    for breaks in ((), every[::2], every[::3], every):
        assert _acyclic(len(ops), src, dst, breaks) == acyclic
        if _runs_acyclic(len(ops), src, dst, src > dst, breaks, shortest=0):
            assert acyclic


def test_op_fields_positions_equality_pickling_and_replace():
    """An op takes OP_FIELDS by position; it compares, hashes, pickles and
    replaces by value whether or not it sets a rare field (its slim layout)."""
    import inspect
    import pickle

    from sim.workload.trace import OP_FIELDS, make_op
    assert tuple(inspect.signature(Op).parameters) == OP_FIELDS
    plain = make_op(7, "a", "gemm", 1.0, 2.0, 3.0, (1, 2), 0, "bf16", None, (), 3, 1, 1e-3, (), (), None, 0, 1, 0,
                    "fwd", None)
    assert plain == Op(id=7, name="a", op="gemm", flops=1.0, bytes_read=2.0, bytes_written=3.0, deps=(1, 2),
                       dtype="bf16", layer=3, rank=1, duration_s=1e-3, stage=0, microbatch=1, chunk=0, phase="fwd")
    rare = plain.replace(tensor="act", alloc_bytes=8.0, m=2, n=2, k=2, batch=3)
    assert (rare.tensor, rare.alloc_bytes, rare.batch, plain.tensor, plain.batch, plain.frees) == \
        ("act", 8.0, 3, None, 1, ())
    for op in (plain, rare):
        assert Op(*op.fields().values()) == op and hash(Op(**op.fields())) == hash(op)
        assert pickle.loads(pickle.dumps(op)) == op and repr(op).startswith("Op(id=7, name='a'")
    assert plain != rare and rare.replace(tensor=None, alloc_bytes=None, m=None, n=None, k=None, batch=1) == plain
    with pytest.raises(AttributeError):
        plain.tensor = "x"
