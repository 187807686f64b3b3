"""Rule message templates (checked at start, never losing an alert) and the zh/en catalogue."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from alerts.testing import cond
from devices.catalog import PHRASES, RULE_NAMES, SEVERITY_NAMES, STATE_NAMES, rule_name
from devices.location import LocationConfig
from devices.registry import Device, Registry
from devices.rule_ids import STANDARD_RULE_IDS
from rules.config import RulesConfig
from rules.engine import RuleEngine
from rules.testing import RecordingSink, status, water
from streetwatch.config import load_settings
from streetwatch.errors import ConfigError

CST = dt.timezone(dt.timedelta(hours=8))
NIGHT = int(dt.datetime(2024, 7, 1, 22, 0, tzinfo=CST).timestamp() * 1000)
REG = Registry(
    [Device("W1", "waterlevel", road="运河路", point="运河路下穿", report_interval_s=60)]
)


def engine(
    rules: dict[str, Any] | None = None, language: str = "en"
) -> tuple[RuleEngine, RecordingSink]:
    sink = RecordingSink()
    config = RulesConfig.model_validate(rules or {})
    return RuleEngine(config, LocationConfig(), REG, sink, language=language), sink


def test_a_numeric_format_spec_on_value_works() -> None:
    e, sink = engine({"water_level": {"message": "{road} 积水 {value:.1f} {unit}"}})
    e.observe(water("W1", NIGHT, 45))
    assert sink.of("water_level")[0].message == "运河路 积水 45.0 cm"


def test_a_template_that_cannot_render_falls_back_to_the_standard_text() -> None:
    # device_offline said so by the device: no value, so `{value:.1f}` meets an empty string.
    e, sink = engine({"device_offline": {"message": "silent {value:.1f} s"}}, language="zh")
    e.observe(water("W1", NIGHT, 0))
    e.observe(status("W1", False, NIGHT + 1000, kind="waterlevel"))
    [raised] = sink.of("device_offline")
    assert raised.active and raised.message == "运河路 运河路下穿 W1：设备离线"
    assert e.stats()["template_errors"] == 1


@pytest.mark.parametrize("template", ["{road:.1f}", "{level:%Y}", "{nope}", "{value[0]}"])
def test_a_template_that_never_renders_fails_at_start_naming_the_key(template: str) -> None:
    with pytest.raises(ConfigError, match=r"rules\.water_level.*message"):
        load_settings(overrides={"rules": {"water_level": {"message": template}}}, env={})


def test_standard_messages_in_chinese() -> None:
    e, sink = engine(language="zh")
    e.observe(water("W1", NIGHT, 45))
    assert sink.of("water_level")[0].message.startswith("运河路 运河路下穿 W1：积水超限，")
    assert "45 cm" in sink.of("water_level")[0].message


def test_the_catalogue_names_every_standard_rule_in_both_languages() -> None:
    for rule in STANDARD_RULE_IDS:
        assert set(RULE_NAMES[rule]) == {"zh", "en"}
    for table in (SEVERITY_NAMES, STATE_NAMES, PHRASES):
        assert all(set(v) == {"zh", "en"} for v in table.values())
    assert rule_name("my_custom_rule") == "my_custom_rule"


def test_the_api_gives_the_rule_in_words() -> None:
    from alerts.lifecycle import on_condition
    from alerts.sla import SlaPolicy
    from devices.catalog import set_language

    set_language("zh")  # what the service sets at start from notify.language

    outcome = on_condition(
        None, cond(rule="lamp_dark"), now=0, policy=SlaPolicy.none(), new_id=lambda: "x"
    )
    assert outcome is not None and outcome.alert.to_json()["rule_name"] == "路灯不亮"


def test_cabinet_outage_in_chinese() -> None:
    from rules.testing import lamp

    lamps = [Device(f"A{i}", "lamp", road="洸河路", cabinet="C1", rated_w=150) for i in range(6)]
    lamps += [Device("B0", "lamp", road="红星路", cabinet="C2", rated_w=150)]
    sink = RecordingSink()
    e = RuleEngine(RulesConfig(), LocationConfig(), Registry(lamps), sink, language="zh")
    minute = 60_000
    for d in lamps:
        e.observe(lamp(d.device_id, NIGHT, power=150, voltage=220))
    for k in range(1, 8):
        e.observe(lamp("B0", NIGHT + k * 5 * minute, power=150, voltage=220))
    [outage] = sink.of("cabinet_outage")
    assert outage.message.startswith("洸河路 配电箱 C1：配电箱停电，6 盏灯")
