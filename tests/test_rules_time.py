"""Event time: replay speed, live vs replay, late readings, duplicates, restarts."""

from __future__ import annotations

import random
from pathlib import Path

from devices.location import LocationConfig
from devices.messages import Observation
from devices.registry import Device, Registry
from rules.config import RulesConfig
from rules.engine import RuleEngine
from rules.signals import Condition
from rules.testing import RecordingSink, event, lamp, status, water
from tests.test_rules_kinds import MIN, NIGHT

HOUR = 60 * MIN


def city() -> Registry:
    devices = [
        Device(
            f"L{c}{i:02d}",
            "lamp",
            road=f"路{c}",
            road_class=("main", "secondary", "branch")[c % 3],
            cabinet=f"C{c}",
            rated_w=150.0,
        )
        for c in range(4)
        for i in range(10)
    ]
    devices += [
        Device(f"W{i}", "waterlevel", road="洸河路", point=f"P{i}", report_interval_s=60)
        for i in range(3)
    ]
    return Registry(devices)


def recorded_night(seed: int = 7) -> list[tuple[int, Observation]]:
    """Eight hours of a city night with faults, as (ts, observation) in arrival order."""
    rnd = random.Random(seed)
    out: list[Observation] = []
    start = NIGHT - HOUR  # 21:00
    for c in range(4):
        for i in range(10):
            dev = f"L{c}{i:02d}"
            offset = rnd.randrange(300_000)
            t = start + offset
            while t < start + 8 * HOUR:
                volts = 220.0 + rnd.uniform(-3, 3)
                power = 150.0 * rnd.uniform(0.95, 1.05)
                on = True
                if dev == "L001" and t > start + HOUR:
                    on, power = False, 0.0  # a dark lamp
                if dev == "L102" and start + 2 * HOUR < t < start + 3 * HOUR:
                    volts = 190.0  # a sag
                if c == 2 and start + 4 * HOUR < t < start + 5 * HOUR:
                    t += 300_000  # cabinet C2 loses power for an hour: silence
                    continue
                out.append(lamp(dev, t, on=on, power=power, voltage=volts, dim=100))
                t += 300_000
    for i in range(3):
        t = start + i * 7_000
        depth = 0.0
        while t < start + 8 * HOUR:
            if i == 1 and start + 2 * HOUR < t < start + 4 * HOUR:
                depth = min(50.0, depth + 2.0)
            elif depth > 0:
                depth = max(0.0, depth - 1.0)
            out.append(water(f"W{i}", t, depth, battery=80.0 if i else 15.0))
            t += 60_000
    out.append(event("L305", start + 3 * HOUR, "doorOpen"))
    out.append(event("L305", start + 3 * HOUR + 20 * MIN, "doorOpen", "cleared"))
    out.append(status("W2", False, start + 6 * HOUR, kind="waterlevel"))
    # Arrival order: by ts, with a little network jitter between devices.
    arrival = sorted(out, key=lambda o: (o.ts_ms or 0) + rnd.randrange(3000))
    return [(o.ts_ms or 0, o) for o in arrival]


def run(
    night: list[tuple[int, Observation]], *, speed: float, live: bool, ticks: bool = True
) -> list[Condition]:
    """Feed the night as if it arrived at `speed` × real time, ticking once per wall second."""
    sink = RecordingSink()
    engine = RuleEngine(RulesConfig(), LocationConfig(), city(), sink)
    first = night[0][0]
    wall0 = first if live else first + 300 * 24 * HOUR  # a replay runs long after the recording
    next_tick = wall0
    for ts, obs in night:
        wall = wall0 + int((ts - first) / speed) + (200 if live else 0)
        while ticks and next_tick <= wall:
            engine.tick(next_tick)
            next_tick += 1000
        engine.observe(Observation(obs.kind, obs.device_id, obs.channel, obs.data, wall))
    return sink.conditions


def key(c: Condition) -> tuple:
    return (c.at_ms, c.rule, c.device, c.active, c.level, c.severity, c.value, c.message)


