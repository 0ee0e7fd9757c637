"""The command line's exit statuses: 2 and one line for input and usage errors, 3 and one
line naming a saved traceback for a bug (the last line of defence), 0 for --version."""

import re
from pathlib import Path

import sim.cli.run
from sim import __version__
from sim.cli import main


def test_a_bug_is_one_line_naming_a_saved_traceback(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(sim.cli.run, "cmd_run", broken)
    assert main(["run", "quickstart", "--out", "unused"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("accsim: internal error: RuntimeError: boom second line")
    saved = Path(re.search(r"traceback saved to (\S+);", err).group(1))
    text = saved.read_text()
    assert "Traceback" in text and "boom" in text and __version__ in text
    saved.unlink()


def test_usage_errors_are_one_line_with_status_2(capsys):
    for argv in (["run"], ["nonsense"], ["run", "x.yaml", "--out", "o", "--format", "csv"],
                 ["sweep", "s.yaml", "--out", "o", "--workers", "many"], []):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("accsim: error: accsim"), err


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"accsim {__version__}"
