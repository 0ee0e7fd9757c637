"""Progress on stderr: shown only for waits over a delay, ended with a newline, silent when quiet."""

import io
import time

import pytest

from sim.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_stages_say_what_happens_and_end_with_a_newline():
    for stream in (Terminal(), io.StringIO()):
        progress = Progress(stream=stream, delay_s=0.05)
        with progress.stage("loading x"):
            time.sleep(0.3)
        with progress.stage("quick"):
            pass
        text = stream.getvalue()
        assert "loading x" in text and "done in" in text and text.endswith("\n")
        assert "quick" not in text, "a step shorter than the delay shows nothing"


def test_op_counter_is_a_bar_on_a_terminal_and_lines_otherwise():
    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = Progress(stream=stream, delay_s=0.0)
        for done in (0, 25, 50, 100):
            progress(done, 100)
    assert "100/100" in terminal.getvalue() and terminal.getvalue().endswith("\n")
    assert pipe.getvalue().splitlines()[-1] == "  simulated 100/100 ops (100%)"


def test_quiet_prints_nothing():
    stream = Terminal()
    progress = Progress(enabled=False, stream=stream, delay_s=0.0)
    with progress.stage("x"):
        time.sleep(0.05)
    progress(10, 10)
    assert stream.getvalue() == ""


def test_nested_stages_and_a_failure_each_start_their_own_line():
    stream = Terminal()
    progress = Progress(stream=stream, delay_s=0.05)
    try:
        with progress.stage("outer"):
            time.sleep(0.2)
            with progress.stage("inner"):
                time.sleep(0.2)
            raise ValueError
    except ValueError:
        stream.write("accsim: error: x\n")
    lines = [line.split("\r")[-1] for line in stream.getvalue().split("\n")]
    assert lines == ["  outer...", "  inner: done in 0.2 s", "accsim: error: x", ""], lines


@pytest.mark.parametrize("value, silent", [("1", True), ("yes", True), ("0", False), ("", False)])
def test_accsim_quiet_in_the_environment_silences_progress(monkeypatch, value, silent):
    monkeypatch.setenv("ACCSIM_QUIET", value)
    stream = Terminal()
    progress = Progress(stream=stream, delay_s=0.0)
    with progress.stage("x"):
        time.sleep(0.05)
    progress(10, 10)
    assert (stream.getvalue() == "") == silent
