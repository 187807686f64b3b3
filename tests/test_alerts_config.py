"""The `alerts` section: config.yaml shows every default; durations, partial overrides, env keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from alerts.config import AlertsConfig, SlaConfig
from streetwatch.config import load_settings
from streetwatch.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_config_yaml_alerts_section_is_the_defaults() -> None:
    data = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    assert AlertsConfig.model_validate(data["alerts"]) == AlertsConfig()


def test_durations_and_partial_overrides() -> None:
    sla = SlaConfig.model_validate({"critical": {"response": "15m"}, "minor": {"resolution": 3600}})
    assert sla.critical.response == 900 and sla.critical.resolution == 24 * 3600  # kept
    assert sla.minor.resolution == 3600 and sla.minor.response == 8 * 3600
    assert SlaConfig.model_validate({"major": {"response": "1h30m"}}).major.response == 5400
    assert SlaConfig.model_validate({"warning": {"response": None}}).warning.response is None
    for bad in ("15x", "-5", "0", "soon"):
        with pytest.raises(ValidationError, match=r"critical\.response"):
            SlaConfig.model_validate({"critical": {"response": bad}})
    with pytest.raises(ValidationError, match="extra"):
        AlertsConfig.model_validate({"sla": {"critcal": {"response": "1h"}}})


def test_environment_overrides_reach_the_alerts_section() -> None:
    settings = load_settings(
        env={
            "STREETWATCH_ALERTS__SLA__CRITICAL__RESPONSE": "10m",
            "STREETWATCH_ALERTS__MQTT__QUEUE_MAX": "500",
        }
    )
    assert settings.alerts.sla.critical.response == 600
    assert settings.alerts.sla.critical.resolution == 24 * 3600
    assert settings.alerts.mqtt.queue_max == 500
    with pytest.raises(ConfigError, match=r"alerts\.mqtt\.queue_mux"):
        load_settings(env={"STREETWATCH_ALERTS__MQTT__QUEUE_MUX": "5"})
