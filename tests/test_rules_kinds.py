"""Each rule kind on its own, through the engine, with a recording sink."""

from __future__ import annotations

import datetime as dt
from typing import Any

from devices.location import LocationConfig
from devices.registry import Device, Registry
from rules.config import RulesConfig
from rules.engine import RuleEngine
from rules.testing import RecordingSink, event, lamp, status, water

CST = dt.timezone(dt.timedelta(hours=8))
NIGHT = int(dt.datetime(2024, 7, 1, 22, 0, tzinfo=CST).timestamp() * 1000)  # sunset ~19:32
NOON = int(dt.datetime(2024, 7, 2, 12, 0, tzinfo=CST).timestamp() * 1000)
MIN = 60_000


def registry(*devices: Device) -> Registry:
    return Registry(
        devices
        or (
            Device("L1", "lamp", road="洸河路", road_class="main", cabinet="C1", rated_w=150),
            Device("W1", "waterlevel", road="洸河路", point="火炬路口", report_interval_s=60),
        )
    )


def engine(
    rules: dict[str, Any] | None = None, reg: Registry | None = None
) -> tuple[RuleEngine, RecordingSink]:
    sink = RecordingSink()
    config = RulesConfig.model_validate(rules or {})
    return RuleEngine(config, LocationConfig(), reg or registry(), sink), sink


def states(sink: RecordingSink, rule: str) -> list[tuple[bool, int]]:
    return [(c.active, c.at_ms) for c in sink.of(rule)]


# ---- threshold, hysteresis, for:, min hold -------------------------------------------------------


def test_threshold_for_duration_raises_at_exact_event_time() -> None:
    e, sink = engine()
    for i in range(8):  # 180 V every minute from NIGHT
        e.observe(lamp("L1", NIGHT + i * MIN, voltage=180, power=150))
    [raised] = sink.of("lamp_voltage_abnormal")
    assert raised.active and raised.at_ms == NIGHT + 5 * MIN
    assert raised.value == 180.0 and "洸河路" in raised.message and "180 V" in raised.message
    assert raised.road == "洸河路" and raised.severity == "major"


def test_threshold_shorter_than_for_does_not_raise() -> None:
    e, sink = engine()
    for i in range(20):
        volts = 180 if i % 5 < 4 else 220  # 4 min low, then back, over and over
        e.observe(lamp("L1", NIGHT + i * MIN, voltage=volts, power=150))
    assert sink.of("lamp_voltage_abnormal") == []


def test_hysteresis_holds_against_an_oscillating_value() -> None:
    e, sink = engine()
    e.observe(water("W1", NIGHT, 0, battery=19))
    e.observe(water("W1", NIGHT + MIN, 0, battery=19))  # 2 readings: raised
    for i in range(2, 200):  # oscillate around the raise level for over 3 hours
        e.observe(water("W1", NIGHT + i * MIN, 0, battery=21 if i % 2 else 19))
    assert states(sink, "battery_low") == [(True, NIGHT + MIN)]
    e.observe(water("W1", NIGHT + 200 * MIN, 0, battery=26))
    assert states(sink, "battery_low")[-1] == (False, NIGHT + 200 * MIN)


def test_voltage_oscillating_around_limit_raises_once() -> None:
    e, sink = engine({"lamp_voltage_abnormal": {"for_s": 0}})
    for i in range(120):
        e.observe(lamp("L1", NIGHT + i * MIN, voltage=197 if i % 2 else 199, power=150))
    assert states(sink, "lamp_voltage_abnormal") == [(True, NIGHT + MIN)]


def test_min_hold_delays_a_quick_clear() -> None:
    e, sink = engine()
    e.observe(event("L1", NIGHT, "driverFailure"))
    e.observe(event("L1", NIGHT + 1000, "driverFailure", "cleared"))
    assert states(sink, "lamp_fault") == [(True, NIGHT)]
    e.observe(lamp("L1", NIGHT + 6 * MIN, power=150, voltage=220))  # watermark passes the hold
    assert states(sink, "lamp_fault") == [(True, NIGHT), (False, NIGHT + 5 * MIN)]


def test_min_hold_clear_is_cancelled_if_it_comes_back() -> None:
    e, sink = engine()
    e.observe(event("L1", NIGHT, "driverFailure"))
    e.observe(event("L1", NIGHT + 1000, "driverFailure", "cleared"))
    e.observe(event("L1", NIGHT + 2000, "driverFailure"))
    e.observe(lamp("L1", NIGHT + 30 * MIN, power=150, voltage=220))
    assert states(sink, "lamp_fault") == [(True, NIGHT)]


