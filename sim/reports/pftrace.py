"""Perfetto ``TracePacket`` bytes written directly, a column of packets at a time.

A Perfetto trace is a ``Trace`` message: ``repeated TracePacket packet = 1``,
so a file is the concatenation of ``0x0a, varint(length), packet bytes``
(protobuf wire format, https://protobuf.dev/programming-guides/encoding/).
accsim writes few kinds of packets (track descriptors, slice begin and end,
counter values, interned event names); building a Python protobuf message per
packet costs tens of microseconds, so this module encodes exactly those
fields itself. Slices and counter samples come as columns (``Events``): each
field of each packet is a column of byte strings (``Pieces``: one buffer,
offsets and lengths), made with numpy per column (varints, fixed-width
doubles) or once per distinct value (names, tracks, annotation values), and
the packets are put together by one gather of bytes per batch, streamed to the
file.

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
from dataclasses import dataclass
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
_SMALL = [bytes([i]) for i in range(128)]
_ANNOTATION_KEY = bytes([_DEBUG_ANNOTATIONS << 3 | _LENGTH])
_PACKET_KEY = b"\x0a"           # Trace.packet (1), length-delimited
BATCH_BYTES = 1 << 21           # packets gathered (and written) about this many bytes at a time


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


def _compact(values: np.ndarray) -> np.ndarray:
    """Non-negative integers in the narrowest of uint8, uint16, int32 or int64 that holds them."""
    top = int(values.max()) if len(values) else 0
    for kind in (np.uint8, np.uint16, np.int32):
        if top <= np.iinfo(kind).max:
            return values.astype(kind, copy=False)
    return values.astype(np.int64, copy=False)


class Pieces:
    """A column of byte strings in one buffer: item i is byte string
    ``k = index[i]`` (``k = i`` without an index), which is
    ``buf[offsets[k]:offsets[k] + lengths[k]]``. A scalar offset or length
    stands for every string's; offsets ``None`` put string k at ``k * stride``
    (rows of a table). Index, offsets and lengths are held as narrow integers."""

    __slots__ = ("buf", "offsets", "lengths", "size", "stride", "index")

    def __init__(self, buf: np.ndarray, offsets, lengths, size: int, stride: int = 0, index=None):
        self.buf, self.offsets, self.lengths, self.size = buf, offsets, lengths, size
        self.stride, self.index = stride, index

    def __len__(self) -> int:
        return self.size

    @classmethod
    def of(cls, items: list[bytes], index: np.ndarray | None = None) -> Pieces:
        """``items`` (or ``items[index[i]]`` for each i)."""
        lengths = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
        offsets = np.cumsum(lengths) - lengths
        buf = np.frombuffer(b"".join(items), dtype=np.uint8)
        return cls(buf, offsets, lengths, len(items) if index is None else len(index),
                   index=None if index is None else _compact(np.asarray(index)))

    @classmethod
    def constant(cls, data: bytes, size: int) -> Pieces:
        return cls(np.frombuffer(data, dtype=np.uint8), np.int64(0), np.int64(len(data)), size)

    @classmethod
    def rows(cls, table: np.ndarray, lengths: np.ndarray) -> Pieces:
        """The first ``lengths[i]`` bytes of each row i of a 2-D uint8 table."""
        n, width = table.shape
        return cls(table.reshape(-1), None, _compact(lengths), n, stride=width)

    def _strings(self, items: np.ndarray) -> np.ndarray:
        return items if self.index is None else self.index[items]

    def offsets_at(self, items: np.ndarray):
        """The offsets in ``buf`` of the given items (int64, or one scalar for all)."""
        if self.offsets is None:
            return self._strings(items).astype(np.int64) * self.stride
        if np.ndim(self.offsets) == 0:
            return self.offsets
        return self.offsets[self._strings(items)].astype(np.int64)

    def lengths_at(self, items: np.ndarray):
        """The lengths of the given items (int64, or one scalar for all)."""
        if np.ndim(self.lengths) == 0:
            return self.lengths
        return self.lengths[self._strings(items)].astype(np.int64)

    def item_lengths(self) -> np.ndarray:
        """Every item's length (int64)."""
        if np.ndim(self.lengths) == 0:
            return np.full(self.size, self.lengths, dtype=np.int64)
        return self.lengths_at(np.arange(self.size))

    def take(self, items: np.ndarray) -> Pieces:
        return Pieces(self.buf, self.offsets, self.lengths, len(items), self.stride,
                      _compact(np.asarray(self._strings(items))))

    @staticmethod
    def stack(parts: list[Pieces]) -> Pieces:
        """The items of each part in turn."""
        bases = np.cumsum([0] + [len(p.buf) for p in parts])
        buf = np.concatenate([p.buf for p in parts])
        offsets = np.concatenate([np.broadcast_to(p.offsets_at(np.arange(p.size)), (p.size,)) + base
                                  for p, base in zip(parts, bases)])
        lengths = np.concatenate([p.item_lengths() for p in parts])
        return Pieces(buf, _compact(offsets), _compact(lengths), len(lengths))

    def tolist(self) -> list[bytes]:
        data = self.buf.tobytes()
        items = np.arange(self.size)
        offsets = np.broadcast_to(self.offsets_at(items), (self.size,)).tolist()
        return [data[o:o + n] for o, n in zip(offsets, self.item_lengths().tolist())]


