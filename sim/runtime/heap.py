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


# Whether the heap is frozen by accsim itself (collector_paused(freeze=True) or heap_frozen),
# so that heap_frozen knows the freeze is its own to lift.
_frozen_by_accsim = False


@contextmanager
def collector_paused(freeze: bool = False) -> Iterator[None]:
    """No automatic collection inside (for building the trace and binding its
    ops, which make long-lived objects and no garbage cycles); cycles made
    inside are collected after it, by the next automatic collection.

    ``freeze``: on exit, the objects alive are frozen (``gc.freeze``) rather
    than left young: otherwise the collector's next young-generation passes walk
    every object made inside once more, each finding nothing (0.1 CPU s after
    loading GPT-3 175B's trace, 0.4 s after GPT 1T's). The next ``heap_frozen``
    (the simulation) takes that freeze over and lifts it when the run ends.
    Nothing is frozen when something other than accsim froze the heap."""
    global _frozen_by_accsim
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        if freeze and (_frozen_by_accsim or not gc.get_freeze_count()):
            gc.freeze()
            _frozen_by_accsim = True
    finally:
        if enabled:
            gc.enable()


@contextmanager
def heap_frozen() -> Iterator[None]:
    """The objects alive on entry are left out of collections until exit
    (``gc.freeze``: the simulation's trace, not garbage, is not walked again
    while the event loop runs); on exit they are tracked again, so a process
    running many scenarios (a sweep) still frees each one's cycles. Does
    nothing when something other than accsim froze the heap already."""
    global _frozen_by_accsim
    if gc.get_freeze_count() and not _frozen_by_accsim:
        yield
        return
    gc.freeze()
    _frozen_by_accsim = True
    try:
        yield
    finally:
        gc.unfreeze()
        _frozen_by_accsim = False


_trim = None     # glibc's malloc_trim once looked up; False where the C library has none


def return_free_memory() -> None:
    """Give the C heap's free pages back to the operating system: glibc's
    ``malloc_trim(0)``, which releases every whole free page, including those
    in holes below live blocks; nothing where the C library has no such call
    (macOS, musl).

    Why: the result tables of a million-op run are built from numpy arrays of
    a million rows, made and freed in an order that leaves holes in the heap
    below arrays that stay alive (the timeline's columns). glibc returns only
    the heap's free top to the system, so those holes stay resident: on a
    folded GPT 1T run 120-180 MB of free heap were resident while the tables
    were built (mallinfo2). Dask's workers make the same call for the same
    reason (distributed documentation, "Worker Memory Management: memory not
    released back to the OS"). Each call walks the free lists: a few ms."""
    global _trim
    if _trim is None:
        import ctypes
        try:
            _trim = ctypes.CDLL(None).malloc_trim
            _trim.argtypes = [ctypes.c_size_t]
            _trim.restype = ctypes.c_int
        except (AttributeError, OSError):
            _trim = False
    if _trim:
        _trim(0)