# ---- levels ---------------------------------------------------------------------------------------


def test_water_level_moves_level_and_severity_then_clears_after_ten_minutes() -> None:
    e, sink = engine()
    depths = [0, 8, 11, 16, 30, 45, 45, 38, 30, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20, 20]
    for i, d in enumerate(depths):
        e.observe(water("W1", NIGHT + i * MIN, d))
    got = [(c.active, c.level, c.severity, c.at_ms - NIGHT) for c in sink.of("water_level")]
    assert got[:4] == [
        (True, 1, "minor", 2 * MIN),
        (True, 2, "major", 3 * MIN),
        (True, 3, "critical", 4 * MIN),
        (True, 4, "critical", 5 * MIN),
    ]
    # 38 is within 3 cm of 40: stays 4. From 30 (7 min) on it is > 3 cm below 40 but >= 27-3:
    # after 10 minutes it drops to level 3; 20 is below 27-3 from minute 9: level 2 at 19 min.
    assert got[4] == (True, 3, "critical", 18 * MIN)
    for i in range(21, 60):
        e.observe(water("W1", NIGHT + i * MIN, 0))
    final = sink.of("water_level")[-1]
    assert not final.active and final.level is None


def test_water_level_hysteresis_near_a_level() -> None:
    e, sink = engine()
    for i in range(100):
        e.observe(water("W1", NIGHT + i * MIN, 14.5 if i % 2 else 15.5))
    levels = [c.level for c in sink.of("water_level")]
    assert levels == [2]  # up to 2 once; 14.5 is within clear_delta: never down, never flaps


# ---- rate, stuck ----------------------------------------------------------------------------------


def test_water_rising_fast() -> None:
    e, sink = engine()
    for i, d in enumerate([0, 1, 2, 5, 9, 12, 13, 13, 13]):
        e.observe(water("W1", NIGHT + i * 2 * MIN, d))
    [raised] = sink.of("water_rising_fast")
    assert raised.at_ms == NIGHT + 10 * MIN and raised.value == 12.0  # 0 -> 12 within 10 min
    for i in range(9, 30):
        e.observe(water("W1", NIGHT + i * 2 * MIN, 13))
    assert [c.active for c in sink.of("water_rising_fast")] == [True, False]


def test_sensor_stuck_on_non_zero_only() -> None:
    e, sink = engine()
    for i in range(7 * 12):  # 7 h, every 5 min, stuck at 12.3 cm
        e.observe(water("W1", NIGHT + i * 5 * MIN, 12.3))
    [raised] = [c for c in sink.of("sensor_stuck") if c.active]
    assert raised.at_ms == NIGHT + 6 * 60 * MIN
    e2, sink2 = engine()
    for i in range(7 * 12):
        e2.observe(water("W1", NIGHT + i * 5 * MIN, 0))
    assert sink2.of("sensor_stuck") == []


# ---- band -----------------------------------------------------------------------------------------


def test_power_band_uses_rated_and_dim() -> None:
    e, sink = engine()
    for i in range(20):  # dimmed to 50 %: expects 75 W; draws 40 W (0.53×)
        e.observe(lamp("L1", NIGHT + i * MIN, dim=50, power=40, voltage=220))
    [raised] = sink.of("lamp_power_abnormal")
    assert raised.at_ms == NIGHT + 15 * MIN and "expected 75 W" in raised.message
    for i in range(20, 40):  # 70 W at 50 %: 0.93×, back in band
        e.observe(lamp("L1", NIGHT + i * MIN, dim=50, power=70, voltage=220))
    assert [c.active for c in sink.of("lamp_power_abnormal")] == [True, False]


def test_unregistered_lamp_gets_the_rules_that_need_no_registry() -> None:
    e, sink = engine()
    for i in range(20):
        e.observe(lamp("X9", NIGHT + i * MIN, power=5, voltage=250))
    assert sink.of("lamp_power_abnormal") == []  # no rated_w
    [volt] = sink.of("lamp_voltage_abnormal", "X9")
    assert volt.road is None and volt.message.startswith("Lamp X9:")


# ---- absence --------------------------------------------------------------------------------------