def _varint_rows(values: np.ndarray, prefix: bytes = b"") -> Pieces:
    """``prefix + varint(v)`` for each of non-negative ``values`` (numpy)."""
    rest = np.asarray(values, dtype=np.uint64)
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
    return Pieces.rows(table, length)


def int_pieces(field: int, values: np.ndarray) -> Pieces:
    """``int_field(field, v)`` for each of non-negative ``values`` at once."""
    return _varint_rows(values, key(field, _VARINT))


def join(parts: list[Pieces]) -> Pieces:
    """Item i is the concatenation of item i of every part."""
    size = parts[0].size if parts else 0
    chunks = [chunk.copy() for chunk in _gather([(parts, np.arange(size, dtype=np.int64))],
                                                np.zeros(size, dtype=np.int64))]
    lengths = sum(p.item_lengths() for p in parts) if parts else np.zeros(0, np.int64)
    buf = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
    return Pieces(buf, _compact(np.cumsum(lengths) - lengths), _compact(lengths), size)


def _gather(kinds: list[tuple[list[Pieces], np.ndarray]], kind_of: np.ndarray):
    """The bytes of a sequence of records, in batches of about BATCH_BYTES
    (uint8 arrays, valid until the next batch): record r is of kind
    ``kind_of[r]`` and, being the j-th of that kind, is the concatenation of
    item ``items[j]`` of each of the kind's parts, for ``(parts, items)`` =
    ``kinds[kind_of[r]]``."""
    bases: dict[int, int] = {}
    bufs = []
    for parts, _ in kinds:
        for p in parts:
            if id(p.buf) not in bases:
                bases[id(p.buf)] = sum(len(b) for b in bufs)
                bufs.append(p.buf)
    source = np.concatenate(bufs) if bufs else np.zeros(0, np.uint8)
    rank = np.zeros(len(kind_of), dtype=np.int64)            # j: the record's place among its kind
    record_bytes = np.zeros(len(kind_of), dtype=np.int64)
    for k, (parts, items) in enumerate(kinds):
        mine = kind_of == k
        rank[mine] = np.arange(int(mine.sum()))
        if parts:
            record_bytes[mine] = sum(p.item_lengths() for p in parts)[items]
    ends = np.cumsum(record_bytes)
    stops = []
    while not stops or stops[-1] < len(kind_of):
        start = stops[-1] if stops else 0
        done = int(ends[start - 1]) if start else 0
        stops.append(max(int(np.searchsorted(ends, done + BATCH_BYTES, side="right")), start + 1))
    bounds = np.array([0] + stops)
    largest = int(np.max(np.diff(np.append(0, ends)[bounds]))) if len(kind_of) else 0
    small = np.int32 if len(source) < 2**31 else np.int64
    buffers = (np.empty(largest, dtype=small), np.empty(largest, dtype=small), np.empty(largest, dtype=np.uint8))
    for start, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        yield _gather_batch(source, bases, kinds, kind_of[start:stop], rank[start:stop], buffers)


