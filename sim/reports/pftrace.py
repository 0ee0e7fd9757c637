"""Perfetto ``TracePacket`` bytes written directly, streamed to the file.

A Perfetto trace is a ``Trace`` message: ``repeated TracePacket packet = 1``,
so a file is the concatenation of ``0x0a, varint(length), packet bytes``
(protobuf wire format, https://protobuf.dev/programming-guides/encoding/).
accsim writes few kinds of packets (track descriptors, slice begin and end,
counter values, interned event names); building a Python protobuf message per
packet costs tens of microseconds, so this module encodes exactly those
fields itself, caching the bytes that repeat (an annotation such as
``category: compute``, a track's end event), and writes them in batches.

Field numbers and wire types are those of Perfetto's protos
(protos/perfetto/trace/trace_packet.proto, track_event/track_event.proto,
track_event/debug_annotation.proto, track_event/track_descriptor.proto,
track_event/process_descriptor.proto, track_event/counter_descriptor.proto,
interned_data/interned_data.proto, in google/perfetto); every message's fields
are written in ascending field number, as protobuf's own serializer does, so
the bytes equal ``SerializeToString`` of the same message (tested against the
``perfetto`` package's protos).
"""

from __future__ import annotations

import struct
from typing import BinaryIO

import numpy as np

# TracePacket
_TIMESTAMP = 8                  # uint64
_SEQUENCE_ID = 10               # uint32 trusted_packet_sequence_id
_TRACK_EVENT = 11               # TrackEvent
_INTERNED_DATA = 12             # InternedData
_SEQUENCE_FLAGS = 13            # uint32
_TRACK_DESCRIPTOR = 60          # TrackDescriptor
SEQ_INCREMENTAL_STATE_CLEARED = 1
SEQ_NEEDS_INCREMENTAL_STATE = 2
# TrackEvent
_DEBUG_ANNOTATIONS = 4          # repeated DebugAnnotation
_TYPE = 9                       # enum Type
_NAME_IID = 10                  # uint64
_TRACK_UUID = 11                # uint64
_DOUBLE_COUNTER_VALUE = 44      # double
_FLOW_IDS = 47                  # repeated fixed64 (not packed)
_TERMINATING_FLOW_IDS = 48      # repeated fixed64 (not packed)
TYPE_SLICE_BEGIN = 1
TYPE_SLICE_END = 2
TYPE_COUNTER = 4
# DebugAnnotation
_INT_VALUE = 4                  # int64
_DOUBLE_VALUE = 5               # double
_STRING_VALUE = 6               # string
_ANNOTATION_NAME = 10           # string
# InternedData.event_names (2) of EventName {iid = 1; name = 2}
_EVENT_NAMES = 2
# TrackDescriptor {uuid = 1; name = 2; process = 3; parent_uuid = 5; counter = 8}
# ProcessDescriptor {pid = 1 (int32); process_name = 6}; CounterDescriptor {unit = 3; unit_name = 6}
UNIT_SIZE_BYTES = 3

_VARINT, _FIXED64, _LENGTH = 0, 1, 2
_double = struct.Struct("<d").pack
_fixed64 = struct.Struct("<Q").pack
_SMALL = [bytes([i]) for i in range(128)]
_ANNOTATION_KEY = bytes([_DEBUG_ANNOTATIONS << 3 | _LENGTH])


