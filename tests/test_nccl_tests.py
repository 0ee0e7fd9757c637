"""nccl-tests logs: the parser (round trip with our printer, real layouts, errors) and
`accsim collective` end to end (table, --nccl-tests, bad input, bounds)."""

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from sim.network.nccl_tests import NcclTestsError, header, parse, row_text

from conftest import ROOT

NCCL_TESTS_LOG = """\
# nccl-tests version 2.19.4 nccl-headers=21903 nccl-library=21903
# Collective test starting: all_reduce_perf
# nThread 1 nGpus 8 minBytes 8 maxBytes 134217728 step: 2(factor) warmup iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0
#
# Using devices
#  Rank  0 Group  0 Pid  1000 on     host device  0 [0x07] NVIDIA A100-SXM4-80GB
#  Rank  1 Group  0 Pid  1000 on     host device  1 [0x0a] NVIDIA A100-SXM4-80GB
#  Rank  2 Group  0 Pid  1000 on     host device  2 [0x45] NVIDIA A100-SXM4-80GB
#  Rank  3 Group  0 Pid  1000 on     host device  3 [0x4b] NVIDIA A100-SXM4-80GB
#  Rank  4 Group  0 Pid  1000 on     host device  4 [0x84] NVIDIA A100-SXM4-80GB
#  Rank  5 Group  0 Pid  1000 on     host device  5 [0x8a] NVIDIA A100-SXM4-80GB
#  Rank  6 Group  0 Pid  1000 on     host device  6 [0xc0] NVIDIA A100-SXM4-80GB
#  Rank  7 Group  0 Pid  1000 on     host device  7 [0xc3] NVIDIA A100-SXM4-80GB
#
#                                                              out-of-place                       in-place
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
           8             2     float     sum      -1    40.00    0.00    0.00      0    39.00    0.00    0.00      0
     1048576        262144     float     sum      -1    52.00   20.16   35.29      0    53.00   19.78   34.62      0
8 more processes have sent help message help-mtl-ofi.txt / OFI call fail
  1073741824     268435456     float     sum      -1   8250.0  130.15  227.76    N/A   8240.0  130.31  228.04    N/A
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 87.68
"""

OLD_LAYOUT = """\
# nThread 1 nGpus 1 minBytes 1024 maxBytes 1048576 step: 2(factor) warmup iters: 5 iters: 20 validation: 1
#
#                                                     out-of-place                       in-place
#       size         count    type     time   algbw   busbw  error     time   algbw   busbw  error
#        (B)    (elements)             (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
        1024           256   float    20.00    0.05    0.04  0e+00    20.00    0.05    0.04  0e+00
"""


def test_parses_an_nccl_tests_log():
    log = parse(NCCL_TESTS_LOG)
    assert log.op == "allreduce" and log.gpus_per_process == 8 and log.ranks == 8
    assert [r.size_bytes for r in log.rows] == [8, 1048576, 1073741824]
    assert log.rows[2].time_s == pytest.approx(8250e-6)
    assert log.rows[2].busbw_bytes_per_s == pytest.approx(227.76e9)


def test_parses_the_older_layout_without_redop_and_root():
    log = parse(OLD_LAYOUT)
    assert log.op is None and log.rows[0].size_bytes == 1024 and log.rows[0].time_s == pytest.approx(20e-6)


@pytest.mark.parametrize("text,message", [
    ("", "no nccl-tests result rows"),
    ("hello\nworld\n", "no nccl-tests result rows"),
    ("#  size count type redop root time algbw busbw\n  8 2 float sum -1 fast 0.0 0.0\n", "column time"),
    ("#  size count type redop root time algbw busbw\n  8 2 float\n", "expected 8 columns"),
    ("#  size count type redop root time algbw busbw\n  8 2 float sum -1 0 0.0 0.0\n", "positive time"),
])
def test_bad_logs_are_one_line_errors(text, message):
    with pytest.raises(NcclTestsError, match=message) as info:
        parse(text, "x.log")
    assert "\n" not in str(info.value) and str(info.value).startswith("x.log")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 2**40), st.floats(1e-6, 10.0)), min_size=1, max_size=20),
       st.sampled_from(["allreduce", "allgather", "reduce_scatter", "broadcast", "alltoall"]),
       st.sampled_from(["nccl_ring", "nvls", "nccl_tree", "nccl_p2p"]),
       st.sampled_from(["LL", "LL128", "Simple"]))
def test_print_then_parse_round_trip(rows, op, algorithm, protocol):
    lines = header(op, 8, 1)
    for size, time_s in rows:
        lines.append(row_text(op, size, time_s, size / time_s, size / time_s * 1.75, algorithm, protocol))
    log = parse("\n".join(lines))
    assert log.op == op and len(log.rows) == len(rows)
    for row, (size, time_s) in zip(log.rows, rows):
        assert row.size_bytes == size
        # nccl-tests prints 2 decimals below 100 us, 1 below 10 ms, none above
        assert row.time_s == pytest.approx(time_s, abs=0.51e-6 + 0.0)
        assert (row.algorithm, row.protocol) == (algorithm, protocol)


