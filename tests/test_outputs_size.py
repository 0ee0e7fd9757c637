"""Run directories stay small and readable (issue 13): string columns are
dictionary-encoded and Arrow IPC buffers zstd-compressed, the bytes are the
same for the same inputs, and pyarrow, pandas and polars read the files back
to exactly the table the run produced. Sizes are compared with the plain
(uncompressed, undictionaried) encoding of the same table, never timed."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pytest

import sim
from sim.reports.perfetto import read_table
from sim.reports.writer import decode_dictionaries, encode_dictionaries

from conftest import ROOT

QUICKSTART = str(ROOT / "scenarios" / "quickstart.yaml")
TABLES = ("timeline", "bubbles", "utilization", "memory")


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    result = sim.run(QUICKSTART)
    base = tmp_path_factory.mktemp("runs")
    result.write(base / "a")
    result.write(base / "b")
    return result, base


def _plain_ipc_bytes(table: pa.Table) -> int:
    sink = io.BytesIO()
    with ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=65536)
    return len(sink.getvalue())


def test_link_rows_are_kept_and_the_timeline_is_several_times_smaller(quickstart):
    result, base = quickstart
    timeline = result.timeline
    assert pc.sum(pc.equal(timeline["device"], "network")).as_py() > timeline.num_rows / 2   # link rows dominate
    on_disk = (base / "a" / "timeline.arrow").stat().st_size
    assert on_disk * 20 < _plain_ipc_bytes(timeline)      # zstd alone gives ~11x, with dictionaries ~37x
    with open(base / "a" / "timeline.arrow", "rb") as fh:
        reader = ipc.open_file(fh)
        schema = reader.schema
        assert reader.num_record_batches >= 1
    strings = [f for f in timeline.schema if pa.types.is_string(f.type)]
    assert strings and all(schema.field(f.name).type == pa.dictionary(pa.int32(), pa.string()) for f in strings)
    assert all(schema.field(f.name).nullable == f.nullable for f in timeline.schema)


def test_same_inputs_give_the_same_bytes(quickstart):
    _, base = quickstart
    for name in TABLES:
        assert (base / "a" / f"{name}.arrow").read_bytes() == (base / "b" / f"{name}.arrow").read_bytes(), name


@pytest.mark.parametrize("name", TABLES)
def test_pyarrow_reads_back_exactly_the_run(quickstart, name):
    result, base = quickstart
    with open(base / "a" / f"{name}.arrow", "rb") as fh:
        table = ipc.open_file(fh).read_all()
    expected = decode_dictionaries(result.tables()[name])     # the timeline holds some columns coded already
    assert decode_dictionaries(table).equals(expected)
    assert table.schema.metadata[b"accsim.version"] == sim.__version__.encode()
    assert read_table(base / "a" / f"{name}.arrow", name).equals(expected)      # accsim's own reader


def test_pandas_reads_the_timeline(quickstart):
    pd = pytest.importorskip("pandas")
    result, base = quickstart
    frame = pd.read_feather(base / "a" / "timeline.arrow")
    expected = result.timeline
    assert list(frame.columns) == expected.column_names and len(frame) == expected.num_rows
    assert frame["device"].astype(str).tolist() == expected["device"].to_pylist()
    assert frame["end_s"].tolist() == expected["end_s"].to_pylist()
    assert str(frame["layer"].dtype) == "Int64"          # nullable integers stay integers
    assert frame["phase"].isna().sum() == expected["phase"].null_count


def test_polars_reads_the_timeline(quickstart):
    pl = pytest.importorskip("polars")
    result, base = quickstart
    frame = pl.read_ipc(base / "a" / "timeline.arrow")
    expected = result.timeline
    assert frame.columns == expected.column_names and frame.height == expected.num_rows
    assert frame["unit"].cast(pl.Utf8).to_list() == expected["unit"].to_pylist()
    assert frame["start_s"].to_list() == expected["start_s"].to_pylist()
    assert frame["detail"].null_count() == expected["detail"].null_count


def test_parquet_keeps_the_same_schema(tmp_path, quickstart):
    import pyarrow.parquet as pq
    result, _ = quickstart
    result.write(tmp_path / "p", format="parquet")
    table = pq.read_table(tmp_path / "p" / "timeline.parquet")
    assert table.schema.field("device").type == pa.dictionary(pa.int32(), pa.string())
    assert decode_dictionaries(table).equals(decode_dictionaries(result.timeline))


def test_encoding_round_trips_empty_and_null_columns():
    table = pa.table({"a": pa.array([None, None], pa.string()), "b": [1, 2]})
    assert decode_dictionaries(encode_dictionaries(table)).equals(table)
    empty = table.slice(0, 0)
    assert decode_dictionaries(encode_dictionaries(empty)).equals(empty)
