"""The collector around loading and simulating (sim.runtime.heap): objects built
while loading are frozen rather than walked again, and the run lifts that freeze
when it ends, so nothing stays frozen after a run; a freeze that is not accsim's
own is left alone."""

from __future__ import annotations

import gc

import pytest

import sim
from sim.runtime import heap


def test_a_run_leaves_nothing_frozen():
    gc.unfreeze()
    scenario = sim.load_scenario("quickstart")
    assert gc.get_freeze_count() > 0           # the loaded trace is frozen, not walked again
    sim.run(scenario)
    assert gc.get_freeze_count() == 0
    assert not heap._frozen_by_accsim


def test_a_freeze_not_made_by_accsim_is_kept():
    gc.unfreeze()
    gc.freeze()                                 # the caller's own freeze
    try:
        frozen = gc.get_freeze_count()
        sim.run("quickstart")
        assert gc.get_freeze_count() >= frozen  # not lifted by the run
        assert not heap._frozen_by_accsim
    finally:
        gc.unfreeze()


def test_a_failed_load_freezes_nothing():
    gc.unfreeze()
    with pytest.raises(sim.errors.AccsimError, match="multiple"):    # found while generating the trace
        sim.load_scenario("quickstart", ["parallel.global_batch=3"])
    assert gc.get_freeze_count() == 0


def test_free_memory_is_returned_where_glibc_is_the_c_library():
    import platform
    heap.return_free_memory()
    heap.return_free_memory()                   # looked up once, callable again
    if platform.libc_ver()[0] == "glibc":
        assert heap._trim, "malloc_trim not found in a glibc process"


def test_released_edges_are_built_again_the_same():
    trace = sim.load_scenario("quickstart").trace
    src, dst = (a.copy() for a in trace.edge_indices())
    trace.release_edges()
    assert trace._edges is None
    again = trace.edge_indices()
    assert (again[0] == src).all() and (again[1] == dst).all() and again[0].dtype == src.dtype