def accsim(*args):
    return subprocess.run([sys.executable, "-m", "sim", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_cli_prints_an_nccl_tests_table_that_parses_back():
    proc = accsim("collective", "--topology", "dgx_a100", "--op", "all-reduce", "--bytes", "8:1GiB:8")
    assert proc.returncode == 0, proc.stderr
    log = parse(proc.stdout)
    assert [r.size_bytes for r in log.rows] == [8 * 8 ** i for i in range(10)]
    assert log.rows[0].protocol == "LL" and log.rows[-1].protocol == "Simple"
    assert all(r.algorithm == "nccl_ring" for r in log.rows)
    # busbw = algbw x 2(n-1)/n
    assert log.rows[-1].busbw_bytes_per_s == pytest.approx(log.rows[-1].algbw_bytes_per_s * 14 / 8, rel=0.01)


def test_cli_compares_against_a_saved_log(tmp_path):
    path = tmp_path / "all_reduce_perf.log"
    path.write_text(NCCL_TESTS_LOG)
    proc = accsim("collective", "--topology", "dgx_a100", "--nccl-tests", path)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if not line.startswith("#")]
    assert len(lines) == 3
    # the log ran 8 GPUs from one process (nGpus 8): the 8 B row is the host floor, 8 x 4.9 us
    assert float(lines[0].split()[2]) == pytest.approx(39.2)
    assert "mean |error|" in proc.stdout.splitlines()[-1]
    # a JSON row per size too
    proc = accsim("collective", "--topology", "dgx_a100", "--op", "allreduce", "--bytes", "1MiB", "--json",
                  "--gpus-per-process", "8")
    row = json.loads(proc.stdout)
    assert row["protocol"] in ("LL", "LL128", "Simple") and row["channels"] >= 1
    assert row["measured_like_time_s"] >= row["time_s"]


@pytest.mark.parametrize("args,message", [
    (["--topology", "dgx_a100", "--op", "allreduce", "--bytes", "1:1e6:1.000001"], "at most 1000"),
    (["--topology", "switch:100000", "--op", "allreduce", "--bytes", "1"], "at most 32768"),
    (["--topology", "dgx_a100", "--op", "allscream", "--bytes", "1"], "unknown collective op"),
    (["--topology", "dgx_a100", "--op", "allreduce", "--bytes", "1", "--protocol", "LL256"], "unknown protocol"),
    (["--topology", "dgx_a100", "--op", "allreduce", "--bytes", "1", "--algorithm", "nvls"], "NVLink SHARP"),
    (["--topology", "dgx_a100", "--op", "allreduce", "--bytes", "1", "--algorithm", "ring",
      "--protocol", "LL"], "--protocol applies"),
    (["--topology", "dgx_a100", "--op", "allreduce", "--bytes", "1", "--gpus-per-process", "0"],
     "--gpus-per-process"),
    (["--topology", "dgx_a100", "--op", "allreduce"], "--bytes is required"),
])
def test_cli_bad_input_is_one_line_exit_2(args, message):
    proc = accsim("collective", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and proc.stderr.count("\n") == 1


def test_cli_bad_log_and_bad_tree_arity(tmp_path):
    bad = tmp_path / "bad.log"
    bad.write_text("this is not an nccl-tests log\n")
    proc = accsim("collective", "--topology", "dgx_a100", "--nccl-tests", bad)
    assert proc.returncode == 2 and "no nccl-tests result rows" in proc.stderr and proc.stderr.count("\n") == 1
    cluster = tmp_path / "tree.yaml"
    cluster.write_text("generator: tree:8\narity: 1\n")
    proc = accsim("collective", "--topology", cluster, "--op", "allreduce", "--bytes", "1")
    assert proc.returncode == 2 and "arity" in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("text,message", [
    ("generator: cluster:2x8\nnvlink: nvlink9\n", "link type 'nvlink9'"),
    ("generator: cluster:2x8\nnccl: {arch: pascal}\n", "nccl.arch"),
    ("generator: cluster:2x8\nwarp: 9\n", "unknown key 'warp'"),
    ("generator: ring:8\nnics_per_leaf: 4\n", "does not apply to ring"),
    ("generator: cluster:2x8\nnic_bandwidth: fast\n", "nic_bandwidth"),
    ("devices: [a, b]\nlinks:\n  - {a: a, b: b, bandwidth_bytes_per_s: 1e9, type: nvlink9}\n", "links[0].type"),
])
def test_cluster_file_errors_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    proc = accsim("collective", "--topology", path, "--op", "allreduce", "--bytes", "1")
    assert proc.returncode == 2 and message in proc.stderr and "c.yaml" in proc.stderr
    assert proc.stderr.count("\n") == 1
