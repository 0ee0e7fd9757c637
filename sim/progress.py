"""Progress on stderr for anything a user waits on for more than a second.

``Progress.stage(label)`` wraps a step (loading, expanding, building tables,
writing, exporting, starting workers): nothing is shown unless it is still
running after ``delay_s``; then a line says what is happening, and another
(on a terminal, the same line, ended with a newline) how long it took.
Calling the object with ``(done, total)`` drives a tqdm bar of simulated ops
on a terminal, or a line every 10% otherwise (again only after ``delay_s``).
``Progress(enabled=False)`` (``--quiet``) prints nothing, and neither does any
progress while the environment sets ``ACCSIM_QUIET`` to anything but ``""`` or
``"0"`` (for logs and CI jobs that capture stderr and want only errors there).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Iterator, TextIO


class Progress:
    """Stages and an op counter on ``stream`` (default stderr)."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, delay_s: float = 1.0):
        self.enabled = enabled and not quiet_from_environment()
        self.stream = stream if stream is not None else sys.stderr
        self.delay_s = delay_s
        self.tty = enabled and _isatty(self.stream)
        self._lock = threading.Lock()
        self._bar = None
        self._start = None
        self._decile = 0
        self.unit = "op"            # what is counted: ops; requests in serving runs
        self._open_line = False      # a terminal line a stage began and has not ended

    def _end_open_line(self) -> None:
        """Start a fresh line if a stage's line is open (nested stages, the op bar)."""
        if self._open_line:
            self._write("\n")
            self._open_line = False

    def _write(self, text: str) -> None:
        with self._lock:
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):
                pass

    @contextlib.contextmanager
    def stage(self, label: str) -> Iterator[None]:
        """Say what is happening if ``label``'s step takes more than ``delay_s``."""
        if not self.enabled:
            yield
            return
        shown = threading.Event()
        start = time.monotonic()

        def show() -> None:
            shown.set()
            self._end_open_line()
            self._write(f"  {label}...")
            if self.tty:
                self._open_line = True
            else:
                self._write("\n")

        timer = threading.Timer(self.delay_s, show)
        timer.daemon = True
        timer.start()
        try:
            yield
        except BaseException:
            timer.cancel()
            self._end_open_line()          # the error line that follows starts on its own line
            raise
        timer.cancel()
        if shown.is_set():
            elapsed = time.monotonic() - start
            if self.tty and self._open_line:
                self._write(f"\r  {label}: done in {elapsed:.1f} s\n")
                self._open_line = False
            else:
                self._write(f"  {label}: done in {elapsed:.1f} s\n")

    def __call__(self, done: int, total: int) -> None:
        """Ops simulated so far (the engine calls this every few thousand ops)."""
        if not self.enabled or total <= 0:
            return
        if self._start is None:
            self._start = time.monotonic()
        shown = self._bar is not None or self._decile > 0
        if not shown and time.monotonic() - self._start < self.delay_s:
            return
        if self.tty:
            if self._bar is None:
                from tqdm import tqdm
                self._end_open_line()
                self._bar = tqdm(total=total, unit=self.unit, desc="  simulating", file=self.stream,
                                 leave=True, dynamic_ncols=True)
            self._bar.update(done - self._bar.n)
            if done >= total:
                self.close()
            return
        decile = int(10 * done / total)
        if decile > self._decile:
            self._decile = decile
            self._write(f"  simulated {done}/{total} {self.unit}s ({10 * decile}%)\n")

    def close(self) -> None:
        """End the op bar (a newline on a terminal)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._end_open_line()


def quiet_from_environment() -> bool:
    """True when ``ACCSIM_QUIET`` asks for no progress (set, and not ``0``)."""
    return os.environ.get("ACCSIM_QUIET", "") not in ("", "0")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