def test_offline_after_three_intervals_when_live() -> None:
    reg = registry(Device("W1", "waterlevel", report_interval_s=60))
    e, sink = engine(reg=reg)
    e.observe(water("W1", NIGHT, 0))
    for s in range(0, 10 * 60):
        e.tick(NIGHT + s * 1000)
    [off] = sink.of("device_offline")
    assert off.active and off.at_ms == NIGHT + 3 * MIN and "3 min" in off.message
    e.observe(water("W1", NIGHT + 10 * MIN, 0))
    assert [c.active for c in sink.of("device_offline")] == [True, False]


def test_a_replay_that_ends_does_not_take_devices_offline() -> None:
    reg = registry(Device("W1", "waterlevel", report_interval_s=60))
    e, sink = engine(reg=reg)
    now = NIGHT + 400 * 24 * 60 * MIN  # a year later
    for i in range(30):
        e.observe(water("W1", NIGHT + i * MIN, 0, received=now + i * 100))
    for s in range(3600):
        e.tick(now + s * 1000)
    assert sink.of("device_offline") == []


def test_status_offline_and_back() -> None:
    e, sink = engine(reg=registry(Device("W1", "waterlevel", report_interval_s=60)))
    e.observe(water("W1", NIGHT, 0))
    e.observe(status("W1", False, NIGHT + 1000, kind="waterlevel"))
    e.observe(status("W1", False, kind="waterlevel", received=NIGHT + 2000))  # retained copy
    assert states(sink, "device_offline") == [(True, NIGHT + 1000)]
    assert "said so" in sink.of("device_offline")[0].message
    e.observe(water("W1", NIGHT + 10 * MIN, 0))
    assert states(sink, "device_offline")[-1] == (False, NIGHT + 10 * MIN)


def test_registered_device_never_heard_goes_offline() -> None:
    reg = registry(
        Device("W1", "waterlevel", report_interval_s=60),
        Device("W2", "waterlevel", report_interval_s=60),
    )
    e, sink = engine(reg=reg)
    for i in range(10):
        e.observe(water("W1", NIGHT + i * MIN, 0))
    assert [(c.device, c.at_ms) for c in sink.of("device_offline")] == [
        ("W2", NIGHT - 10_000 + 3 * MIN)  # counted from the first watermark
    ]


def test_watermark_gap_is_not_an_outage() -> None:
    reg = registry(
        Device("W1", "waterlevel", report_interval_s=60),
        Device("W2", "waterlevel", report_interval_s=60),
    )
    e, sink = engine(reg=reg)
    e.observe(water("W1", NIGHT, 0))
    e.observe(water("W2", NIGHT, 0))
    # Hours with nothing at all (service down, session lost), then W1 first:
    later = NIGHT + 5 * 60 * MIN
    e.observe(water("W1", later, 0))
    e.observe(water("W2", later + 30_000, 0))
    assert sink.of("device_offline") == []


# ---- events ---------------------------------------------------------------------------------------


def test_lamp_fault_events_severity_and_update() -> None:
    e, sink = engine()
    e.observe(event("L1", NIGHT, "doorOpen"))
    e.observe(event("L1", NIGHT + MIN, "supplyLoss"))
    e.observe(event("L1", NIGHT + 2 * MIN, "doorOpen", "cleared"))
    e.observe(event("L1", NIGHT + 3 * MIN, "supplyLoss", "cleared"))
    e.observe(lamp("L1", NIGHT + 20 * MIN, power=150, voltage=220))
    got = [(c.active, c.severity, c.extra.get("events")) for c in sink.of("lamp_fault")]
    assert got == [
        (True, "minor", "doorOpen"),
        (True, "critical", "doorOpen,supplyLoss"),
        (True, "critical", "supplyLoss"),
        (False, "critical", None),
    ]
    assert sink.of("lamp_fault")[-1].at_ms == NIGHT + 5 * MIN  # min hold from the raise


# ---- schedule -------------------------------------------------------------------------------------


def test_lamp_dark_at_night_two_readings_then_waits_for_the_group_window() -> None:
    e, sink = engine()
    e.observe(lamp("L1", NIGHT, on=False))
    e.observe(lamp("L1", NIGHT + 5 * MIN, on=False))
    assert sink.of("lamp_dark") == []  # held: a cabinet outage may be forming
    e.tick(NIGHT + 5 * MIN + 2 * MIN + 10_000)
    [dark] = sink.of("lamp_dark")
    assert dark.at_ms == NIGHT + 7 * MIN and "dark at night" in dark.message


