"""cabinet_outage: one alert for a cabinet, its lamps' own alerts held back."""

from __future__ import annotations

from devices.location import LocationConfig
from devices.registry import Device, Registry
from rules.config import RulesConfig
from rules.engine import RuleEngine
from rules.testing import RecordingSink, lamp
from tests.test_rules_kinds import MIN, NIGHT


def fleet() -> Registry:
    lamps = [
        Device(f"A{i}", "lamp", road="洸河路", road_class="main", cabinet="C1", rated_w=150)
        for i in range(6)
    ]
    lamps += [
        Device(f"B{i}", "lamp", road="红星路", road_class="branch", cabinet="C2", rated_w=100)
        for i in range(3)
    ]
    return Registry(lamps)


def make(rules: dict | None = None) -> tuple[RuleEngine, RecordingSink]:
    sink = RecordingSink()
    config = RulesConfig.model_validate(rules or {})
    return RuleEngine(config, LocationConfig(), fleet(), sink), sink


def healthy(e: RuleEngine, t: int, devices: list[str]) -> None:
    for d in devices:
        e.observe(lamp(d, t, power=150 if d.startswith("A") else 100, voltage=220))


def test_cabinet_outage_by_silence_holds_back_lamp_alerts() -> None:
    e, sink = make()
    every = [f"A{i}" for i in range(6)] + [f"B{i}" for i in range(3)]
    healthy(e, NIGHT, every)
    # Cabinet C1 loses power: its lamps fall silent; C2's keep reporting every 5 min.
    for k in range(1, 8):
        healthy(e, NIGHT + k * 5 * MIN, [f"B{i}" for i in range(3)])
    outage = sink.of("cabinet_outage")
    assert [(c.device, c.kind, c.active, c.value) for c in outage] == [("C1", "cabinet", True, 6.0)]
    assert outage[0].at_ms == NIGHT + 15 * MIN and outage[0].road == "洸河路"
    assert outage[0].extra["devices"] == "A0,A1,A2,A3,A4,A5"
    assert "Cabinet C1 on 洸河路: 6 devices" in outage[0].message
    assert [c for c in sink.conditions if c.rule == "device_offline"] == []
    # Power back to all but A5 (its lamp is broken): the cabinet clears, A5 gets its own alert.
    t = NIGHT + 40 * MIN
    healthy(e, t, [f"A{i}" for i in range(5)])
    healthy(e, t + 5 * MIN, [f"B{i}" for i in range(3)])
    assert [c.active for c in sink.of("cabinet_outage")][-1] is False
    own = sink.of("device_offline")
    assert [(c.device, c.active) for c in own] == [("A5", True)]
    assert sink.open() == {("device_offline", "A5")}


def test_two_dark_lamps_are_not_a_cabinet_outage() -> None:
    e, sink = make()
    for k in range(4):
        t = NIGHT + k * 5 * MIN
        for d in ("A0", "A1"):
            e.observe(lamp(d, t, on=False))
        healthy(e, t, ["A2", "A3", "A4", "A5", "B0", "B1", "B2"])
    assert sink.of("cabinet_outage") == []
    assert sorted((c.device, c.at_ms) for c in sink.of("lamp_dark")) == [
        ("A0", NIGHT + 7 * MIN),  # dark at the 2nd reading (5 min), waited the 2-min window
        ("A1", NIGHT + 7 * MIN),
    ]


def test_three_dark_lamps_within_the_window_are_one_alert() -> None:
    e, sink = make()
    for k in range(4):
        t = NIGHT + k * 5 * MIN
        for j, d in enumerate(("A0", "A1", "A2")):
            e.observe(lamp(d, t + j * 20_000, on=False))
        healthy(e, t, ["A3", "A4", "A5", "B0", "B1", "B2"])
    [outage] = sink.of("cabinet_outage")
    assert outage.at_ms == NIGHT + 5 * MIN + 40_000 and outage.value == 3.0
    assert sink.of("lamp_dark") == []


def test_dark_lamps_in_different_cabinets_do_not_group() -> None:
    e, sink = make()
    for k in range(3):
        t = NIGHT + k * 5 * MIN
        for d in ("A0", "A1", "B0"):
            e.observe(lamp(d, t, on=False))
        healthy(e, t, ["A2", "A3", "A4", "A5", "B1", "B2"])
    assert sink.of("cabinet_outage") == []
    assert {c.device for c in sink.of("lamp_dark")} == {"A0", "A1", "B0"}


def test_grouping_off_means_no_wait() -> None:
    e, sink = make({"cabinet_outage": {"enabled": False}})
    for k in range(2):
        for d in ("A0", "A1", "A2"):
            e.observe(lamp(d, NIGHT + k * 5 * MIN, on=False))
    assert {(c.device, c.at_ms) for c in sink.of("lamp_dark")} == {
        (d, NIGHT + 5 * MIN) for d in ("A0", "A1", "A2")
    }
