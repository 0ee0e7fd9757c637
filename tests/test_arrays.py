"""sim.reports.arrays: Arrow arrays built from buffers equal pyarrow's own
conversions to the byte (values, validity, bytes under nulls), and reading
them back gives the values; a training run and ``accsim run`` never import
pandas (pyarrow's converters would)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.reports import arrays


def _ipc_bytes(array: pa.Array) -> bytes:
    """The Arrow IPC stream of a one-column batch: what a run directory's files hold of a column."""
    batch = pa.RecordBatch.from_arrays([array], names=["x"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _same(ours: pa.Array, theirs: pa.Array) -> None:
    assert ours.type == theirs.type
    assert ours.equals(theirs)
    assert ours.null_count == theirs.null_count
    assert _ipc_bytes(ours) == _ipc_bytes(theirs)


ints = st.integers(-2**63, 2**63 - 1)
floats = st.floats(allow_nan=False)
texts = st.text(max_size=8)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), ints), max_size=40))
def test_int_column_from_a_list_is_pa_array(values):
    _same(arrays.column(values, pa.int64()), pa.array(values, type=pa.int64()))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), floats), max_size=40))
def test_float_column_from_a_list_is_pa_array(values):
    _same(arrays.column(values, pa.float64()), pa.array(values, type=pa.float64()))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), texts), max_size=40))
def test_strings_are_pa_array_ascii_or_not(values):
    _same(arrays.column(values, pa.string()), pa.array(values, type=pa.string()))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(floats, st.booleans()), max_size=40))
def test_numbers_with_a_mask_keep_the_values_under_nulls_as_pa_array_does(pairs):
    values = np.array([v for v, _ in pairs], dtype=np.float64)
    valid = np.array([ok for _, ok in pairs], dtype=bool)
    _same(arrays.numbers(values, pa.float64(), valid), pa.array(values, type=pa.float64(), mask=~valid))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), max_size=40), st.lists(st.booleans(), max_size=40))
def test_booleans_are_pa_array(values, valid):
    valid = np.array((valid + [True] * len(values))[:len(values)], dtype=bool)
    values = np.array(values, dtype=bool)
    _same(arrays.booleans(values, valid), pa.array(values, type=pa.bool_(), mask=~valid))


@settings(max_examples=60, deadline=None)
@given(st.lists(texts, min_size=1, max_size=6, unique=True), st.lists(st.integers(-1, 5), max_size=40))
def test_coded_strings_and_dictionaries(names, codes):
    codes = np.array([min(c, len(names) - 1) for c in codes], dtype=np.int32)
    expected = pa.array([names[c] if c >= 0 else None for c in codes.tolist()], type=pa.string())
    _same(arrays.coded_strings(names, codes), expected)
    coded = arrays.dictionary(names, codes)
    assert coded.type == pa.dictionary(pa.int32(), pa.string())
    assert coded.dictionary.to_pylist() == names
    assert coded.cast(pa.string()).equals(expected)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), ints), max_size=10), max_size=4), st.integers(-5, 5))
def test_to_numpy_reads_chunks_slices_and_nulls(chunks, fill):
    column = pa.chunked_array([pa.array(c, type=pa.int64()) for c in chunks], type=pa.int64())
    expected = np.array([fill if v is None else v for c in chunks for v in c], dtype=np.int64)
    assert np.array_equal(arrays.to_numpy(column, fill), expected)
    present = np.array([v is not None for c in chunks for v in c], dtype=bool)
    assert np.array_equal(arrays.to_numpy(column, None)[present], expected[present])   # None: as stored
    flat = column.combine_chunks()
    for first in range(min(3, len(flat))):
        assert np.array_equal(arrays.to_numpy(flat.slice(first), fill), expected[first:])
        assert np.array_equal(arrays.valid_mask(flat.slice(first)), np.array(
            [v is not None for c in chunks for v in c][first:], dtype=bool))


def test_tables_and_nulls():
    schema = pa.schema([pa.field("a", pa.int64()), pa.field("b", pa.string()), pa.field("c", pa.float64())])
    columns = {"a": [1, None, 3], "b": ["x", "ü", None], "c": np.array([0.5, 1.5, 2.5])}
    assert arrays.table(columns, schema).equals(pa.table(columns, schema=schema))
    assert arrays.nulls(3, pa.int64()).equals(pa.array([None] * 3, type=pa.int64()))


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("scenario", ["quickstart", "pipeline_ideal"])
def test_a_training_run_does_not_import_pandas(scenario):
    """pyarrow imports pandas (0.2-0.3 s) in pa.array, to_numpy and pa.scalar; a run uses none of them."""
    loaded = _modules_after(f"import sim\nresult = sim.run({scenario!r})\nassert result.timeline.num_rows")
    assert "pyarrow" in loaded and "pandas" not in loaded