def test_lamp_dark_by_low_power_and_not_by_day() -> None:
    e, sink = engine({"cabinet_outage": {"enabled": False}})
    e.observe(lamp("L1", NIGHT, power=5))
    e.observe(lamp("L1", NIGHT + 5 * MIN, power=5))  # 5 W < 10 % of 150 W
    assert states(sink, "lamp_dark") == [(True, NIGHT + 5 * MIN)]
    e2, sink2 = engine({"cabinet_outage": {"enabled": False}})
    e2.observe(lamp("L1", NOON, on=False))
    e2.observe(lamp("L1", NOON + 5 * MIN, on=False))
    assert sink2.of("lamp_dark") == []


def test_dimming_plan_sets_what_dark_means() -> None:
    rules = {
        "cabinet_outage": {"enabled": False},
        "lamp_dark": {
            "dark_ratio": 0.5,
            "by_road_class": {"main": {"dimming": [{"start": "21:00", "end": "05:00", "dim": 30}]}},
        },
    }
    e, sink = engine(rules)
    e.observe(lamp("L1", NIGHT, power=40, dim=30))  # 40 W >= 0.5 × 150 × 30 %: fine
    e.observe(lamp("L1", NIGHT + 5 * MIN, power=40, dim=30))
    assert sink.of("lamp_dark") == []


def test_day_burning() -> None:
    e, sink = engine()
    e.observe(lamp("L1", NOON, power=150))
    e.observe(lamp("L1", NOON + 5 * MIN, power=150))
    assert states(sink, "lamp_day_burning") == [(True, NOON + 5 * MIN)]


# ---- tuning ---------------------------------------------------------------------------------------


def test_per_device_off_and_per_road_class_severity() -> None:
    reg = registry(
        Device("L1", "lamp", road="A", road_class="main", rated_w=150),
        Device("L2", "lamp", road="B", road_class="expressway", rated_w=150),
        Device("L3", "lamp", road="C", road_class="main", rated_w=150),
    )
    rules = {
        "lamp_voltage_abnormal": {
            "for_s": 0,
            "by_road_class": {"expressway": {"severity": "critical"}},
            "by_device": {"L3": {"enabled": False}},
        }
    }
    e, sink = engine(rules, reg)
    for dev in ("L1", "L2", "L3"):
        e.observe(lamp(dev, NIGHT, voltage=100, power=150))
    got = {c.device: c.severity for c in sink.of("lamp_voltage_abnormal")}
    assert got == {"L1": "major", "L2": "critical"}


def test_custom_rule_without_code() -> None:
    rules = {
        "custom": {
            "controller_hot": {
                "kind": "threshold",
                "kinds": ["lamp"],
                "field": "temperature",
                "above": 85,
                "clear_above": 75,
                "severity": "minor",
                "min_hold_s": 0,
                "message": "{device} on {road}: controller at {value}{unit}",
                "unit": "°C",
            }
        }
    }
    e, sink = engine(rules)
    for i, t in enumerate([80, 90, 80, 70]):
        e.observe(lamp("L1", NIGHT + i * MIN, temperature=t, power=150))
    got = sink.of("controller_hot")
    assert [(c.active, c.at_ms - NIGHT) for c in got] == [(True, MIN), (False, 3 * MIN)]
    assert got[0].message == "L1 on 洸河路: controller at 90°C"


def test_rules_disabled_entirely() -> None:
    e, sink = engine({"enabled": False})
    for i in range(30):
        e.observe(lamp("L1", NIGHT + i * MIN, on=False, voltage=100))
    assert sink.conditions == []


def test_unregistered_devices_beyond_the_cap_get_no_rules_but_nothing_breaks() -> None:
    from devices.location import LocationConfig
    from devices.messages import Observation
    from devices.models import WaterLevelReading
    from devices.registry import Device, Registry
    from rules.config import RulesConfig
    from rules.engine import RuleEngine
    from rules.testing import RecordingSink

    sink = RecordingSink()
    registry = Registry([Device("W-REG", "waterlevel", road="运河路")])
    engine = RuleEngine(RulesConfig(max_unregistered_devices=3), LocationConfig(), registry, sink)
    t0 = 1_784_000_000_000
    for i, dev in enumerate(["U1", "U2", "U3", "U4", "U5", "W-REG"]):
        data = WaterLevelReading(ts=t0 + i, depth_cm=20.0)
        engine.observe(Observation("waterlevel", dev, "telemetry", data, t0))
    raised = {c.device for c in sink.conditions if c.rule == "water_level" and c.active}
    assert raised == {"U1", "U2", "U3", "W-REG"}  # registered devices are never capped
    assert engine.counts["untracked"] == 2
