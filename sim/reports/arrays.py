"""Arrow arrays from numpy and Python lists, and numpy arrays from Arrow, without pandas.

pyarrow's own converters import pandas the first time they run: ``pa.array``
(and so ``pa.table``, ``Table.from_pydict``) on a Python list or a numpy array,
``Array.to_numpy`` / ``np.asarray(array)`` (both go through its pandas
conversion), and ``pa.scalar`` (so ``pc.equal(column, "compute")`` and
``fill_null(0)`` with a Python value: compare int32 codes from
``sim.reports.tables.string_codes`` instead). A training run uses no pandas, and
importing it cost 0.2-0.3 CPU s of every run (GPT-3 175B / 1,024: about 5% of
the run). The builders here assemble arrays from their buffers
(``pa.Array.from_buffers``, ``pa.DictionaryArray.from_arrays``) and the reader
reads them back with ``np.frombuffer``; neither imports pandas.

The arrays are equal to what ``pa.array`` makes from the same values: the same
values, the same nulls (a validity bitmap only where there is a null) and the
same bytes under a null (zero from a list's None, the given value under a
numpy mask), so the files written from them are byte-identical
(``benchmarks/run_hashes.py``). A buffer made from a numpy array keeps that
array alive (no copy when it already has the column's dtype).
"""

from __future__ import annotations

from itertools import repeat
from operator import is_not
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa

# numpy dtype of each fixed-width Arrow number type
_DTYPES = {pa.int8(): np.int8, pa.int16(): np.int16, pa.int32(): np.int32, pa.int64(): np.int64,
           pa.uint8(): np.uint8, pa.uint16(): np.uint16, pa.uint32(): np.uint32, pa.uint64(): np.uint64,
           pa.float16(): np.float16, pa.float32(): np.float32, pa.float64(): np.float64}
_INT32_MAX = 2**31 - 1


def _bitmap(valid: np.ndarray | None, count: int) -> tuple[pa.Buffer | None, int]:
    """(validity bitmap or None where nothing is null, null count) of a bool mask (False: null)."""
    if valid is None:
        return None, 0
    nulls = count - int(np.count_nonzero(valid))
    if not nulls:
        return None, 0
    return pa.py_buffer(np.packbits(valid, bitorder="little")), nulls


