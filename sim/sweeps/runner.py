"""Running a sweep on Dask and keeping its results as a Parquet dataset.

Each design point is one Dask task that resolves the base scenario with the
point's overrides and simulates it (``sim.run``). The driver collects results
as tasks finish and writes them in small batches to ``DIR/results/`` (each
file written under a temporary name and renamed, so a killed sweep never
leaves a corrupt file). Re-running the same command skips points already
``ok`` or ``invalid`` and, at the end, compacts the dataset to one row per
point. By default the cluster is an embedded ``LocalCluster`` of worker
processes; ``scheduler`` connects to any running Dask scheduler instead
(dask-jobqueue on SLURM/PBS, dask-ssh, Kubernetes: docs/sweeps.md).

Statuses: ``ok``; ``invalid`` for a point the simulator rejects as input (a
plan that does not divide the cluster, a model that does not fit...);
``error`` for a point that raised anything else, ran past ``timeout``, or
whose worker died.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pickle
import select
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from sim.errors import AccsimError, ScenarioError
from sim.sweeps.columns import METRICS, STATUS_FIELDS
from sim.sweeps.points import SweepSpec, load_sweep, point_id

def metrics_of(summary: Mapping[str, Any]) -> dict[str, float | None]:
    out = {}
    for name, path in METRICS:
        value: Any = summary
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        out[name] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return out


def _simulate(base: Mapping[str, Any], scenario_path: str, point: Mapping[str, Any],
              keep_dir: str | None, pid: str) -> dict:
    import sim
    from sim.runtime.scenario import load_scenario_dict
    scenario = load_scenario_dict(base, point, base=Path(scenario_path).parent, where=scenario_path)
    result = sim.run(scenario)
    if keep_dir:
        result.write(Path(keep_dir) / pid, overwrite=True)
    return result.summary


def _outcome(args) -> tuple[str, Any]:
    try:
        return "ok", _simulate(*args)
    except AccsimError as exc:
        return "invalid", str(exc)
    except BaseException as exc:  # noqa: BLE001
        return "error", f"{type(exc).__name__}: {exc}"


def _run_forked(args, timeout_s: float) -> tuple[str, Any]:
    """Run a point in a forked child, killed after ``timeout_s``. A plain
    os.fork: Dask's worker processes are daemonic, and multiprocessing
    refuses children to daemons."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (runs in the child)
        os.close(read_end)
        try:
            data = pickle.dumps(_outcome(args))
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view):]
        finally:
            os._exit(0)
    os.close(write_end)
    chunks, deadline = [], time.monotonic() + timeout_s
    try:
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([read_end], [], [], max(left, 0.0))
            if not ready:
                os.kill(child, signal.SIGKILL)
                return "error", f"timed out after {timeout_s:g} s"
            chunk = os.read(read_end, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        os.waitpid(child, 0)
    if not chunks:
        return "error", "the point's process died without a result"
    return pickle.loads(b"".join(chunks))


def run_point(base: Mapping[str, Any], scenario_path: str, point: Mapping[str, Any], pid: str,
              timeout_s: float | None = None, keep_dir: str | None = None) -> dict:
    """Simulate one design point (a Dask task); returns its result row."""
    start = time.perf_counter()
    args = (base, scenario_path, point, keep_dir, pid)
    status, payload = _outcome(args) if timeout_s is None else _run_forked(args, timeout_s)
    summary = payload if status == "ok" else {}
    error = None if status == "ok" else payload
    row = {"point_id": pid, "status": status, "error": error, "wall_s": time.perf_counter() - start}
    row.update(point)
    row.update(metrics_of(summary))
    return row


def _param_type(values: list) -> pa.DataType:
    if all(isinstance(v, bool) for v in values):
        return pa.bool_()
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return pa.int64()
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return pa.float64()
    return pa.string()


def results_schema(spec: SweepSpec) -> pa.Schema:
    fields = [pa.field(name, kind) for name, kind in STATUS_FIELDS]
    for param in spec.params:
        fields.append(pa.field(param, _param_type([p[param] for p in spec.points if param in p])))
    fields += [pa.field(name, pa.float64()) for name, _ in METRICS]
    from sim import __version__
    return pa.schema(fields, metadata={"accsim.version": __version__, "accsim.sweep_id": spec.sweep_id,
                                       "accsim.sweep": spec.name})


SWEEP_RECORD = "sweep.json"


def claim_directory(out: Path, spec: SweepSpec) -> None:
    """Make ``out`` this sweep's results directory, or check that it is one:
    ``out/sweep.json`` records the sweep id, and a directory holding another
    sweep's results (or anything else) is refused rather than merged."""
    record = out / SWEEP_RECORD
    if out.exists() and not out.is_dir():
        raise ScenarioError(f"--out {out}: exists and is not a directory")
    if record.is_file():
        try:
            previous = json.loads(record.read_text(encoding="utf-8"))
            previous_id = previous["sweep_id"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ScenarioError(f"{record}: unreadable; remove it, or choose another --out") from None
        if previous_id != spec.sweep_id:
            raise ScenarioError(f"--out {out}: holds the results of another sweep ({previous.get('name')!r}, "
                                f"id {previous_id}; this one is {spec.sweep_id}); choose another --out")
        return
    if out.is_dir() and any(out.iterdir()):
        raise ScenarioError(f"--out {out}: not empty and not a sweep's results directory (no {SWEEP_RECORD}); "
                            f"choose another --out")
    from sim import __version__
    from sim.reports.writer import write_json
    out.mkdir(parents=True, exist_ok=True)
    write_json({"sweep_id": spec.sweep_id, "name": spec.name, "scenario": str(spec.scenario_path),
                "points": len(spec.points), "params": list(spec.params), "seed": spec.seed,
                "accsim_version": __version__}, record)


def _coerce(row: Mapping[str, Any], schema: pa.Schema) -> dict:
    out = {}
    for f in schema:
        value = row.get(f.name)
        if value is not None and f.type == pa.string() and not isinstance(value, str):
            value = json.dumps(value)
        out[f.name] = value
    return out


def read_results(out_dir: Path) -> pa.Table | None:
    folder = Path(out_dir) / "results"
    files = sorted(folder.glob("part-*.parquet"))
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")


class _Writer:
    """Buffers finished rows and writes them as Parquet parts, atomically."""

    def __init__(self, folder: Path, schema: pa.Schema, every_rows: int = 16, every_s: float = 2.0):
        self.folder, self.schema = folder, schema
        self.every_rows, self.every_s = every_rows, every_s
        self.token = uuid.uuid4().hex[:12]
        self.count = 0
        self.rows: list[dict] = []
        self.last = time.monotonic()

    def add(self, row: dict) -> None:
        self.rows.append(_coerce(row, self.schema))
        if len(self.rows) >= self.every_rows or time.monotonic() - self.last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            write_part(self.folder, pa.Table.from_pylist(self.rows, schema=self.schema),
                       f"part-{self.token}-{self.count:05d}.parquet")
            self.count += 1
            self.rows = []
        self.last = time.monotonic()


def write_part(folder: Path, table: pa.Table, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp-{os.getpid()}"
    pq.write_table(table, tmp)
    os.replace(tmp, folder / name)


def compact(out_dir: Path) -> pa.Table | None:
    """One row per point (an ``ok`` row wins, else the last written), in one file."""
    folder = Path(out_dir) / "results"
    files = sorted(folder.glob("part-*.parquet"))
    table = read_results(out_dir)
    if table is None:
        return None
    rank = {"ok": 2, "invalid": 1, "error": 0}
    best: dict[str, tuple[int, int]] = {}
    for index, (pid, status) in enumerate(zip(table["point_id"].to_pylist(), table["status"].to_pylist())):
        key = (rank.get(status, 0), index)
        if pid not in best or key >= best[pid]:
            best[pid] = key
    keep = sorted(index for _, index in best.values())
    table = table.take(keep)
    table = table.sort_by("point_id")
    if len(files) == 1 and table.num_rows == pq.read_metadata(files[0]).num_rows:
        return table
    name = f"part-compacted-{uuid.uuid4().hex[:12]}.parquet"
    write_part(folder, table, name)
    for f in files:
        if f.name != name:
            f.unlink()
    return table


def check_options(workers, timeout_s, scheduler) -> None:
    """``--workers`` 1..4096, ``--timeout`` a positive finite number, ``--scheduler`` an address."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or not 1 <= workers <= 4096):
        raise ScenarioError(f"--workers: expected an integer from 1 to 4096, got {workers!r}")
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                  or not math.isfinite(timeout_s) or timeout_s <= 0):
        raise ScenarioError(f"--timeout: expected a positive number of seconds, got {timeout_s!r}")
    if scheduler is not None and (not isinstance(scheduler, str) or "://" not in scheduler):
        raise ScenarioError(f"--scheduler: expected an address such as tcp://host:8786, got {scheduler!r}")


def _start_client(scheduler: str | None, workers: int | None, progress: bool):
    """(client, client to close, cluster to close): a client of ``scheduler``,
    or of a new LocalCluster of ``workers`` processes."""
    from dask.distributed import Client, LocalCluster
    _refuse_unguarded_reimport()
    if scheduler:
        if progress:
            print(f"  sweep: connecting to the Dask scheduler at {scheduler}...", file=sys.stderr, flush=True)
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise ScenarioError(f"--scheduler {scheduler}: cannot connect ({exc})") from None
        return client, client, None
    count = workers or os.cpu_count() or 1
    if progress:
        print(f"  sweep: starting a local Dask cluster of {count} worker process"
              f"{'es' if count != 1 else ''}...", file=sys.stderr, flush=True)
    with _workers_do_not_rerun_main():
        cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=True,
                               dashboard_address=":0", host="127.0.0.1", silence_logs=logging.WARNING)
    client = Client(cluster)
    return client, client, cluster


class _Progress:
    """A tqdm bar on a terminal, a plain line every few seconds otherwise."""

    def __init__(self, total: int, initial: int, enabled: bool, stream=sys.stderr):
        self.total, self.done, self.errors = total, initial, 0
        from sim.progress import quiet_from_environment
        enabled = enabled and not quiet_from_environment()
        self.stream, self.enabled = stream, enabled
        self.start = time.monotonic()
        self.last = 0.0
        self.bar = None
        if enabled and stream.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="point", file=stream)

    def update(self, row: dict) -> None:
        self.done += 1
        self.errors += row["status"] != "ok"
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix(errors=self.errors)
            self.bar.update(1)
            return
        now = time.monotonic()
        if now - self.last >= 5.0 or self.done == self.total:
            self.last = now
            rate = (self.done) / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate > 0 else math.inf
            self.stream.write(f"  sweep: {self.done}/{self.total} points, {self.errors} not ok, "
                              f"{rate * 60:.1f} points/min, ETA {eta:.0f} s\n")
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def sweep(sweep_or_path: str | os.PathLike | Mapping[str, Any] | SweepSpec, out: str | os.PathLike,
          client=None, workers: int | None = None, scheduler: str | None = None,
          timeout_s: float | None = None, keep_timelines: bool = False,
          progress: bool = True) -> pa.Table:
    """Run every point of a sweep on Dask; return the results (one row per point).

    ``sweep_or_path``: a sweep file, a mapping shaped like one, or a loaded
    SweepSpec. ``out``: the results directory (``out/results/`` Parquet, and
    ``out/sweep.json`` naming the sweep; re-running resumes, another sweep is
    refused). ``client``: an existing ``dask.distributed.Client``; else
    ``scheduler`` (an address such as ``tcp://host:8786``); else an embedded
    ``LocalCluster`` with ``workers`` worker processes (default: the CPU
    count). ``timeout_s``: per-point limit. ``keep_timelines``: keep each
    point's Arrow files in ``out/points/ID/``. Bad input raises an
    AccsimError (one line) before any worker starts.
    """
    from dask.distributed import as_completed

    check_options(workers, timeout_s, scheduler)
    spec = sweep_or_path if isinstance(sweep_or_path, SweepSpec) else load_sweep(sweep_or_path)
    out = Path(out)
    claim_directory(out, spec)
    from sim.reports.writer import clean_stale
    clean_stale(out / "results")        # parts a killed sweep was writing
    schema = results_schema(spec)
    ids = [point_id(spec.base, p) for p in spec.points]
    previous = read_results(out)
    settled = set()
    if previous is not None:
        settled = {pid for pid, status in zip(previous["point_id"].to_pylist(), previous["status"].to_pylist())
                   if status in ("ok", "invalid")}
    todo = [(pid, p) for pid, p in dict(zip(ids, spec.points)).items() if pid not in settled]
    total_unique = len(set(ids))
    if progress:
        print(f"sweep {spec.name}: {len(spec.points)} points over {', '.join(spec.params)}"
              + (f" ({spec.filtered} filtered out by where)" if spec.filtered else "")
              + (f"; {total_unique - len(todo)} done already" if len(todo) < total_unique else ""),
              file=sys.stderr, flush=True)
    own_cluster = own_client = None
    if not todo:
        table = compact(out)
        return table if table is not None else schema.empty_table()
    if client is None:
        client, own_client, own_cluster = _start_client(scheduler, workers, progress)
    writer = _Writer(out / "results", schema)
    bar = _Progress(total_unique, total_unique - len(todo), progress)
    keep_dir = str((out / "points").resolve()) if keep_timelines else None
    try:
        futures = {client.submit(run_point, dict(spec.base), str(spec.scenario_path), point, pid,
                                 timeout_s, keep_dir, key=f"accsim-point-{pid}-{uuid.uuid4().hex[:8]}",
                                 pure=False): (pid, point)
                   for pid, point in todo}
        for future in as_completed(futures):
            pid, point = futures[future]
            try:
                row = future.result()
            except Exception as exc:  # noqa: BLE001 (a worker died, the task was lost...)
                row = {"point_id": pid, "status": "error", "error": f"{type(exc).__name__}: {exc}",
                       "wall_s": None, **point}
            writer.add(row)
            bar.update(row)
        writer.flush()
    finally:
        writer.flush()
        bar.close()
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()
    table = compact(out)
    return table if table is not None else schema.empty_table()



def _refuse_unguarded_reimport() -> None:
    """A worker process that re-imports a script which calls ``sim.sweep`` at
    its top level (no ``if __name__ == "__main__":`` guard) would start a
    sweep of its own: refuse with a line that says what to add."""
    import multiprocessing
    if multiprocessing.parent_process() is not None and "__mp_main__" in sys.modules:
        raise ScenarioError("sim.sweep was called while a worker process was importing your script; "
                            "put the call under if __name__ == \"__main__\":")


@contextlib.contextmanager
def _workers_do_not_rerun_main():
    """Worker processes started with spawn or forkserver (Dask's default)
    import the parent's ``__main__`` script first, so a script without an
    ``if __name__ == "__main__":`` guard would run again in each of them.
    They only run accsim's own functions: hide the script from
    multiprocessing (sys.modules["__main__"].__file__ and __spec__) while
    they start."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {name: vars(main)[name] for name in ("__file__", "__spec__") if name in vars(main)}
    main.__spec__ = None
    if "__file__" in saved:
        del main.__file__
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)
