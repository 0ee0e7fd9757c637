"""Timeline recording: the arrays TimelineBuilder takes make the record batches
TimelineRecorder makes from the same rows (a batch per device, then rows
streamed in batches of ``batch_rows``)."""

import numpy as np
from hypothesis import given, settings, strategies as st

from sim.engine.recorder import RUN_TIMELINE_SCHEMA, TIMELINE_SCHEMA, OpRows, TimelineBuilder, TimelineRecorder
from sim.reports.writer import encode_dictionaries
from sim.workload.trace import Op

OPS = [Op(id=100 + i, name=f"op{i}", op="gemm", flops=2.0 * i, bytes_read=8.0, bytes_written=4.0, stream=i % 3,
          layer=i % 4 or None, stage=i % 2, microbatch=None if i % 5 == 0 else i % 7, phase=("fwd", None)[i % 2])
       for i in range(12)]
UNITS, DETAILS = ["sm", "hbm", "comm"], ["allreduce/ring", "sendrecv/direct"]


def rows_of(seed: int, count: int, device_names: list[str], detail: bool):
    """Random rows as OpRows and as the tuples TimelineRecorder takes."""
    rng = np.random.default_rng(seed)
    position = rng.integers(0, len(OPS), count)
    device, unit = rng.integers(0, len(device_names), count), rng.integers(0, len(UNITS), count)
    details = rng.integers(-1, len(DETAILS), count)
    start = rng.random(count)
    end, flops, nbytes = start + rng.random(count), rng.random(count) * 1e9, rng.random(count) * 1e6
    held = rng.integers(0, 9, count)
    rows = OpRows(position=position, device=(device.astype(np.int32), device_names),
                  unit=(unit.astype(np.int32), UNITS), category=(unit.astype(np.int32), ["compute", "memory", "comm"]),
                  start_s=start, end_s=end, flops=flops, bytes=nbytes, units_held=held,
                  detail=(details.astype(np.int32), DETAILS) if detail else None)
    tuples = []
    for k, p in enumerate(position.tolist()):
        op = OPS[p]
        tuples.append((device_names[device[k]], UNITS[unit[k]], op.id, op.name, ["compute", "memory", "comm"][unit[k]],
                       float(start[k]), float(end[k]), float(flops[k]), float(nbytes[k]), op.stream, int(held[k]),
                       (op.layer, op.stage, op.microbatch, op.phase,
                        DETAILS[details[k]] if detail and details[k] >= 0 else None)))
    return rows, tuples


@settings(max_examples=60, deadline=None)
@given(devices=st.lists(st.integers(0, 9), max_size=4), streamed=st.integers(0, 30), links=st.integers(0, 9),
       batch=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_builder_gives_the_batches_the_recorder_gives(devices, streamed, links, batch, seed):
    """Device batches of any size (empty ones make none), then streamed rows and row tuples
    continuing the open batch, for any batch size."""
    builder, recorder = TimelineBuilder(OPS, batch), TimelineRecorder(batch)
    for k, count in enumerate(devices):
        rows, tuples = rows_of(seed + k, count, [f"dev{k}"], detail=False)
        builder.add_batch(rows)
        recorder.record_columns({f: list(c) for f, c in zip(
            ["device", "unit", "op_id", "name", "category", "start_s", "end_s", "flops", "bytes", "stream",
             "units_held", "layer", "stage", "microbatch", "phase", "detail"],
            zip(*[t[:11] + t[11] for t in tuples]))} if tuples else {})
    rows, tuples = rows_of(seed + 99, streamed, ["dev0", "dev1"], detail=True)
    builder.add_stream(rows)
    recorder.record_rows(tuples)
    _, link_rows = rows_of(seed + 7, links, ["network"], detail=True)
    builder.add_row_tuples(link_rows)
    recorder.record_rows(link_rows)
    a, b = builder.table(), recorder.table()
    assert [len(x) for x in a.to_batches()] == [len(x) for x in b.to_batches()]
    # the builder's DICTIONARY_COLUMNS are dictionary-encoded as the writer encodes the recorder's
    assert a.schema == RUN_TIMELINE_SCHEMA and a.num_rows == sum(devices) + streamed + links
    assert a.cast(TIMELINE_SCHEMA).equals(b)
    assert encode_dictionaries(a).equals(encode_dictionaries(b))
