"""`accsim validate`: the shipped validation set runs, reports errors and verdicts."""

import json
import subprocess
import sys

import pytest

from conftest import ROOT
from sim.validation import Group, GroupResult, Point, PointResult, render_markdown, run


def accsim(*args):
    return subprocess.run([sys.executable, "-m", "sim", *args], cwd=ROOT, capture_output=True, text=True)


def test_collectives_group_passes_and_reports_json():
    proc = accsim("validate", "--only", "collectives", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    (group,) = report["groups"]
    assert group["group"] == "collectives" and group["passed"]
    for point in group["points"]:
        assert point["error"] == pytest.approx((point["predicted"] - point["published"]) / point["published"])
        assert point["role"] in ("calibration", "check") and point["source"]


def test_unknown_group_is_an_input_error():
    proc = accsim("validate", "--only", "no_such_group")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no_such_group" in proc.stderr


def test_a_group_outside_tolerance_fails_and_the_markdown_says_so():
    points = (Point("a", 100.0, "x", "src", "check", lambda: 120.0),
              Point("b", 100.0, "x", "src", "calibration", lambda: 100.0))
    (result,) = run([Group("g", "G", "desc", points, mape_tolerance=0.05, max_tolerance=0.15)])
    assert result.mape == pytest.approx(0.10) and result.worst == pytest.approx(0.20)
    assert not result.passed
    text = render_markdown([result], "accsim validate")
    assert "+20.0%" in text and "**FAIL**" in text


def test_a_point_needs_a_known_role():
    with pytest.raises(ValueError):
        Point("a", 1.0, "x", "src", "fitted", lambda: 1.0)
