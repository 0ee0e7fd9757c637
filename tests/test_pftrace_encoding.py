"""The hand-written TracePacket encoder (sim.reports.pftrace) gives the bytes the
``perfetto`` package's protobuf messages serialize to: field numbers checked
against the protos' descriptors, each kind of packet compared byte for byte on
generated values, and a whole run's trace, laid out and encoded as columns,
compared with one built message by message (the way accsim wrote traces before
it streamed them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2",
                         reason="the perfetto package is a runtime dependency; install accsim")

import sim  # noqa: E402
from sim.reports import pftrace  # noqa: E402
from sim.reports.perfetto import SEQUENCE_ID, Model, Slice, Track, build_model, layout, write_pftrace  # noqa: E402

from conftest import ROOT  # noqa: E402

uint64s = st.integers(0, 2**64 - 1)
int64s = st.integers(-2**63, 2**63 - 1)
texts = st.text(max_size=40)
values = st.one_of(int64s, st.floats(allow_nan=False), texts, st.booleans())


def test_field_numbers_are_perfettos():
    fields = {
        pb.TracePacket: {"timestamp": pftrace._TIMESTAMP, "trusted_packet_sequence_id": pftrace._SEQUENCE_ID,
                         "track_event": pftrace._TRACK_EVENT, "interned_data": pftrace._INTERNED_DATA,
                         "sequence_flags": pftrace._SEQUENCE_FLAGS, "track_descriptor": pftrace._TRACK_DESCRIPTOR},
        pb.TrackEvent: {"debug_annotations": pftrace._DEBUG_ANNOTATIONS, "type": pftrace._TYPE,
                        "name_iid": pftrace._NAME_IID, "track_uuid": pftrace._TRACK_UUID,
                        "double_counter_value": pftrace._DOUBLE_COUNTER_VALUE, "flow_ids": pftrace._FLOW_IDS,
                        "terminating_flow_ids": pftrace._TERMINATING_FLOW_IDS},
        pb.DebugAnnotation: {"int_value": pftrace._INT_VALUE, "double_value": pftrace._DOUBLE_VALUE,
                             "string_value": pftrace._STRING_VALUE, "name": pftrace._ANNOTATION_NAME},
        pb.InternedData: {"event_names": pftrace._EVENT_NAMES},
    }
    for message, numbers in fields.items():
        for name, number in numbers.items():
            assert message.DESCRIPTOR.fields_by_name[name].number == number, (message, name)
    assert pb.TrackEvent.TYPE_SLICE_BEGIN == pftrace.TYPE_SLICE_BEGIN
    assert pb.TrackEvent.TYPE_SLICE_END == pftrace.TYPE_SLICE_END
    assert pb.TrackEvent.TYPE_COUNTER == pftrace.TYPE_COUNTER
    assert pb.CounterDescriptor.UNIT_SIZE_BYTES == pftrace.UNIT_SIZE_BYTES
    assert pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED == pftrace.SEQ_INCREMENTAL_STATE_CLEARED
    assert pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE == pftrace.SEQ_NEEDS_INCREMENTAL_STATE


@given(st.integers(0, 2**64 - 1) | int64s)
def test_varint_is_protobufs(value):
    message = pb.DebugAnnotation()
    if value >= 2**63:
        message.uint_value = value
        assert pftrace.int_field(3, value) == message.SerializeToString()
    else:
        message.int_value = value
        assert pftrace.int_field(pftrace._INT_VALUE, value) == message.SerializeToString()


def add_annotation(event, name, value) -> None:
    """A debug annotation the way accsim encodes an arg, with the protos."""
    annotation = event.debug_annotations.add()
    annotation.name = name
    if isinstance(value, (bool, str)):
        annotation.string_value = str(value)
    elif isinstance(value, int):
        annotation.int_value = value
    else:
        annotation.double_value = float(value)


@given(st.text(max_size=30), values)
def test_annotation_is_protobufs(name, value):
    event = pb.TrackEvent()
    add_annotation(event, name, value)
    assert pftrace.annotation(name, value) == event.SerializeToString()


@given(uint64s, texts, st.none() | uint64s, st.none() | st.integers(0, 2**31 - 1), st.booleans(),
       st.sampled_from([None, "bytes", "FLOP/s"]))
def test_track_descriptor_is_protobufs(uuid, name, parent, pid, counter, unit):
    d = pb.TrackDescriptor()
    d.uuid = uuid
    if pid is not None:
        d.process.pid = pid
        d.process.process_name = name
    else:
        d.name = name
        if parent is not None:
            d.parent_uuid = parent
        if counter:
            d.counter.SetInParent()
            if unit == "bytes":
                d.counter.unit = pb.CounterDescriptor.UNIT_SIZE_BYTES
            elif unit:
                d.counter.unit_name = unit
    assert pftrace.track_descriptor(uuid, name, parent, pid, counter, unit) == d.SerializeToString()


def reference_pftrace(model: Model) -> bytes:
    """A trace of ``model`` built message by message with the perfetto package's
    protos, in the order write_pftrace documents (the writer before streaming)."""
    from perfetto.trace_builder.proto_builder import TraceProtoBuilder
    builder = TraceProtoBuilder()

    def packet():
        p = builder.add_packet()
        p.trusted_packet_sequence_id = SEQUENCE_ID
        p.sequence_flags = (pb.TracePacket.SEQ_NEEDS_INCREMENTAL_STATE if len(builder.trace.packet) > 1
                            else pb.TracePacket.SEQ_INCREMENTAL_STATE_CLEARED)
        return p

    for track in model.tracks:
        d = packet().track_descriptor
        d.uuid = track.uuid
        if track.pid is not None:
            d.process.pid = track.pid
            d.process.process_name = track.name
            continue
        d.name = track.name
        if track.parent is not None:
            d.parent_uuid = track.parent
        if track.counter:
            d.counter.SetInParent()
            if track.unit == "bytes":
                d.counter.unit = pb.CounterDescriptor.UNIT_SIZE_BYTES
            elif track.unit:
                d.counter.unit_name = track.unit
    events = []
    for order, item in enumerate(model.slices):
        if item.end_ns == item.start_ns:
            events += [(item.start_ns, 1, order, 0, item), (item.start_ns, 1, order, 1, item)]
        else:
            events += [(item.start_ns, 2, order, 0, item), (item.end_ns, 0, order, 1, item)]
    for uuid, samples in model.counters.items():
        events += [(t, 3, uuid, 0, value) for t, value in samples]
    events.sort(key=lambda e: e[:4])
    interned: dict[str, int] = {}
    for t, kind, key, end, item in events:
        p = packet()
        p.timestamp = t
        event = p.track_event
        if kind == 3:
            event.type = pb.TrackEvent.TYPE_COUNTER
            event.track_uuid = key
            event.double_counter_value = float(item)
            continue
        event.track_uuid = item.track
        if end:
            event.type = pb.TrackEvent.TYPE_SLICE_END
            continue
        event.type = pb.TrackEvent.TYPE_SLICE_BEGIN
        if item.name not in interned:
            interned[item.name] = len(interned) + 1
            entry = p.interned_data.event_names.add()
            entry.iid, entry.name = interned[item.name], item.name
        event.name_iid = interned[item.name]
        for name, value in item.args.items():
            add_annotation(event, name, value)
        event.flow_ids.extend(item.flows_out)
        event.terminating_flow_ids.extend(item.flows_in)
    return builder.serialize()


slices = st.builds(lambda track, start, length, name, args, out, into:
                   Slice(track, start, start + length, name, args, out, into),
                   st.integers(1, 3), st.integers(0, 50), st.integers(0, 3), st.sampled_from(["a", "b", "gemm"]),
                   st.dictionaries(st.sampled_from(["op_id", "flops", "phase", "x"]), values, max_size=3),
                   st.lists(uint64s, max_size=2), st.lists(uint64s, max_size=2))


@settings(max_examples=80, deadline=None)
@given(st.lists(slices, max_size=12), st.lists(st.tuples(st.integers(0, 60), st.floats(allow_nan=False)),
                                               max_size=6), st.booleans())
def test_generated_models_give_the_reference_bytes(tmp_path_factory, items, samples, described):
    """Without track descriptors the first event is the packet that clears the incremental state."""
    tracks = [Track(1, "node0/gpu0", pid=1), Track(2, "sm", parent=1), Track(3, "comm", parent=1),
              Track(4, "achieved FLOP/s", parent=1, counter=True, unit="FLOP/s")]
    model = Model(tracks=tracks if described else [], slices=items, counters={4: sorted(dict(samples).items())})
    path = tmp_path_factory.mktemp("pf") / "t.pftrace"
    write_pftrace(model, path)
    assert path.read_bytes() == reference_pftrace(model)


def test_a_runs_trace_is_the_reference_bytes_and_small_batches_change_nothing(tmp_path, monkeypatch):
    out = tmp_path / "run"
    sim.run(str(ROOT / "scenarios" / "quickstart.yaml"),
            ["parallel.microbatches=2", "parallel.global_batch=null"]).write(out)
    model = build_model(out)                          # an object per slice, args as dicts (as for JSON)
    assert len(model.slices) > 1000 and model.counters
    assert sum(bool(s.flows_out) for s in model.slices) > 10
    expected = reference_pftrace(model)
    write_pftrace(model, tmp_path / "a.pftrace")
    assert (tmp_path / "a.pftrace").read_bytes() == expected
    monkeypatch.setattr(pftrace, "BATCH_BYTES", 7)    # gather a packet or two at a time
    write_pftrace(layout(out), tmp_path / "b.pftrace")   # columns (accsim perfetto)
    assert (tmp_path / "b.pftrace").read_bytes() == expected
    assert not [p for p in Path(tmp_path).iterdir() if p.name.startswith(".")]    # no temporaries left


def test_a_filtered_layout_is_the_reference_bytes(tmp_path):
    out = tmp_path / "run"
    sim.run(str(ROOT / "scenarios" / "quickstart.yaml"),
            ["parallel.microbatches=2", "parallel.global_batch=null"]).write(out)
    for window in ({"devices": "node0/gpu[01]", "max_slices": 300}, {"start_s": 0.01, "end_s": 0.06},
                   {"devices": "network"}, {"max_slices": 0}):
        laid = layout(out, **window)
        write_pftrace(laid, tmp_path / "w.pftrace")
        assert (tmp_path / "w.pftrace").read_bytes() == reference_pftrace(laid.to_model()), window


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(["float", "int", "string"]), st.lists(st.integers(0, 2**63 - 1) | st.none(), max_size=40),
       st.lists(st.floats(allow_nan=False) | st.none(), max_size=40), st.integers(0, 3))
def test_annotation_columns_are_annotations_of_each_value(kind, ints, floats, repeat):
    import pyarrow as pa
    strings = [None if i is None else str(i) for i in ints]
    values = {"float": floats, "int": ints * (200 * repeat + 1), "string": strings}[kind]
    array = pa.array(values, {"float": pa.float64(), "int": pa.int64(), "string": pa.string()}[kind])
    expected = [b"" if v is None else pftrace.annotation("x", v) for v in values]
    assert pftrace.annotation_pieces("x", array).tolist() == expected
    assert pftrace.annotation_pieces("x", array.slice(1)).tolist() == expected[1:]      # an offset into the buffers


def test_many_distinct_integers_take_the_vectorized_path():
    import pyarrow as pa
    values = [None if i % 97 == 0 else i * 7919 % 2**40 for i in range(10000)]
    expected = [b"" if v is None else pftrace.annotation("op_id", v) for v in values]
    assert pftrace.annotation_pieces("op_id", pa.array(values, pa.int64())).tolist() == expected


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 5)), max_size=25))
def test_lanes_are_the_greedy_colouring(intervals):
    import numpy as np
    from sim.reports.perfetto import _assign_lanes
    starts = np.array([s for s, _ in intervals], dtype=np.int64)
    ends = np.array([s + d for s, d in intervals], dtype=np.int64)
    lane_end: list[int] = []                  # reference: lowest lane free at each start, in start order
    expected = [0] * len(intervals)
    for i in sorted(range(len(intervals)), key=lambda i: (starts[i], ends[i], i)):
        lane = next((k for k, end in enumerate(lane_end) if end <= starts[i]), len(lane_end))
        lane_end[lane:lane + 1] = [int(ends[i])]
        expected[i] = lane
    assert _assign_lanes(starts, ends).tolist() == expected
