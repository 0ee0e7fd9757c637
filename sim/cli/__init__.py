"""The ``accsim`` command line: one module per command under ``sim/cli/``.

    accsim run SCENARIO --out DIR [--set key.path=value ...] [--overwrite] [--format arrow|parquet]
    accsim trace validate FILE
    accsim trace info FILE [--device NAME] [--json]
    accsim collective --topology TOPO --op OP --algorithm ALGO --bytes SIZE [...]
    accsim kernel --device D --op gemm|attention|pointwise [--m M --n N --k K] [--dtype DT] [--sweep] [--json]
    accsim perfetto RUN_DIR -o FILE [--format pftrace|json] [--devices GLOB] [--start S --end S]
    accsim sweep SWEEP.yaml --out DIR [--workers N] [--scheduler ADDRESS] [--timeout S] [--keep-timelines]
    accsim plan SCENARIO --out DIR [--objective throughput|memory] [--top N] [--workers N] [--tp 4,8 ...]
    accsim devices
    accsim import chakra|kineto|scalesim INPUT... --out TRACE.arrow

Each command module has ``register(subparsers)``, which adds its parser and
sets ``func``; ``COMMANDS`` lists them in ``--help`` order. Command modules
import heavy libraries inside their functions, so ``accsim --help`` stays fast.

Exit status: 0 success; 2 an input error (one line, ``accsim: error: ...``, on
stderr, nothing written); 3 an internal error (one line naming a saved
traceback file; please report it); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from sim.errors import AccsimError

COMMANDS = ("run", "plan", "trace", "collective", "kernel", "perfetto", "sweep", "devices", "validate",
            "importer")
_MODULE_OF = {"import": "importer"}       # command words whose module has another name


def _version() -> str:
    from sim import __version__
    return __version__


class Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (``accsim: error: ...``), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"accsim: error: {self.prog}: {_one_line(_printable(message))} "
                     f"(see {self.prog} --help)\n")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``accsim`` parser. When ``argv`` starts with a command word, only
    that command's parser is added (its options, help and errors are the same,
    and the other command modules are not imported: start-up, issue 13)."""
    parser = Parser(
        prog="accsim", description="Discrete-event simulator of accelerator clusters.",
        epilog="Errors in inputs exit with status 2 and write nothing. See README.md.")
    parser.add_argument("--version", action="version", version=f"accsim {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    first = _MODULE_OF.get(argv[0], argv[0]) if argv else None
    for name in (first,) if first in COMMANDS else COMMANDS:
        importlib.import_module(f"sim.cli.{name}").register(sub)
    return parser


def _save_traceback(exc: BaseException) -> str:
    """Write the traceback of an unexpected exception to a file; return its path."""
    import tempfile
    import time
    import traceback
    name = f"accsim-internal-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    path = os.path.join(tempfile.gettempdir(), name)
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(f"accsim {_version()}\nargv: {sys.argv!r}\n\n")
            fh.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    except OSError:
        return "(could not be saved)"
    return path


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _printable(text: str) -> str:
    """``text`` with anything the terminal's encoding cannot show escaped
    (file names that are not UTF-8 arrive as surrogates)."""
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    return str(text).encode(encoding, "backslashreplace").decode(encoding, "replace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, 2 input error, 3 internal error)."""
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        args = build_parser(argv).parse_args(argv)
    except SystemExit as exc:       # --help, --version, usage errors (printed already)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return args.func(args)
    except AccsimError as exc:
        print(f"accsim: error: {_one_line(_printable(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("accsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed by a pager (accsim ... | head): not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as exc:  # the last line of defence: never a traceback on the terminal
        path = _save_traceback(exc)
        print(f"accsim: internal error: {type(exc).__name__}: {_one_line(_printable(exc), 200)} "
              f"(traceback saved to {path}; please report it)", file=sys.stderr)
        return 3
