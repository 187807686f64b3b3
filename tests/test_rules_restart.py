"""A restarted rule engine: the config in force beats saved state, and the sink's last word (the
alert store commits every condition at once) beats a rule state saved a second earlier or lost."""

from __future__ import annotations

from pathlib import Path

from devices.location import LocationConfig
from devices.registry import Device, Registry
from rules.config import RulesConfig
from rules.engine import RuleEngine
from rules.signals import Condition
from rules.testing import RecordingSink, event, lamp, water
from tests.test_rules_kinds import MIN, NIGHT
from tests.test_rules_time import city


def _engine(path: Path, sink: RecordingSink, config: RulesConfig | None = None) -> RuleEngine:
    return RuleEngine(config or RulesConfig(), LocationConfig(), city(), sink, state_path=path)


def test_severity_and_levels_come_from_the_config_in_force_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    sink = RecordingSink()
    e1 = _engine(path, sink)
    e1.observe(water("W1", NIGHT, 20))  # level 2 (≥ 15 cm): major by default
    for i in range(3):
        e1.observe(water("W0", NIGHT + i * MIN, 0, battery=10))  # battery_low: warning
    e1.save_state()
    assert [(c.rule, c.severity) for c in sink.conditions] == [
        ("water_level", "major"),
        ("battery_low", "warning"),
    ]
    sink.clear()
    config = RulesConfig.model_validate(
        {
            "battery_low": {"severity": "minor"},
            "water_level": {
                "levels": [{"at": 10.0, "severity": "major"}, {"at": 15.0, "severity": "critical"}]
            },
        }
    )
    e2 = _engine(path, sink, config)
    e2.load_state()
    held = {c.rule: c.severity for c in e2.open_conditions()}
    assert held == {"water_level": "critical", "battery_low": "minor"}
    # The next change carries the new severity: level 1 is major now (it was minor).
    e2.observe(water("W1", NIGHT + 2 * MIN, 11))
    e2.observe(water("W1", NIGHT + 13 * MIN, 11))
    assert [(c.severity, c.level) for c in sink.of("water_level")] == [("major", 1)]


def test_a_lost_state_takes_the_sinks_word_and_readings_decide(tmp_path: Path) -> None:
    """No state file: the store's open alerts stay open; a good reading clears through the
    rule's usual hysteresis, a bad one keeps it, and nothing is raised twice."""
    sink = RecordingSink()
    e = _engine(tmp_path / "none.sqlite", sink)
    e.load_state()
    told = [
        Condition("water_level", "W0", "waterlevel", True, "major", NIGHT, "m", level=2, value=20),
        Condition("water_level", "W1", "waterlevel", True, "major", NIGHT, "m", level=2, value=20),
        Condition("lamp_fault", "L000", "lamp", True, "critical", NIGHT, "m",
                  extra={"events": "driverFailure"}),
        Condition("battery_low", "W2", "waterlevel", False, "warning", NIGHT, "m"),
    ]  # fmt: skip
    assert e.align(told) == 4
    assert sink.conditions == []  # aligning says nothing
    assert {(c.rule, c.device) for c in e.open_conditions()} == {
        ("water_level", "W0"),
        ("water_level", "W1"),
        ("lamp_fault", "L000"),
    }
    for i in range(1, 13):
        e.observe(water("W0", NIGHT + i * MIN, 0))
        e.observe(water("W1", NIGHT + i * MIN, 21))
    assert [(c.device, c.active) for c in sink.of("water_level")] == [("W0", False)]
    e.observe(event("L000", NIGHT + 20 * MIN, "driverFailure", "cleared"))
    assert [c.active for c in sink.of("lamp_fault")] == [False]


def test_the_sinks_newer_clear_wins_over_an_older_saved_raise(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    sink = RecordingSink()
    e1 = _engine(path, sink)
    e1.observe(water("W1", NIGHT, 30))
    e1.save_state()  # saved while raised; the clear below reaches the store but not the file
    sink.clear()
    e2 = _engine(path, sink)
    e2.load_state()
    cleared = Condition("water_level", "W1", "waterlevel", False, "major", NIGHT + 20 * MIN, "m")
    e2.align([cleared])
    assert e2.open_conditions() == []
    e2.observe(water("W1", NIGHT + 21 * MIN, 0))
    assert sink.of("water_level") == []  # no second clear, no re-raise


def test_a_group_alert_the_state_lost_stays_open_until_its_lamps_decide(tmp_path: Path) -> None:
    sink = RecordingSink()
    reg = Registry(
        Device(f"L10{i}", "lamp", road="路1", cabinet="C1", rated_w=150.0) for i in range(3)
    )
    e = RuleEngine(RulesConfig(), LocationConfig(), reg, sink, state_path=tmp_path / "s.sqlite")
    e.load_state()
    told = Condition(
        "cabinet_outage",
        "C1",
        "cabinet",
        True,
        "critical",
        NIGHT,
        "m",
        value=3.0,
        extra={"devices": "L100,L101,L102", "count": "3"},
    )
    e.align([told])
    assert [(c.rule, c.device) for c in e.open_conditions()] == [("cabinet_outage", "C1")]
    e.tick(NIGHT + 60 * MIN)
    assert sink.conditions == []  # time alone decides nothing
    for i in range(3):
        e.observe(lamp(f"L10{i}", NIGHT + 70 * MIN, power=150))
    e.tick(NIGHT + 74 * MIN)  # the group's window after the last lamp came back
    assert [c.active for c in sink.of("cabinet_outage")] == [False]
    assert sink.of("lamp_dark") == [] and sink.of("device_offline") == []


def test_alerts_of_rules_the_config_no_longer_has_are_cleared_not_kept(tmp_path: Path) -> None:
    sink = RecordingSink()
    config = RulesConfig.model_validate({"battery_low": {"enabled": False}})
    e = _engine(tmp_path / "s.sqlite", sink, config)
    e.load_state()
    devices = len(e._devices)
    e.align(
        [
            Condition("battery_low", "W0", "waterlevel", True, "warning", NIGHT, "m"),
            Condition("no_such_rule", "W1", "waterlevel", True, "warning", NIGHT, "m"),
            Condition("cabinet_outage", "C-gone", "cabinet", True, "critical", NIGHT, "m"),
        ]
    )
    assert [(c.rule, c.device, c.active) for c in sink.conditions] == [
        ("battery_low", "W0", False),
        ("no_such_rule", "W1", False),
        ("cabinet_outage", "C-gone", False),
    ]
    assert all("switched off" in c.message for c in sink.conditions)
    assert len(e._devices) == devices  # no device invented for a rule or a cabinet