def numbers(values, type: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """A fixed-width number array of ``type`` from a numpy array (or anything
    ``np.asarray`` takes) converted to the type's dtype; ``valid`` (bool, False:
    null) marks nulls. The values under nulls stay as given, as
    ``pa.array(ndarray, mask=~valid)`` keeps them (``column`` zeroes them, as
    ``pa.array`` of a list with None does)."""
    values = np.ascontiguousarray(values, dtype=_DTYPES[type])
    bitmap, nulls = _bitmap(valid, len(values))
    return pa.Array.from_buffers(type, len(values), [bitmap, pa.py_buffer(values)], null_count=nulls)


def booleans(values, valid: np.ndarray | None = None) -> pa.Array:
    """A boolean array from a numpy bool array (``valid`` as in ``numbers``)."""
    values = np.asarray(values, dtype=bool)
    bitmap, nulls = _bitmap(valid, len(values))
    bits = pa.py_buffer(np.packbits(values, bitorder="little"))
    return pa.Array.from_buffers(pa.bool_(), len(values), [bitmap, bits], null_count=nulls)


def nulls(count: int, type: pa.DataType) -> pa.Array:
    """``count`` nulls of ``type``."""
    return pa.nulls(count, type)


def strings(values: Sequence[str | None]) -> pa.Array:
    """A string array from a sequence of str (None: null). All-ASCII values
    (the usual case: ``join`` and ``len``) take about 30 ns each."""
    values = values if isinstance(values, list) else list(values)
    valid = _present(values)
    present = values if valid is None else [v for v in values if v is not None]
    lengths = np.fromiter(map(len, present), dtype=np.int64, count=len(present))
    data = _ascii_bytes(present, lengths)
    if data is None:                   # not all ASCII: a character may be several bytes
        encoded = [v.encode() for v in present]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        data = b"".join(encoded)
        del encoded
    if len(data) > _INT32_MAX:
        raise OverflowError(f"{len(data)} bytes of strings exceed one Arrow string array's 2 GiB")
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    if valid is None:
        np.cumsum(lengths, out=offsets[1:])
    else:
        per_row = np.zeros(len(values), dtype=np.int64)
        per_row[valid] = lengths
        np.cumsum(per_row, out=offsets[1:])
    bitmap, null_count = _bitmap(valid, len(values))
    return pa.Array.from_buffers(pa.string(), len(values), [bitmap, pa.py_buffer(offsets), pa.py_buffer(data)],
                                 null_count=null_count)


def _ascii_bytes(values: list[str], lengths: np.ndarray, piece: int = 1 << 16) -> np.ndarray | None:
    """The values' characters, joined, as bytes (a uint8 array), or None when
    one is not ASCII (its UTF-8 bytes outnumber its characters). Joined and
    encoded ``piece`` values at a time into one array, where one ``join`` of
    them all and its ``encode`` held two copies of the data at once (a million
    op names: 2 x 28 MB)."""
    data = np.empty(int(lengths.sum()), dtype=np.uint8)
    at = 0
    for first in range(0, len(values), piece):
        encoded = "".join(values[first:first + piece]).encode()
        if at + len(encoded) > len(data) or len(encoded) != int(lengths[first:first + piece].sum()):
            return None
        data[at:at + len(encoded)] = np.frombuffer(encoded, dtype=np.uint8)
        at += len(encoded)
    return data


def coded_strings(names: Sequence[str], codes: np.ndarray) -> pa.Array:
    """``names[code]`` for each code as a string array (a negative code: null),
    taken from the array of the distinct names."""
    return _take(strings(list(names)), codes)


def dictionary(names: Sequence[str], codes: np.ndarray) -> pa.DictionaryArray:
    """A dictionary<int32, string> array: int32 ``codes`` into ``names`` (negative: null)."""
    codes = np.asarray(codes)
    valid = codes >= 0
    return pa.DictionaryArray.from_arrays(numbers(codes, pa.int32(), valid), strings(list(names)))


def first_appearance_codes(chunks: Iterable[pa.Array], codes: np.ndarray) -> list:
    """Write into ``codes`` (int32, one per row of all ``chunks``) each row's
    code into the distinct values in order of first appearance, -1 for a
    null, and return those values. A string chunk is dictionary-encoded on its
    own (a dictionary chunk is used as it is) and its codes written into
    their place: combining the chunks first copied a timeline's whole column,
    and int64 codes concatenated from per-chunk parts were three times the
    bytes (tens of MB on GPT 1T). ``chunks`` is read once, in order."""
    import pyarrow.compute as pc
    index: dict = {}
    at = 0
    for chunk in chunks:
        if not pa.types.is_dictionary(chunk.type):
            chunk = pc.dictionary_encode(chunk)
        local = np.array([index.setdefault(name, len(index)) for name in chunk.dictionary.to_pylist()] + [-1],
                         dtype=np.int32)
        np.take(local, to_numpy(chunk.indices, fill=len(local) - 1), out=codes[at:at + len(chunk)])
        at += len(chunk)
    return list(index)


def dictionary_chunks(chunks: list[pa.Array]) -> list[pa.DictionaryArray]:
    """The chunks of a string column as dictionary<int32, string> chunks:
    slices of one array of the whole column, whose dictionary is the column's
    distinct values in order of first appearance and whose indices are null
    (0 under the null) where the value is: ``pc.dictionary_encode`` of the
    combined column, cut where the chunks were cut. A writer then sees the
    buffers it sees when it slices that encoding itself (an IPC writer writes
    a slice at offset 0 with its whole validity bitmap when that is small), so
    ``sim.reports.writer.encode_dictionaries`` keeps the column as it is and
    the files keep their bytes. ``chunks`` is emptied as it is encoded, so one
    plain chunk at a time is alive beside the codes."""
    lengths = [len(chunk) for chunk in chunks]
    codes = np.empty(sum(lengths), dtype=np.int32)
    names = first_appearance_codes(_drained(chunks), codes)
    valid = codes >= 0
    codes[~valid] = 0
    whole = pa.DictionaryArray.from_arrays(numbers(codes, pa.int32(), valid), strings(names))
    starts = np.cumsum([0] + lengths[:-1]).tolist()
    return [whole.slice(first, length) for first, length in zip(starts, lengths)]


def _drained(chunks: list) -> Iterator:
    """The items of ``chunks``, each removed from the list as it is given."""
    while chunks:
        yield chunks.pop(0)


def _take(values: pa.Array, codes: np.ndarray) -> pa.Array:
    import pyarrow.compute as pc
    codes = np.asarray(codes)
    index_type = pa.int32() if len(values) <= _INT32_MAX else pa.int64()
    return pc.take(values, numbers(codes, index_type, codes >= 0), memory_pool=pa.system_memory_pool())


def _present(values: list) -> np.ndarray | None:
    """Bool mask of the values that are not None, or None where all are."""
    valid = np.fromiter(map(is_not, values, repeat(None)), dtype=bool, count=len(values))
    return None if valid.all() else valid


def column(values, type: pa.DataType) -> pa.Array:
    """An array of ``type`` (a number, bool, string or null type) from a
    numpy array or a sequence of Python values (None: null), as ``pa.array(values, type=type)``."""
    if isinstance(values, pa.Array):
        return values
    if pa.types.is_string(type):
        return strings(values)
    if pa.types.is_null(type):
        return nulls(len(values), type)
    if isinstance(values, np.ndarray):
        return booleans(values) if pa.types.is_boolean(type) else numbers(values, type)
    values = values if isinstance(values, list) else list(values)
    valid = _present(values)
    if valid is not None:
        filled = np.array(values, dtype=object)
        filled[~valid] = 0
        values = filled
    if pa.types.is_boolean(type):
        return booleans(np.array(values, dtype=bool), valid)
    return numbers(np.array(values, dtype=_DTYPES[type]), type, valid)


def table(columns: Mapping[str, object], schema: pa.Schema) -> pa.Table:
    """``pa.table(columns, schema=schema)``: one ``column`` per field of ``schema``."""
    return pa.Table.from_arrays([column(columns[f.name], f.type) for f in schema], schema=schema)


def to_numpy(array, fill=0) -> np.ndarray:
    """A fixed-width number or boolean Arrow array (or chunked array) as a numpy
    array read from its buffers, nulls as ``fill`` (None: whatever the buffer
    holds under them, for a caller that masks them out): a view of a single
    chunk without nulls (or with ``fill`` None), else one copy."""
    if isinstance(array, pa.ChunkedArray):
        if array.num_chunks != 1:
            dtype = np.bool_ if pa.types.is_boolean(array.type) else _DTYPES[array.type]
            return np.concatenate([to_numpy(chunk, fill) for chunk in array.chunks] or [np.zeros(0, dtype)])
        array = array.chunk(0)
    if pa.types.is_boolean(array.type):
        bits = np.unpackbits(np.frombuffer(array.buffers()[1], dtype=np.uint8), bitorder="little") if len(array) \
            else np.zeros(0, np.uint8)
        values = bits[array.offset:array.offset + len(array)].astype(bool)
    else:
        dtype = np.dtype(_DTYPES[array.type])
        if not len(array):
            return np.zeros(0, dtype=dtype)
        values = np.frombuffer(array.buffers()[1], dtype=dtype, count=len(array),
                               offset=array.offset * dtype.itemsize)
    if array.null_count and fill is not None:
        values = np.where(valid_mask(array), values, np.array(fill).astype(values.dtype))
    return values


def valid_mask(array: pa.Array) -> np.ndarray:
    """An Arrow array's validity as a numpy bool array (True: not null)."""
    if not array.null_count:
        return np.ones(len(array), dtype=bool)
    bits = np.unpackbits(np.frombuffer(array.buffers()[0], dtype=np.uint8), bitorder="little")
    return bits[array.offset:array.offset + len(array)].astype(bool)
