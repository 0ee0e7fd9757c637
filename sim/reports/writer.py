"""Writing a run directory atomically: every file is written under a
temporary name in the same folder and renamed into place, so a crash or an
error never leaves a half-written file behind."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.ipc as ipc


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_arrow(table: pa.Table, path: Path) -> None:
    """Write ``table`` as an Arrow IPC file, atomically and deterministically
    (uncompressed, fixed batch layout, no timestamps)."""
    tmp = _tmp_name(path)
    try:
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=65536)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(data: Mapping[str, Any], path: Path) -> None:
    tmp = _tmp_name(path)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_run(out_dir: str | os.PathLike, tables: Mapping[str, pa.Table],
              summary: Mapping[str, Any]) -> Path:
    """Write ``NAME.arrow`` for each table, then ``summary.json`` last."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        write_arrow(table, out / f"{name}.arrow")
    write_json(summary, out / "summary.json")
    return out
