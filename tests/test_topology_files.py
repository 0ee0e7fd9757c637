"""Cluster YAML files: the shipped catalog loads; bad files fail with one clear line."""

import subprocess
import sys

import pytest

from sim.errors import SpecError
from sim.network.topology import cluster_catalog, load_topology

from conftest import ROOT


@pytest.mark.parametrize("name", sorted(cluster_catalog()))
def test_catalog_clusters_load(name):
    cluster = load_topology(name)
    assert cluster.size >= 8


def test_a100_1024_has_1024_gpus_in_128_nodes():
    cluster = load_topology("a100_1024")
    assert cluster.size == 1024 and cluster.machine(1023) == 127


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_disconnected_graph(tmp_path):
    path = write(tmp_path, "devices: [a, b, c]\nlinks:\n  - {a: a, b: b, bandwidth_bytes_per_s: 1e9}\n")
    with pytest.raises(SpecError, match="disconnected"):
        load_topology(str(path))


def test_non_positive_bandwidth(tmp_path):
    path = write(tmp_path, "devices: [a, b]\nlinks:\n  - {a: a, b: b, bandwidth_bytes_per_s: -1}\n")
    with pytest.raises(SpecError, match=r"c.yaml: links\[0\]\.bandwidth_bytes_per_s: expected a positive rate"):
        load_topology(str(path))


def test_unknown_device_spec(tmp_path):
    path = write(tmp_path, "device: warp_drive\ndevices: [a, b]\nlinks:\n  - {a: a, b: b, bandwidth_bytes_per_s: 1e9}\n")
    with pytest.raises(SpecError, match="names spec 'warp_drive'"):
        load_topology(str(path))


def accsim(*args):
    return subprocess.run([sys.executable, "-m", "sim", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_cli_errors_exit_2(tmp_path):
    bad = write(tmp_path, "devices: [a, b, c]\nlinks:\n  - {a: a, b: b, bandwidth_bytes_per_s: 1e9}\n")
    proc = accsim("collective", "--topology", bad, "--op", "allreduce", "--bytes", "1MiB")
    assert proc.returncode == 2 and "disconnected" in proc.stderr
    proc = accsim("collective", "--topology", "ring:4", "--op", "allreduce", "--bytes", "1MiB", "--group", "0,9")
    assert proc.returncode == 2 and "rank 9" in proc.stderr
    proc = accsim("collective", "--topology", "ring:4", "--op", "broadcast", "--algorithm", "ring", "--bytes", "1MiB")
    assert proc.returncode == 2 and "does not implement broadcast" in proc.stderr


def test_cli_table_and_json(tmp_path):
    import json
    proc = accsim("collective", "--topology", "ring:8", "--op", "all-reduce", "--algorithm", "ring",
                  "--bytes", "1KiB:1MiB", "--link-bandwidth", "1e11", "--link-latency", "1e-6")
    assert proc.returncode == 0, proc.stderr
    rows = [l.split() for l in proc.stdout.splitlines() if l.strip() and not l.startswith("#")]
    assert [int(r[0]) for r in rows] == [1024 * 2 ** i for i in range(11)]
    assert {r[-2] for r in rows} == {"ring"}
    proc = accsim("collective", "--topology", "ring:8", "--op", "allreduce", "--algorithm", "ring",
                  "--bytes", "64MiB", "--json", "--link-bandwidth", "1e11", "--link-latency", "0",
                  "--out", tmp_path / "coll")
    row = json.loads(proc.stdout)
    for key in ("op", "algorithm", "ranks", "bytes", "time_s", "algbw_bytes_per_s", "busbw_bytes_per_s"):
        assert key in row
    assert row["busbw_bytes_per_s"] == pytest.approx(1e11, rel=1e-6)
    import pyarrow.ipc as ipc
    with open(tmp_path / "coll" / "utilization.arrow", "rb") as fh:
        util = ipc.open_file(fh).read_all()
    assert util.num_rows == 8 and min(util["utilization"].to_pylist()) == pytest.approx(1.0)
    with open(tmp_path / "coll" / "timeline.arrow", "rb") as fh:
        timeline = ipc.open_file(fh).read_all()
    assert set(timeline["category"].to_pylist()) == {"comm"}
