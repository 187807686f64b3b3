"""Rule configuration: defaults, config.yaml, validation that names the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.rule_ids import STANDARD_RULE_IDS
from rules.config import RulesConfig, ThresholdRule
from streetwatch.config import load_settings
from streetwatch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_config_yaml_rules_section_is_the_defaults() -> None:
    settings = load_settings(ROOT / "config.yaml", env={})
    assert settings.rules.model_dump() == RulesConfig().model_dump()
    assert set(settings.rules.all_rules()) == set(STANDARD_RULE_IDS)
    assert len(STANDARD_RULE_IDS) == 12


def test_issue_defaults() -> None:
    c = RulesConfig()
    assert (c.lamp_voltage_abnormal.below, c.lamp_voltage_abnormal.above) == (198.0, 235.4)
    assert c.lamp_voltage_abnormal.for_s == 300
    assert [lv.at for lv in c.water_level.levels] == [10, 15, 27, 40]
    assert c.water_level.clear_delta == 3 and c.water_level.clear_for_s == 600
    assert (c.water_rising_fast.change, c.water_rising_fast.within_s) == (10, 600)
    assert c.sensor_stuck.unchanged_for_s == 6 * 3600
    assert c.battery_low.below == 20
    assert c.device_offline.intervals == 3
    assert (c.cabinet_outage.min_count, c.cabinet_outage.window_s) == (3, 120)
    assert (c.lamp_power_abnormal.low, c.lamp_power_abnormal.high) == (0.75, 1.3)
    assert c.lamp_power_factor_low.below == 0.5
    assert c.lamp_dark.for_readings == 2 and c.lamp_day_burning.for_readings == 2


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"rules": {"lamp_dark": {"sevrity": "major"}}}, "rules.lamp_dark.sevrity"),
        ({"rules": {"lamp_darkk": {}}}, "rules.lamp_darkk"),
        ({"rules": {"battery_low": {"below": "low"}}}, "rules.battery_low.below"),
        (
            {"rules": {"lamp_dark": {"by_device": {"L1": {"fo": 1}}}}},
            "by_device.L1: unknown key 'fo'",
        ),
        ({"rules": {"lamp_dark": {"by_road_class": {"highway": {}}}}}, "'highway'"),
        ({"rules": {"lamp_dark": {"by_device": {"L1": {"kind": "threshold"}}}}}, "'kind'"),
        (
            {
                "rules": {
                    "water_level": {
                        "levels": [{"at": 20, "severity": "minor"}, {"at": 10, "severity": "major"}]
                    }
                }
            },
            "ascending",
        ),
        ({"rules": {"custom": {"lamp_dark": {"kind": "event"}}}}, "custom.lamp_dark"),
        ({"rules": {"custom": {"x": {"kind": "thresold", "field": "a"}}}}, "rules.custom.x"),
        ({"rules": {"cabinet_outage": {"members": ["nope"]}}}, "no rule 'nope'"),
        (
            {
                "rules": {
                    "cabinet_outage": {"members": ["lamp_dark", "lamp_fault"], "member_events": {}}
                }
            },
            "cabinet_outage.member_events.lamp_fault",
        ),
        (
            {"rules": {"cabinet_outage": {"members": ["lamp_dark", "device_offline"]}}},
            "'lamp_fault' is not in cabinet_outage.members",
        ),
        (
            {"rules": {"cabinet_outage": {"member_events": {"lamp_fault": []}}}},
            "rules.cabinet_outage.member_events.lamp_fault",
        ),
        (
            {
                "rules": {
                    "cabinet_outage": {
                        "member_events": {"lamp_fault": ["supplyLoss"], "lamp_dark": ["x"]}
                    }
                }
            },
            "only event rules take member_events",
        ),
        (
            {"rules": {"cabinet_outage": {"members": ["lamp_dark", "water_level"]}}},
            "must be a schedule/threshold/absence/event rule",
        ),
        ({"rules": {"battery_low": {"message": "{devise}"}}}, "{devise}"),
        ({"rules": {"custom": {"t": {"kind": "threshold", "field": "temperature"}}}}, "above"),
    ],
)
def test_bad_rule_config_names_the_key(overrides: dict, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, overrides=overrides, env={})
    assert named in str(info.value)


def test_env_switches_a_rule_off() -> None:
    settings = load_settings(None, env={"STREETWATCH_RULES__LAMP_DARK__ENABLED": "false"})
    assert settings.rules.lamp_dark.enabled is False


def test_custom_rule_and_overrides_merge() -> None:
    c = RulesConfig.model_validate(
        {
            "custom": {
                "controller_hot": {
                    "kind": "threshold",
                    "kinds": ["lamp"],
                    "field": "temperature",
                    "above": 85,
                    "clear_above": 75,
                    "by_road_class": {"expressway": {"severity": "critical"}},
                }
            },
            "lamp_voltage_abnormal": {"by_device": {"L1": {"for_s": 60}}},
        }
    )
    rule = c.custom["controller_hot"]
    assert isinstance(rule, ThresholdRule)
    assert rule.merged(rule.by_road_class["expressway"]).severity == "critical"
    tuned = c.lamp_voltage_abnormal.merged(c.lamp_voltage_abnormal.by_device["L1"])
    assert tuned.for_s == 60 and tuned.below == 198.0
