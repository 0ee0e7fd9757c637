"""The environment's calendar: callbacks interleave with SimPy events exactly
as SimPy events scheduled at the same moment would."""

import pytest
from hypothesis import given, settings, strategies as st

from sim.engine.calendar import Environment, cancel


def test_callbacks_run_at_their_times_in_scheduling_order():
    env = Environment()
    seen = []
    for time_s, tag in [(2.0, "b"), (1.0, "a"), (2.0, "c"), (0.5, "z")]:
        env.at(time_s, lambda t, tag=tag: seen.append((env.now, t)), tag)
    env.run()
    assert seen == [(0.5, "z"), (1.0, "a"), (2.0, "b"), (2.0, "c")]
    assert env.fired == 4
    assert env.scheduled() == 4


def test_a_time_in_the_past_runs_now():
    env = Environment()
    seen = []
    env.at(1.0, lambda _: env.at(0.2, lambda _: seen.append(env.now)))
    env.run()
    assert seen == [1.0]


def test_cancelled_entries_neither_run_nor_move_time():
    env = Environment()
    seen = []
    env.at(1.0, seen.append, "kept")
    late = env.at(5.0, seen.append, "cancelled")
    cancel(late)
    env.run()
    assert seen == ["kept"]
    assert env.now == 1.0
    assert env.fired == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["event", "callback"]),
                          st.integers(0, 3).map(float)), min_size=1, max_size=30))
def test_interleaving_matches_plain_simpy_events(items):
    """Replace each calendar entry by a SimPy timeout scheduled at the same
    moment: the order things happen in must be the same."""
    def order(as_events: bool) -> list[int]:
        env = Environment()
        seen = []
        for i, (kind, delay) in enumerate(items):
            if kind == "event" or as_events:
                env.timeout(delay).callbacks.append(lambda _, i=i: seen.append(i))
            else:
                env.at(delay, seen.append, i)
        env.run()
        return seen

    assert order(False) == order(True)


def test_processes_see_calendar_time_and_run_until_stops_before_it():
    env = Environment()
    seen = []

    def process():
        yield env.timeout(1.0)
        seen.append(("process", env.now))
        env.at(env.now + 1.0, lambda _: seen.append(("callback", env.now)))
        yield env.timeout(3.0)
        seen.append(("process", env.now))

    env.process(process())
    env.run(until=2.0)
    # run(until) stops before events and callbacks at that instant, as SimPy does
    assert seen == [("process", 1.0)]
    assert env.now == 2.0
    env.run()
    assert seen == [("process", 1.0), ("callback", 2.0), ("process", 4.0)]


def test_peek_sees_both_heaps():
    env = Environment()
    assert env.peek() == float("inf")
    env.timeout(3.0)
    entry = env.at(1.0, print)
    assert env.peek() == 1.0
    cancel(entry)
    assert env.peek() == 3.0


def test_fluid_network_refuses_a_plain_simpy_environment():
    import simpy

    from sim.engine.fluid import FluidNetwork

    with pytest.raises(TypeError, match="sim.engine.calendar.Environment"):
        FluidNetwork(simpy.Environment(), {"tier": 1.0})