def test_recorded_night_has_the_faults() -> None:
    got = run(recorded_night(), speed=500, live=False)
    rules = {(c.rule, c.device) for c in got if c.active}
    assert ("lamp_dark", "L001") in rules
    assert ("lamp_voltage_abnormal", "L102") in rules
    assert ("cabinet_outage", "C2") in rules
    assert ("water_level", "W1") in rules and ("water_rising_fast", "W1") in rules
    assert ("battery_low", "W0") in rules and ("lamp_fault", "L305") in rules
    assert ("device_offline", "W2") in rules
    assert not any(c.rule == "device_offline" and c.device.startswith("L2") for c in got)


def test_replay_at_1x_and_500x_is_identical() -> None:
    night = recorded_night()
    slow = run(night, speed=1, live=False)
    fast = run(night, speed=500, live=False)
    assert slow == fast
    assert len(slow) > 10


def test_live_night_equals_its_replay() -> None:
    night = recorded_night()
    live = run(night, speed=1, live=True)
    replay = run(night, speed=500, live=False)
    assert sorted(map(key, live)) == sorted(map(key, replay))


def test_redelivered_duplicates_change_nothing() -> None:
    night = recorded_night()
    once = run(night, speed=500, live=False, ticks=False)
    twice: list[tuple[int, Observation]] = []
    for i, item in enumerate(night):
        twice.append(item)
        if i % 3 == 0:
            twice.append(item)  # QoS 1 redelivery right after
    dup_sink = run(twice, speed=500, live=False, ticks=False)
    assert dup_sink == once


def test_redelivery_of_a_whole_batch_later_changes_nothing() -> None:
    sink = RecordingSink()
    e = RuleEngine(RulesConfig(), LocationConfig(), city(), sink)
    batch = [water("W0", NIGHT + i * MIN, 20.0 + i) for i in range(10)]
    for obs in batch:
        e.observe(obs)
    before = list(sink.conditions)
    for obs in batch:  # the whole batch again (a reconnect redelivers unacked messages)
        e.observe(obs)
    assert sink.conditions == before
    assert e.stats()["duplicate"] + e.stats()["late"] == 10


def test_late_reading_never_moves_a_rule_back() -> None:
    sink = RecordingSink()
    e = RuleEngine(RulesConfig(), LocationConfig(), city(), sink)
    e.observe(lamp("L000", NIGHT, voltage=180, power=150))
    e.observe(lamp("L000", NIGHT + 2 * MIN, voltage=180, power=150))
    e.observe(lamp("L000", NIGHT + MIN, voltage=220, power=150))  # late: older than the last
    e.observe(lamp("L000", NIGHT + 6 * MIN, voltage=180, power=150))
    [raised] = sink.of("lamp_voltage_abnormal")
    assert raised.at_ms == NIGHT + 5 * MIN
    assert e.stats()["late"] == 1


def test_durations_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "rules-state.sqlite"
    sink = RecordingSink()
    reg = city()
    e1 = RuleEngine(RulesConfig(), LocationConfig(), reg, sink, state_path=path)
    e1.observe(lamp("L000", NIGHT, voltage=180, power=150))
    e1.observe(lamp("L000", NIGHT + 2 * MIN, voltage=180, power=150))  # 2 of 5 minutes
    for i in range(3):  # battery_low raised before the restart
        e1.observe(water("W0", NIGHT + i * MIN, 0, battery=10))
    e1.observe(water("W1", NIGHT, 30))  # water level 3 open
    e1.save_state()
    e1.close()
    assert [c.rule for c in sink.conditions] == ["battery_low", "water_level"]

    sink.clear()
    e2 = RuleEngine(RulesConfig(), LocationConfig(), reg, sink, state_path=path)
    e2.load_state()
    assert sink.conditions == []  # nothing re-announced
    assert {(c.rule, c.device) for c in e2.open_conditions()} == {
        ("battery_low", "W0"),
        ("water_level", "W1"),
    }
    e2.observe(lamp("L000", NIGHT + 2 * MIN, voltage=180, power=150))  # a redelivered duplicate
    e2.observe(lamp("L000", NIGHT + 4 * MIN, voltage=180, power=150))
    e2.observe(lamp("L000", NIGHT + 6 * MIN, voltage=180, power=150))
    assert [(c.rule, c.at_ms) for c in sink.of("lamp_voltage_abnormal")] == [
        ("lamp_voltage_abnormal", NIGHT + 5 * MIN)
    ]
    e2.observe(water("W0", NIGHT + 10 * MIN, 0, battery=90))  # hysteresis state survived: clears
    assert [c.active for c in sink.of("battery_low")] == [False]
    for i in range(1, 15):
        e2.observe(water("W1", NIGHT + i * MIN, 0))
    assert [(c.active, c.level) for c in sink.of("water_level")][-1] == (False, None)


