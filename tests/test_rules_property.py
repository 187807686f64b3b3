"""Property: whatever the readings, alerts stay well-formed per (rule, device).

No stream yields a second raise for a (rule, device) that is already open (an active Condition
while open is only ever an update that changes something), no clear without a raise before it, and
event times never go backwards for one (rule, device) -- with one exception, a late run's past
episode (rules/late.py): a raise older than what the sink already heard for that (rule, device),
told while it is closed, and the updates and the clear of that episode. Every Condition of such an
episode carries `reported_at`, and it never touches an open alert of the live rule. The same holds
across save/load restarts.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.location import LocationConfig
from devices.messages import Observation
from devices.registry import Device, Registry
from rules.config import RulesConfig
from rules.engine import RuleEngine
from rules.signals import Condition
from rules.testing import RecordingSink, event, lamp, status, water
from tests.test_rules_kinds import NIGHT

REGISTRY = Registry(
    [
        Device(
            "A", "lamp", road="r", road_class="main", cabinet="C", rated_w=100, report_interval_s=60
        ),
        Device(
            "B",
            "lamp",
            road="r",
            road_class="branch",
            cabinet="C",
            rated_w=100,
            report_interval_s=60,
        ),
        Device("D", "lamp", cabinet="C", rated_w=100, report_interval_s=60),
        Device("W", "waterlevel", report_interval_s=60),
    ]
)
# Short durations so that random streams reach every phase.
RULES = RulesConfig.model_validate(
    {
        "lamp_voltage_abnormal": {"for_s": 60, "clear_for_s": 30, "min_hold_s": 60},
        "lamp_power_abnormal": {"for_s": 60, "min_hold_s": 0},
        "water_level": {"clear_for_s": 60, "min_hold_s": 30},
        "water_rising_fast": {"within_s": 120, "clear_for_s": 30},
        "sensor_stuck": {"unchanged_for_s": 180},
        "battery_low": {"min_hold_s": 0},
        "cabinet_outage": {"window_s": 60, "min_hold_s": 30},
        "lamp_dark": {"min_hold_s": 10},
        "device_offline": {"min_hold_s": 20},
        "lamp_fault": {"min_hold_s": 20},
    }
)


def steps_of(back: int, ahead: int) -> st.SearchStrategy[tuple]:
    """Readings `back` s behind to `ahead` s after the device's last; more than two report
    intervals ahead opens a gap, and readings behind then land in it (a late run judges them)."""
    return st.one_of(
        st.tuples(
            st.just("lamp"),
            st.sampled_from("ABDX"),
            st.integers(-back, ahead),  # seconds after the device's last (negative: late)
            st.booleans(),
            st.sampled_from([0.0, 5.0, 60.0, 100.0, 140.0]),
            st.sampled_from([150.0, 199.0, 220.0, 240.0]),
        ),
        st.tuples(
            st.just("water"),
            st.just("W"),
            st.integers(-back, ahead),
            st.sampled_from([0.0, 9.0, 12.0, 16.0, 28.0, 45.0]),
            st.sampled_from([10.0, 22.0, 80.0]),
        ),
        st.tuples(
            st.just("event"),
            st.sampled_from("AB"),
            st.integers(-back // 6, min(ahead, 60)),
            st.sampled_from(["doorOpen", "supplyLoss"]),
            st.booleans(),
        ),
        st.tuples(
            st.just("status"), st.sampled_from("ABW"), st.integers(0, min(ahead, 60)), st.booleans()
        ),
        st.tuples(st.just("tick"), st.integers(0, 600)),
        st.tuples(st.just("dup")),
        st.tuples(st.just("restart")),
    )


step = steps_of(30, 90)
# Long gaps and backlogs well behind the live readings: late runs beside live alerts.
wide_step = steps_of(400, 300)


def check(conditions: list[Condition]) -> None:
    open_: dict[tuple[str, str], Condition] = {}
    last_at: dict[tuple[str, str], int] = {}
    past: set[tuple[str, str]] = set()  # open as a past episode (older than last_at), told late
    for c in conditions:
        k = (c.rule, c.device)
        if c.at_ms < last_at.get(k, 0):
            assert c.reported_at is not None, f"time went back for {k}, not marked late: {c}"
            if c.active and k not in open_:
                past.add(k)  # a past episode starts
            assert k in past, f"time went back for {k} on an alert told in order: {c}"
        else:
            last_at[k] = c.at_ms
        if not c.active:
            past.discard(k)
        if c.active:
            before = open_.get(k)
            if before is not None:  # an update must change something the crew sees
                assert (before.level, before.severity, before.value, before.extra) != (
                    c.level,
                    c.severity,
                    c.value,
                    c.extra,
                ), f"repeated raise for {k}"
            open_[k] = c
        else:
            assert k in open_, f"clear without raise for {k}"
            del open_[k]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(step, min_size=10, max_size=150))
def test_no_double_open_no_clear_without_raise(steps: list[tuple]) -> None:
    run_steps(steps)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(wide_step, min_size=10, max_size=150))
def test_late_runs_beside_live_alerts_stay_well_formed(steps: list[tuple]) -> None:
    run_steps(steps)


def run_steps(steps: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.sqlite"
        sink = RecordingSink()
        engine = RuleEngine(RULES, LocationConfig(), REGISTRY, sink, state_path=path)
        last: dict[str, int] = {}
        wall = NIGHT
        previous: Observation | None = None
        for s in steps:
            kind = s[0]
            obs: Observation | None = None
            if kind in ("lamp", "water", "event", "status"):
                device = s[1]
                ts = last.get(device, NIGHT) + s[2] * 1000
                last[device] = max(last.get(device, NIGHT), ts)
                wall = max(wall, ts)
                if kind == "lamp":
                    obs = lamp(device, ts, on=s[3], power=s[4] if s[3] else 0.0, voltage=s[5])
                elif kind == "water":
                    obs = water(device, ts, s[3], battery=s[4])
                elif kind == "event":
                    obs = event(device, ts, s[3], "raised" if s[4] else "cleared")
                else:
                    obs = status(device, s[3], ts, kind="waterlevel" if device == "W" else "lamp")
            elif kind == "tick":
                wall += s[1] * 1000
                engine.tick(wall)
            elif kind == "dup" and previous is not None:
                obs = previous
            elif kind == "restart":
                engine.save_state()
                engine.close()
                engine = RuleEngine(RULES, LocationConfig(), REGISTRY, sink, state_path=path)
                engine.load_state()
            if obs is not None:
                engine.observe(obs)
                previous = obs
        engine.tick(wall + 3600_000)
        engine.close()
        assert engine.env.sink_errors == 0
        check(sink.conditions)


def test_late_reading_beside_a_live_raise_is_not_a_second_raise() -> None:
    """Found by the property: W heard at -15 s, then at +106 s (a gap) with 12 cm: water_level is
    raised live at +106 s. The reading of +105 s arrives after it (inside the gap): its late run
    raised water_level again at +105 s, a second raise older than the live one, unmarked."""
    sink = RecordingSink()
    engine = RuleEngine(RULES, LocationConfig(), REGISTRY, sink)
    engine.observe(water("W", NIGHT - 15_000, 0.0, battery=10.0))
    engine.observe(status("W", False, NIGHT + 51_000, kind="waterlevel"))
    engine.observe(water("W", NIGHT + 106_000, 12.0, battery=10.0))
    engine.observe(water("W", NIGHT + 105_000, 12.0, battery=10.0))
    engine.tick(NIGHT + 3_706_000)
    raised = [c for c in sink.of("water_level", "W") if c.active]
    assert [c.at_ms for c in raised] == [NIGHT + 106_000]
    engine.close()
    check(sink.conditions)


def test_late_past_episode_after_a_live_one_is_marked_late() -> None:
    """The live rule raised and cleared water_level after the gap; the backlog then shows an
    earlier flood inside it. That flood is told (its own raise and clear, older than the live
    ones) and marked reported late, never as if it were news in order."""
    sink = RecordingSink()
    engine = RuleEngine(RULES, LocationConfig(), REGISTRY, sink)
    engine.observe(water("W", NIGHT, 0.0))
    gap_to = NIGHT + 3_600_000
    for i in range(6):  # live: flooded at the gap's end, dry from a minute later
        engine.observe(water("W", gap_to + i * 60_000, 45.0 if i == 0 else 0.0))
    live = sink.of("water_level", "W")
    assert [c.active for c in live] == [True, False]
    for i in range(10):  # the backlog: a flood in the middle of the gap
        engine.observe(water("W", NIGHT + 600_000 + i * 60_000, 45.0 if i < 5 else 0.0))
    engine.tick(gap_to + 3_600_000)
    late = sink.of("water_level", "W")[2:]
    assert [c.active for c in late] == [True, False]
    assert late[0].at_ms == NIGHT + 600_000
    assert all(c.reported_at is not None for c in late)
    engine.close()
    check(sink.conditions)


def test_restart_keeps_what_a_supply_fault_alert_said() -> None:
    """Found by the property: lamp_fault raised for supplyLoss (critical by event), the event
    cleared (the alert waits out its hold), a restart, supplyLoss raised again. The restarted latch
    remembered the alert's events but took its severity from the empty set of raised events (the
    rule's base), so the same raise went out a second time as an 'update' that changed nothing."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.sqlite"
        sink = RecordingSink()
        engine = RuleEngine(RULES, LocationConfig(), REGISTRY, sink, state_path=path)
        engine.observe(lamp("A", NIGHT, on=False, power=0.0, voltage=150.0))
        engine.observe(event("A", NIGHT, "supplyLoss", "raised"))
        engine.observe(water("W", NIGHT + 70_000, 0.0))
        assert [c.active for c in sink.of("lamp_fault", "A")] == [True]
        engine.observe(event("A", NIGHT + 1_000, "supplyLoss", "cleared"))
        engine.save_state()
        engine.close()
        engine = RuleEngine(RULES, LocationConfig(), REGISTRY, sink, state_path=path)
        engine.load_state()
        engine.observe(event("A", NIGHT + 2_000, "supplyLoss", "raised"))
        assert [c.active for c in sink.of("lamp_fault", "A")] == [True]
        engine.tick(NIGHT + 3_670_000)
        engine.close()
        check(sink.conditions)
