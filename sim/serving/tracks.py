"""Perfetto tracks of a serving run: one track per request (queued -> prefill -> decode).

Called by ``sim.reports.perfetto.build_model`` when the run directory has a
``requests.arrow``: a ``requests`` group gets one track per finished request
with up to three slices, ``queued`` (arrival to first scheduled), ``prefill``
(to its first token) and ``decode`` (to its last), each carrying the
request's id, lengths, replica and preemptions. Replicas already have their
own tracks from ``timeline.arrow`` (one per pipeline stage, a slice per
iteration). ``start_s``/``end_s`` keep the requests overlapping the window.
"""

from __future__ import annotations

from pathlib import Path


def add_request_tracks(model, run_dir: Path, next_uuid, start_s: float | None = None,
                       end_s: float | None = None) -> None:
    from sim.reports.perfetto import Slice, Track, _ns, read_table

    path = Path(run_dir) / "requests.arrow"
    if not path.is_file():
        return
    rows = read_table(path).to_pydict()
    pid = max((t.pid for t in model.tracks if t.pid is not None), default=0) + 1
    group = None
    for i, status in enumerate(rows["status"]):
        if status != "finished":
            continue
        arrival, finish = rows["arrival_s"][i], rows["finish_s"][i]
        if (start_s is not None and finish < start_s) or (end_s is not None and arrival > end_s):
            continue
        if group is None:
            group = Track(next(next_uuid), "requests", pid=pid)
            model.tracks.append(group)
        track = Track(next(next_uuid), f"request {rows['request_id'][i]}", parent=group.uuid)
        model.tracks.append(track)
        args = {"request_id": rows["request_id"][i], "prompt_tokens": rows["prompt_tokens"][i],
                "output_tokens": rows["output_tokens"][i], "replica": rows["replica"][i],
                "preemptions": rows["preemptions"][i]}
        phases = (("queued", arrival, rows["scheduled_s"][i]),
                  ("prefill", rows["scheduled_s"][i], rows["first_token_s"][i]),
                  ("decode", rows["first_token_s"][i], finish))
        for name, begin, end in phases:
            if end > begin:
                model.slices.append(Slice(track.uuid, _ns(begin), _ns(end), name, dict(args)))