def test_restart_with_a_rule_switched_off_clears_its_alerts(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    sink = RecordingSink()
    e1 = RuleEngine(RulesConfig(), LocationConfig(), city(), sink, state_path=path)
    for i in range(3):
        e1.observe(water("W0", NIGHT + i * MIN, 0, battery=10))
    e1.save_state()
    sink.clear()
    config = RulesConfig.model_validate({"battery_low": {"enabled": False}})
    e2 = RuleEngine(config, LocationConfig(), city(), sink, state_path=path)
    e2.load_state()
    [cleared] = sink.conditions
    assert (cleared.rule, cleared.device, cleared.active) == ("battery_low", "W0", False)
    assert "switched off" in cleared.message


def test_group_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    sink = RecordingSink()
    reg = Registry(
        Device(f"L10{i}", "lamp", road="路1", cabinet="C1", rated_w=150.0) for i in range(3)
    )
    e1 = RuleEngine(RulesConfig(), LocationConfig(), reg, sink, state_path=path)
    for k in range(2):
        for i in range(3):
            e1.observe(lamp(f"L10{i}", NIGHT + k * 5 * MIN, on=False))
    e1.tick(NIGHT + 20 * MIN)
    assert [c.active for c in sink.of("cabinet_outage")] == [True]
    e1.save_state()
    e2 = RuleEngine(RulesConfig(), LocationConfig(), reg, sink, state_path=path)
    e2.load_state()
    for i in range(3):
        e2.observe(lamp(f"L10{i}", NIGHT + 30 * MIN, power=150))
    e2.tick(NIGHT + 40 * MIN)
    assert [c.active for c in sink.of("cabinet_outage")] == [True, False]
    assert sink.of("lamp_dark") == []


def test_corrupt_state_file_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    e = RuleEngine(RulesConfig(), LocationConfig(), city(), RecordingSink(), state_path=path)
    e.load_state()
    assert list(tmp_path.glob("s.sqlite.corrupt-*"))
    e.observe(lamp("L000", NIGHT, power=150))
    e.save_state()


def test_a_capped_save_writes_the_longest_waiting_devices_first_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """The service saves at most N changed devices per second (bounded pause); over a few saves
    every device's state is on disk, and a restart resumes all of them."""
    from devices.location import LocationConfig
    from devices.messages import Observation
    from devices.models import WaterLevelReading
    from devices.registry import Registry
    from rules.config import RulesConfig
    from rules.engine import RuleEngine
    from rules.testing import RecordingSink

    path = tmp_path / "state.sqlite"
    engine = RuleEngine(
        RulesConfig(), LocationConfig(), Registry(), RecordingSink(), state_path=path
    )
    t0 = 1_784_000_000_000
    for i in range(25):
        data = WaterLevelReading(ts=t0 + i, depth_cm=12.0)  # level 1: a raised water_level each
        engine.observe(Observation("waterlevel", f"W{i:02d}", "telemetry", data, t0))
    assert engine.unsaved == 25
    first = engine.prepare_state(limit=10)
    assert first is not None
    assert [d.device_id for d in first.devices] == [f"W{i:02d}" for i in range(10)]
    engine.write_state(first)
    assert engine.unsaved == 15
    engine.save_state(limit=10)
    engine.save_state(limit=10)
    assert engine.unsaved == 0
    engine.close()

    again = RuleEngine(
        RulesConfig(), LocationConfig(), Registry(), RecordingSink(), state_path=path
    )
    again.load_state()
    held = {c.device for c in again.open_conditions() if c.rule == "water_level"}
    assert held == {f"W{i:02d}" for i in range(25)}
