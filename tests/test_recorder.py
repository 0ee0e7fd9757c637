"""Timeline recording: rows given as tuples or as columns make the same record batches."""

from hypothesis import given, settings, strategies as st

from sim.engine.recorder import TimelineRecorder


def row(i):
    return ("d0", "comm", i, f"op{i}", "comm", i * 0.5, i * 0.5 + 1.0, 0.0, float(i), 3, 2,
            (i % 4 or None, 1, i % 7, "tp", "allreduce/ring"))


def converted(r):
    return r[:11] + r[11]


@settings(max_examples=60, deadline=None)
@given(before=st.integers(0, 9), count=st.integers(0, 40), after=st.integers(0, 9), batch=st.integers(1, 8))
def test_columns_give_the_batches_rows_give(before, count, after, batch):
    """Rows before and after (a partial batch continues across calls) and any batch size."""
    by_rows, by_columns = TimelineRecorder(batch), TimelineRecorder(batch)
    first = [row(i) for i in range(before)]
    middle = [row(before + i) for i in range(count)]
    last = [row(before + count + i) for i in range(after)]
    for recorder in (by_rows, by_columns):
        recorder.record_rows(first)
    by_rows.record_rows(middle)
    by_columns.record_column_rows([list(c) for c in zip(*map(converted, middle))] if middle else [])
    for recorder in (by_rows, by_columns):
        recorder.record_rows(last)
    a, b = by_rows.table(), by_columns.table()
    assert [len(x) for x in a.to_batches()] == [len(x) for x in b.to_batches()]
    assert a.equals(b) and a.num_rows == before + count + after