def test_accsim_run_writing_a_run_does_not_import_pandas(tmp_path):
    code = ("import io, contextlib\nfrom sim.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['run', 'quickstart', '--out', {str(tmp_path / 'run')!r}, '--format', 'parquet',"
            " '--perfetto', '--quiet']) == 0")
    loaded = _modules_after(code)
    assert (tmp_path / "run" / "timeline.parquet").exists() and "pandas" not in loaded


def _arrow_file_bytes(table: pa.Table) -> bytes:
    import tempfile
    from pathlib import Path

    from sim.reports.writer import write_arrow
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.arrow"
        write_arrow(table, path)
        return path.read_bytes()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(["a", "bb", "é", ""])), min_size=1, max_size=150),
       st.lists(st.integers(1, 40), min_size=1, max_size=6))
def test_dictionary_chunks_write_the_bytes_of_the_writers_own_encoding(values, cuts):
    """A string column given as dictionary chunks (one dictionary, values in order of first
    appearance) writes the same Arrow file as the plain column the writer encodes itself."""
    bounds = [0]
    for cut in cuts:
        bounds.append(min(len(values), bounds[-1] + cut))
    bounds.append(len(values))
    bounds = sorted(set(bounds))
    plain = [pa.array(values[a:b], type=pa.string()) for a, b in zip(bounds[:-1], bounds[1:])]
    numbers = pa.chunked_array([pa.array(range(a, b), type=pa.int64()) for a, b in zip(bounds[:-1], bounds[1:])])
    coded = arrays.dictionary_chunks(list(plain))
    assert pa.chunked_array(coded).combine_chunks().equals(pa.chunked_array(plain).combine_chunks().dictionary_encode())
    assert [len(c) for c in coded] == [len(c) for c in plain]
    ours = pa.table({"s": pa.chunked_array(coded), "n": numbers})
    theirs = pa.table({"s": pa.chunked_array(plain, type=pa.string()), "n": numbers})
    assert _arrow_file_bytes(ours) == _arrow_file_bytes(theirs)


def test_a_training_runs_timeline_holds_dictionary_columns():
    import sim
    from sim.engine.recorder import DICTIONARY_COLUMNS
    timeline = sim.run("quickstart").timeline
    for name in DICTIONARY_COLUMNS:
        assert timeline.schema.field(name).type == pa.dictionary(pa.int32(), pa.string())
        first = timeline[name].chunk(0)
        assert all(chunk.dictionary.equals(first.dictionary) for chunk in timeline[name].chunks)
    assert timeline.schema.field("name").type == pa.string()
    assert "compute" in timeline["category"].to_pylist()


@settings(max_examples=60, deadline=None)
@given(st.lists(texts, max_size=30), st.integers(1, 5))
def test_ascii_bytes_joined_a_piece_at_a_time(values, piece):
    from sim.reports.arrays import _ascii_bytes
    data = _ascii_bytes(values, np.array([len(v) for v in values], dtype=np.int64), piece)
    joined = "".join(values)
    if joined.isascii():
        assert data.tobytes() == joined.encode()
    else:
        assert data is None


def test_a_run_timeline_reads_as_the_readme_says():
    """README (Python API): the repeated string columns are dictionaries; equality,
    filters and grouping work on them; sorting needs them decoded first."""
    import pyarrow.compute as pc

    import sim
    from sim.reports.writer import decode_dictionaries
    timeline = sim.run("quickstart").timeline
    assert all(pa.types.is_dictionary(timeline.schema.field(name).type)
               for name in ("device", "unit", "category", "phase", "detail"))
    assert pa.types.is_string(timeline.schema.field("name").type)
    compute = timeline.filter(pc.equal(timeline["category"], "compute"))
    assert 0 < compute.num_rows < timeline.num_rows
    assert set(compute["category"].to_pylist()) == {"compute"}
    assert timeline.group_by("device").aggregate([("end_s", "max")]).num_rows == len(set(timeline["device"].to_pylist()))
    plain = decode_dictionaries(timeline)
    ordered = plain.sort_by("device")["device"].to_pylist()
    assert ordered == sorted(timeline["device"].to_pylist())
