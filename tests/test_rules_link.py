"""The rules' clock and our own broker link (rules/clock.py): our silence is not the devices'."""

from __future__ import annotations

from devices.location import LocationConfig
from devices.registry import Device, Registry
from rules.config import RulesConfig
from rules.engine import RuleEngine
from rules.testing import RecordingSink, water

S = 1000
T0 = 1_720_000_000_000


def engine() -> tuple[RuleEngine, RecordingSink]:
    reg = Registry(
        [Device(f"W{i}", "waterlevel", road="洸河路", report_interval_s=10) for i in range(3)]
    )
    sink = RecordingSink()
    return RuleEngine(RulesConfig(), LocationConfig(), reg, sink), sink


def live(e: RuleEngine, start: int, end: int, devices: range = range(3)) -> None:
    """Every device reports every 10 s, arriving at once, the wall clock ticking along."""
    for t in range(start, end, 10 * S):
        for i in devices:
            e.observe(water(f"W{i}", t, 2.0))
        e.tick(t)


def test_the_wall_clock_waits_while_the_link_is_down_and_its_backlog_comes_in() -> None:
    e, sink = engine()
    live(e, T0, T0 + 60 * S)
    down = T0 + 60 * S
    e.link(False, down)
    for t in range(down, down + 120 * S, S):
        e.tick(t)  # two minutes of our own silence
    back = down + 120 * S
    e.link(True, back)
    for t in range(back, back + 3 * S, S):
        e.tick(t)  # back, the backlog not in yet
    assert sink.of("device_offline") == []
    # The backlog: everything the devices sent meanwhile, arriving now, oldest first, W2 silent.
    rx = back + 3 * S
    for t in range(down, back, 10 * S):
        for i in (0, 1):
            e.observe(water(f"W{i}", t, 2.0, received=rx))
        rx += 10
        e.tick(rx)
    # W2 really was silent for 30 s within the backlog: offline, at its own event time.
    raised = [c for c in sink.of("device_offline") if c.active]
    assert [c.device for c in raised] == ["W2"]
    assert raised[0].at_ms < back
    # A reading made after the return ends the catching up; the wall clock runs again.
    e.observe(water("W0", back + 4 * S, 2.0, received=back + 4 * S))
    assert not e.clock.held
    e.tick(back + 5 * S)
    assert {c.device for c in sink.of("device_offline") if c.active} == {"W2"}


def test_a_backlog_that_never_comes_is_a_blackout_after_a_quiet_spell() -> None:
    e, sink = engine()
    live(e, T0, T0 + 60 * S)
    down = T0 + 60 * S
    e.link(False, down)
    back = down + 60 * S
    e.link(True, back)
    e.tick(back + 2 * S)
    assert e.clock.held and sink.of("device_offline") == []
    for t in range(back + 3 * S, back + 30 * S, S):
        e.tick(t)  # nothing arrives: quiet for backlog_quiet_s, then the wall clock runs
    raised = [c for c in sink.of("device_offline") if c.active]
    assert sorted(c.device for c in raised) == ["W0", "W1", "W2"]  # once each
    e.link(False, back + 31 * S)
    e.link(True, back + 32 * S)
    for t in range(back + 33 * S, back + 60 * S, S):
        e.tick(t)
    assert len([c for c in sink.of("device_offline") if c.active]) == 3  # not again


def test_a_session_the_broker_lost_is_a_gap_not_a_silence() -> None:
    e, sink = engine()
    live(e, T0, T0 + 60 * S)
    down = T0 + 60 * S
    e.link(False, down)
    back = down + 5 * 60 * S
    e.link(True, back, backlog=False)  # nothing queued for us: those minutes were not seen
    live(e, back + S, back + 60 * S)
    assert sink.of("device_offline") == []


def test_without_link_news_the_engine_runs_as_before() -> None:
    """Replays and tests never call link(): the wall clock runs while live."""
    e, sink = engine()
    live(e, T0, T0 + 60 * S)
    for t in range(T0 + 60 * S, T0 + 120 * S, S):
        e.tick(t)
    assert len([c for c in sink.of("device_offline") if c.active]) == 3


def test_a_backlog_that_pauses_is_waited_for_longer() -> None:
    """The backlog stalled 4 s once (our disk, say): 5 s of quiet is no proof it is over."""
    e, _sink = engine()
    live(e, T0, T0 + 60 * S)
    down = T0 + 60 * S
    e.link(False, down)
    back = down + 60 * S
    e.link(True, back)
    rx = back + 100
    for n, t in enumerate(range(down, down + 30 * S, 10 * S)):
        for i in range(3):
            e.observe(water(f"W{i}", t, 2.0, received=rx))
        rx += 4 * S if n == 0 else 100
    e.tick(rx + 6 * S)
    assert e.clock.held  # 6 s after the last arrival, but the backlog once paused 4 s
    e.tick(rx + 13 * S)
    assert not e.clock.held