def _gather_batch(source: np.ndarray, bases: dict[int, int], kinds, kind_of: np.ndarray,
                  rank: np.ndarray, buffers: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """One batch of ``_gather``: the records' pieces as (offset in ``source``,
    length), then the bytes through a running sum of index steps (1 within a
    piece, a jump between pieces), in buffers reused from batch to batch."""
    widths = np.array([len(parts) for parts, _ in kinds], dtype=np.int64)
    count = widths[kind_of]
    first = np.cumsum(count) - count
    offsets = np.empty(int(count.sum()), dtype=np.int64)
    lengths = np.empty(len(offsets), dtype=np.int64)
    for k, (parts, items) in enumerate(kinds):
        mine = np.flatnonzero(kind_of == k)
        if not len(mine) or not parts:
            continue
        index, at = items[rank[mine]], first[mine]
        for j, p in enumerate(parts):
            offsets[at + j] = p.offsets_at(index) + bases[id(p.buf)]
            lengths[at + j] = p.lengths_at(index)
    used = lengths > 0
    offsets, lengths = offsets[used], lengths[used]
    if not len(lengths):
        return buffers[2][:0]
    out_end = np.cumsum(lengths)
    total = int(out_end[-1])
    steps, index, out = buffers[0][:total], buffers[1][:total], buffers[2][:total]
    steps.fill(1)
    jumps = offsets.copy()
    jumps[1:] -= offsets[:-1] + lengths[:-1] - 1
    steps[out_end - lengths] = jumps
    np.cumsum(steps, out=index, dtype=steps.dtype)
    return np.take(source, index, out=out, mode="clip")      # every index is in range


def string_pieces(array) -> Pieces:
    """An Arrow string array's values (UTF-8) as Pieces, from its buffers (nulls empty)."""
    import pyarrow as pa
    offset_type = np.int64 if pa.types.is_large_string(array.type) else np.int32
    if not len(array):
        return Pieces(np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64), 0)
    _, offsets_buffer, data = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type, count=len(array) + 1,
                            offset=array.offset * np.dtype(offset_type).itemsize)
    buf = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return Pieces(buf, offsets[:-1], np.diff(offsets), len(array))


def numpy_of(array, fill=0) -> np.ndarray:
    """``sim.reports.arrays.to_numpy`` (imported here, not at the top: pyarrow loads with it)."""
    from sim.reports.arrays import to_numpy
    return to_numpy(array, fill)