def varint(value: int) -> bytes:
    """Base-128 varint; a negative int64 is written as its two's complement (10 bytes)."""
    if 0 <= value < 0x80:
        return _SMALL[value]
    if 0 < value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def int_fields(field: int, values: np.ndarray) -> list[bytes]:
    """``int_field(field, v)`` for each of non-negative ``values`` at once (numpy)."""
    rest = np.asarray(values, dtype=np.uint64)
    prefix = key(field, _VARINT)
    width = len(prefix) + 10
    table = np.zeros((len(rest), width), dtype=np.uint8)
    table[:, :len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    length = np.full(len(rest), len(prefix) + 1, dtype=np.int64)
    for column in range(len(prefix), width):
        low = (rest & np.uint64(0x7F)).astype(np.uint8)
        rest = rest >> np.uint64(7)
        more = rest > 0
        table[:, column] = low | (more.astype(np.uint8) << 7)
        if not more.any():
            break
        length += more
    flat = table.tobytes()
    return [flat[start:start + n] for start, n in zip(range(0, len(flat), width), length.tolist())]


def key(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def int_field(field: int, value: int) -> bytes:
    return key(field, _VARINT) + varint(value)


def bytes_field(field: int, payload: bytes) -> bytes:
    return key(field, _LENGTH) + varint(len(payload)) + payload


def string_field(field: int, text: str) -> bytes:
    return bytes_field(field, text.encode("utf-8", "surrogatepass"))


def double_field(field: int, value: float) -> bytes:
    return key(field, _FIXED64) + _double(value)


def annotation(name: str, value) -> bytes:
    """A DebugAnnotation: ints as int_value, strings and booleans as
    string_value (``True``), anything else as double_value."""
    if isinstance(value, (bool, str)):
        body = string_field(_STRING_VALUE, str(value))
    elif isinstance(value, int):
        body = int_field(_INT_VALUE, value)
    else:
        body = double_field(_DOUBLE_VALUE, float(value))
    return bytes_field(_DEBUG_ANNOTATIONS, body + string_field(_ANNOTATION_NAME, name))


def annotation_column(name: str, array) -> np.ndarray:
    """``annotation(name, v)`` for each value of an Arrow array (``b""`` where
    null), as an object array: floats (a fixed-length encoding) at once with
    numpy, other columns once per distinct value, integer columns with many
    distinct values (op ids) through ``int_fields``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    n = len(array)
    suffix = string_field(_ANNOTATION_NAME, name)
    valid = np.ones(n, dtype=bool) if not array.null_count else array.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_float64(array.type) and n:
        head = key(_DOUBLE_VALUE, _FIXED64)
        prefix = key(_DEBUG_ANNOTATIONS, _LENGTH) + varint(len(head) + 8 + len(suffix)) + head
        width = len(prefix) + 8 + len(suffix)
        table = np.empty((n, width), dtype=np.uint8)
        table[:, :len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
        values = array.fill_null(0.0).to_numpy(zero_copy_only=False).astype("<f8")
        table[:, len(prefix):len(prefix) + 8] = values.view(np.uint8).reshape(n, 8)
        table[:, len(prefix) + 8:] = np.frombuffer(suffix, dtype=np.uint8)
        flat = table.tobytes()
        out = np.empty(n, dtype=object)
        out[:] = [flat[i:i + width] for i in range(0, n * width, width)]
    elif (pa.types.is_integer(array.type) and n > 4096 and pc.count_distinct(array).as_py() > n // 4
          and (pc.min(array).as_py() or 0) >= 0):
        head = _ANNOTATION_KEY
        fields = int_fields(_INT_VALUE, array.fill_null(0).to_numpy(zero_copy_only=False))
        out = np.empty(n, dtype=object)
        out[:] = [head + varint(len(f) + len(suffix)) + f + suffix for f in fields]
    else:
        coded = pc.dictionary_encode(array)
        values = coded.dictionary.to_pylist()
        table = np.array([annotation(name, v) for v in values] + [b""], dtype=object)
        return table[coded.indices.fill_null(len(values)).to_numpy(zero_copy_only=False)]
    out[~valid] = b""
    return out


def track_descriptor(uuid: int, name: str, parent: int | None = None, pid: int | None = None,
                     counter: bool = False, unit: str | None = None) -> bytes:
    """TrackDescriptor: a process track (``pid``), or a named track, optionally a
    child of ``parent`` and a counter (``unit`` "bytes", or a unit name)."""
    body = int_field(1, uuid)
    if pid is not None:
        body += bytes_field(3, int_field(1, pid) + string_field(6, name))
        return body
    body = body + string_field(2, name)
    if parent is not None:
        body += int_field(5, parent)
    if counter:
        if unit == "bytes":
            body += bytes_field(8, int_field(3, UNIT_SIZE_BYTES))
        elif unit:
            body += bytes_field(8, string_field(6, unit))
        else:
            body += bytes_field(8, b"")
    return body


class PacketWriter:
    """TracePackets on one trusted sequence, written to ``sink`` in batches.

    The first packet clears the sequence's incremental state (interned names),
    every later one needs it, as Perfetto's TrackEvent interning requires.
    Timestamps come encoded (``timestamps``, numpy-fast for a whole trace).
    Packet fields go in ascending number: timestamp (8), sequence id (10),
    event (11), interned data (12), flags (13), track descriptor (60)."""

    def __init__(self, sink: BinaryIO, sequence_id: int, batch_packets: int = 65536):
        self.sink = sink
        self.batch_packets = batch_packets
        self.packets = 0
        self._parts: list[bytes] = []
        self._sequence = int_field(_SEQUENCE_ID, sequence_id)
        self._flags = int_field(_SEQUENCE_FLAGS, SEQ_NEEDS_INCREMENTAL_STATE)
        self._flags_first = int_field(_SEQUENCE_FLAGS, SEQ_INCREMENTAL_STATE_CLEARED)
        self._interned: dict[str, bytes] = {}       # name -> its type and name_iid fields
        self._uuids: dict[int, bytes] = {}
        self._annotations: dict[tuple, tuple[type, bytes]] = {}
        self._ends: dict[int, bytes] = {}
        self._counters: dict[int, bytes] = {}
        self._event_key = key(_TRACK_EVENT, _LENGTH)
        self._begin_type = int_field(_TYPE, TYPE_SLICE_BEGIN)
        self._flow_key = key(_FLOW_IDS, _FIXED64)
        self._terminating_key = key(_TERMINATING_FLOW_IDS, _FIXED64)
        self._counter_value_key = key(_DOUBLE_COUNTER_VALUE, _FIXED64)

    @staticmethod
    def timestamps(times_ns: np.ndarray) -> list[bytes]:
        """The encoded timestamp field of each of ``times_ns`` (non-negative)."""
        return int_fields(_TIMESTAMP, times_ns)

    def _add(self, head: bytes, tail: bytes = b"") -> None:
        """A packet of ``head``, the sequence flags, ``tail``."""
        flags = self._flags if self.packets else self._flags_first
        body = head + flags + tail
        self._parts.append(b"\x0a" + varint(len(body)) + body)
        self.packets += 1
        if len(self._parts) >= self.batch_packets:
            self.flush()

    def flush(self) -> None:
        if self._parts:
            self.sink.write(b"".join(self._parts))
            self._parts.clear()

    def descriptor(self, descriptor: bytes) -> None:
        self._add(self._sequence, bytes_field(_TRACK_DESCRIPTOR, descriptor))

    def _args(self, args: dict) -> list[bytes]:
        cache = self._annotations
        parts = []
        for name_value in args.items():
            value = name_value[1]
            kind = type(value)
            hit = cache.get(name_value)
            if hit is not None and hit[0] is kind:
                parts.append(hit[1])
                continue
            encoded = annotation(*name_value)
            if kind is not float or value != 0:          # 0.0 and -0.0 are one dict key
                cache[name_value] = (kind, encoded)
            parts.append(encoded)
        return parts

    def begin(self, timestamp: bytes, track: int, name: str, args: dict, flows_out=(), flows_in=(),
              annotations: bytes | None = None) -> None:
        """TYPE_SLICE_BEGIN with an interned name (defined in this packet the
        first time it is used), debug annotations (``args``, or already encoded
        as ``annotations``) and flow ids."""
        interned = b""
        name_iid = self._interned.get(name)
        if name_iid is None:
            iid = len(self._interned) + 1
            name_iid = self._interned[name] = self._begin_type + int_field(_NAME_IID, iid)
            entry = bytes_field(_EVENT_NAMES, int_field(1, iid) + string_field(2, name))
            interned = bytes_field(_INTERNED_DATA, entry)
        track_uuid = self._uuids.get(track)
        if track_uuid is None:
            track_uuid = self._uuids[track] = int_field(_TRACK_UUID, track)
        parts = [annotations] if annotations is not None else self._args(args) if args else []
        parts.append(name_iid)
        parts.append(track_uuid)
        for flow in flows_out:
            parts.append(self._flow_key + _fixed64(flow))
        for flow in flows_in:
            parts.append(self._terminating_key + _fixed64(flow))
        event = b"".join(parts)
        self._add(b"".join((timestamp, self._sequence, self._event_key, varint(len(event)), event, interned)))

    def end(self, timestamp: bytes, track: int) -> None:
        event = self._ends.get(track)
        if event is None:
            event = self._ends[track] = self._sequence + bytes_field(
                _TRACK_EVENT, int_field(_TYPE, TYPE_SLICE_END) + int_field(_TRACK_UUID, track))
        self._add(timestamp + event)

    def counter(self, timestamp: bytes, track: int, value: float) -> None:
        prefix = self._counters.get(track)
        if prefix is None:
            body = int_field(_TYPE, TYPE_COUNTER) + int_field(_TRACK_UUID, track) + self._counter_value_key
            prefix = self._counters[track] = self._sequence + self._event_key + varint(len(body) + 8) + body
        self._add(timestamp + prefix + _double(float(value)))
