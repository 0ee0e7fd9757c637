"""The cyclic garbage collector around building and simulating large traces.

CPython's collector runs a full collection whenever the objects that survived
earlier ones grow by a quarter, and each walks every container alive. A
generated trace of a million ops (and its bound ops, dependency lists and
timeline rows) is built once and lives until the run ends, so those walks
found nothing and cost about an eighth of a GPT-3 175B run
(docs/performance.md). Reference counting still frees everything; only
reference cycles wait for the collector.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic collection inside (for building the trace and binding its
    ops, which make long-lived objects and no garbage cycles); cycles made
    inside are collected after it, by the next automatic collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def heap_frozen() -> Iterator[None]:
    """The objects alive on entry are left out of collections until exit
    (``gc.freeze``: the simulation's trace, not garbage, is not walked again
    while the event loop runs); on exit they are tracked again, so a process
    running many scenarios (a sweep) still frees each one's cycles. Does
    nothing when something else froze the heap already."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