def annotation_pieces(name: str, array) -> Pieces:
    """``annotation(name, v)`` for each value of an Arrow array (``b""`` where
    null): floats (a fixed-length encoding) at once with numpy, other columns
    once per distinct value, integer columns with many distinct values (op
    ids) as varints with numpy."""
    import pyarrow as pa
    import pyarrow.compute as pc
    n = len(array)
    suffix = string_field(_ANNOTATION_NAME, name)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    from sim.reports.arrays import valid_mask
    valid = None if not array.null_count else valid_mask(array)
    if pa.types.is_float64(array.type) and n:
        head = key(_DOUBLE_VALUE, _FIXED64)
        prefix = key(_DEBUG_ANNOTATIONS, _LENGTH) + varint(len(head) + 8 + len(suffix)) + head
        width = len(prefix) + 8 + len(suffix)
        table = np.empty((n, width), dtype=np.uint8)
        table[:, :len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
        values = numpy_of(array, 0.0).astype("<f8")
        table[:, len(prefix):len(prefix) + 8] = values.view(np.uint8).reshape(n, 8)
        table[:, len(prefix) + 8:] = np.frombuffer(suffix, dtype=np.uint8)
        out = Pieces.rows(table, np.full(n, width, dtype=np.int64))
    elif (pa.types.is_integer(array.type) and n > 4096 and pc.count_distinct(array).as_py() > n // 4
          and (pc.min(array).as_py() or 0) >= 0 and len(suffix) < 100):
        fields = int_pieces(_INT_VALUE, numpy_of(array))
        size = Pieces.rows((fields.item_lengths() + len(suffix)).astype(np.uint8)[:, None], np.ones(n, np.int64))
        out = join([Pieces.constant(_ANNOTATION_KEY, n), size, fields, Pieces.constant(suffix, n)])
    else:
        coded = pc.dictionary_encode(array)
        values = coded.dictionary.to_pylist()
        indices = numpy_of(coded.indices, len(values))
        return Pieces.of([annotation(name, v) for v in values] + [b""], indices)
    if valid is not None:
        out.lengths = np.where(valid, out.lengths, 0).astype(out.lengths.dtype)
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


@dataclass
class Events:
    """A trace's slices and counter samples as columns. Slice i lies on track
    ``track[i]`` from ``start_ns[i]`` to ``end_ns[i]``, is named
    UTF-8 ``names`` item ``name[i]``, carries the concatenation of item i of each of
    ``annotations`` as its debug annotations, and the flows ``flow_id[j]``
    where ``flow_slice[j] == i`` (out of it, or into it where ``flow_in[j]``).
    Counter sample j is ``counter_value[j]`` on ``counter_track[j]`` at
    ``counter_ns[j]``."""

    track: np.ndarray
    start_ns: np.ndarray
    end_ns: np.ndarray
    name: np.ndarray
    names: Pieces
    annotations: list[Pieces]
    flow_slice: np.ndarray
    flow_id: np.ndarray
    flow_in: np.ndarray
    counter_track: np.ndarray
    counter_ns: np.ndarray
    counter_value: np.ndarray


def write_trace(sink: BinaryIO, sequence_id: int, descriptors: list[bytes], events: Events,
                kind: np.ndarray, item: np.ndarray) -> int:
    """Write TracePackets on one trusted sequence: a TrackDescriptor per
    ``descriptors``, then an event per entry of ``kind`` (0 a slice's begin, 1
    its end, 2 a counter sample) of slice or sample ``item``. The first packet
    clears the sequence's incremental state (interned names), every later one
    needs it, as Perfetto's TrackEvent interning requires; an event name is
    interned in the packet of its first begin. Packet fields go in ascending
    number: timestamp (8), sequence id (10), event (11), interned data (12),
    flags (13), track descriptor (60). Returns the number of packets."""
    sequence = int_field(_SEQUENCE_ID, sequence_id)
    flags = int_field(_SEQUENCE_FLAGS, SEQ_NEEDS_INCREMENTAL_STATE)
    first_flags = int_field(_SEQUENCE_FLAGS, SEQ_INCREMENTAL_STATE_CLEARED)
    packets = []
    for i, descriptor in enumerate(descriptors):
        body = sequence + (flags if i else first_flags) + bytes_field(_TRACK_DESCRIPTOR, descriptor)
        packets.append(_PACKET_KEY + varint(len(body)) + body)
    sink.write(b"".join(packets))
    if not len(kind):
        return len(descriptors)
    flag_choice = [flags, first_flags]
    first = (0, -1) if descriptors else (int(kind[0]), int(item[0]))   # the event that is the first packet
    parts = [_begins(events, kind, item, sequence, flag_choice, first), _ends(events, sequence, flags),
             _counters(events, sequence, flag_choice, first)]
    for chunk in _gather([(p, item[kind == k]) for k, p in enumerate(parts)], kind):
        sink.write(chunk.data)
    return len(descriptors) + len(kind)


def _packet(body: list[Pieces]) -> list[Pieces]:
    """A TracePacket's parts: the Trace.packet key and length, then ``body``."""
    size = sum(p.item_lengths() for p in body)
    return [_varint_rows(size, _PACKET_KEY), *body]


def _choose(options: list[bytes], n: int, chosen: int) -> Pieces:
    """``options[0]`` for every item but ``chosen`` (-1: none), which gets ``options[1]``."""
    if chosen < 0:
        return Pieces.constant(options[0], n)
    index = np.zeros(n, dtype=np.int64)
    index[chosen] = 1
    return Pieces.of(options, index)


def _begins(events: Events, kind: np.ndarray, item: np.ndarray, sequence: bytes, flags: list[bytes],
            first: tuple[int, int]) -> list[Pieces]:
    """TYPE_SLICE_BEGIN packets of every slice: debug annotations, interned
    name, track, flow ids, the name's definition (interned data) with its
    first begin in ``kind``/``item`` order."""
    n = len(events.track)
    opened = item[kind == 0]                                   # slices in the order their begins are written
    names, first_use = np.unique(events.name[opened], return_index=True)
    iid_of = np.zeros(len(events.names), dtype=np.int64)
    iid_of[names[np.argsort(first_use, kind="stable")]] = np.arange(1, len(names) + 1)
    name_field = _varint_rows(iid_of[events.name], int_field(_TYPE, TYPE_SLICE_BEGIN) + key(_NAME_IID, _VARINT))
    defines = np.full(n, len(names), dtype=np.int64)          # the slices whose begin defines a name
    defines[opened[first_use]] = np.arange(len(names))
    definitions = Pieces.stack([_name_definitions(names, iid_of[names], events.names), Pieces.constant(b"", 1)])
    tracks, track_index = np.unique(events.track, return_inverse=True)
    track_field = Pieces.of([int_field(_TRACK_UUID, int(t)) for t in tracks.tolist()], track_index)
    event = [*events.annotations, name_field, track_field, _flows(events, n)]
    size = sum(p.item_lengths() for p in event)
    body = [int_pieces(_TIMESTAMP, events.start_ns), Pieces.constant(sequence + key(_TRACK_EVENT, _LENGTH), n),
            _varint_rows(size), *event, definitions.take(defines),
            _choose(flags, n, first[1] if first[0] == 0 else -1)]
    return _packet(body)


def _name_definitions(codes: np.ndarray, iids: np.ndarray, names: Pieces) -> Pieces:
    """InternedData {event_names {iid, name}} of each of ``names`` items ``codes``, with ``iids``."""
    text = names.take(codes)
    entry = [int_pieces(1, iids), Pieces.constant(key(2, _LENGTH), len(iids)), _varint_rows(text.item_lengths()), text]
    return _length_delimited(_INTERNED_DATA, [_length_delimited(_EVENT_NAMES, entry)])


def _length_delimited(field: int, parts: list[Pieces]) -> Pieces:
    """A length-delimited ``field`` whose payload is the concatenation of ``parts``."""
    size = sum(p.item_lengths() for p in parts)
    return join([Pieces.constant(key(field, _LENGTH), len(size)), _varint_rows(size), *parts])


def _flows(events: Events, n: int) -> Pieces:
    """Each slice's flow ids (fixed64): out of it, then into it, each in the order of ``events``."""
    order = np.lexsort((events.flow_in, events.flow_slice))     # stable: ids stay in the order given
    ids = np.asarray(events.flow_id, dtype="<u8")[order]
    table = np.empty((len(ids), 10), dtype=np.uint8)
    keys = np.array([list(key(_FLOW_IDS, _FIXED64)), list(key(_TERMINATING_FLOW_IDS, _FIXED64))], dtype=np.uint8)
    table[:, :2] = keys[np.asarray(events.flow_in, dtype=np.int64)[order]]
    table[:, 2:] = ids.view(np.uint8).reshape(-1, 8)
    per_slice = np.bincount(np.asarray(events.flow_slice, dtype=np.int64), minlength=n)
    return Pieces(table.reshape(-1), _compact((np.cumsum(per_slice) - per_slice) * 10), _compact(per_slice * 10), n)


def _ends(events: Events, sequence: bytes, flags: bytes) -> list[Pieces]:
    """TYPE_SLICE_END packets of every slice (a slice's end is never the first packet)."""
    tracks, track_index = np.unique(events.track, return_inverse=True)
    tails = [sequence + bytes_field(_TRACK_EVENT, int_field(_TYPE, TYPE_SLICE_END) + int_field(_TRACK_UUID, int(t)))
             + flags for t in tracks.tolist()]
    return _packet([int_pieces(_TIMESTAMP, events.end_ns), Pieces.of(tails, track_index)])


def _counters(events: Events, sequence: bytes, flags: list[bytes], first: tuple[int, int]) -> list[Pieces]:
    """TYPE_COUNTER packets of every counter sample."""
    m = len(events.counter_track)
    tracks, track_index = np.unique(events.counter_track, return_inverse=True)
    heads = []
    for t in tracks.tolist():
        body = (int_field(_TYPE, TYPE_COUNTER) + int_field(_TRACK_UUID, t)
                + key(_DOUBLE_COUNTER_VALUE, _FIXED64))
        heads.append(sequence + key(_TRACK_EVENT, _LENGTH) + varint(len(body) + 8) + body)
    values = np.asarray(events.counter_value, dtype="<f8").view(np.uint8).reshape(m, 8)
    return _packet([int_pieces(_TIMESTAMP, events.counter_ns), Pieces.of(heads, track_index),
                    Pieces.rows(values, np.full(m, 8, dtype=np.int64)),
                    _choose(flags, m, first[1] if first[0] == 2 else -1)])
