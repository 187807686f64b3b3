"""Config: the shipped config.yaml loads, bad keys fail naming the key, env overrides win."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streetwatch.cli import main
from streetwatch.config import Settings, load_settings
from streetwatch.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_shipped_config_yaml_loads_and_equals_the_defaults() -> None:
    shipped = load_settings(REPO / "config.yaml", env={})
    assert shipped.model_dump() == Settings().model_dump()


def test_shipped_config_yaml_shows_every_key() -> None:
    data = yaml.safe_load((REPO / "config.yaml").read_text())

    def keys(d: dict[str, object], prefix: str = "") -> set[str]:
        out = set()
        for k, v in d.items():
            out.add(prefix + k)
            if isinstance(v, dict) and k not in {"overrides", "rules", "severity_limits"}:
                out |= keys(v, prefix + k + ".")
        return out

    shown = keys(data)
    for section in ("mqtt", "storage", "influxdb", "registry", "http", "deadletter", "location"):
        model = Settings.model_fields[section].annotation
        for name in model.model_fields:  # type: ignore[union-attr]
            assert f"{section}.{name}" in shown, f"{section}.{name} missing from config.yaml"


def test_unknown_key_fails_naming_it(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("influxdb:\n  bucekt: x\n")
    with pytest.raises(ConfigError, match=r"influxdb\.bucekt"):
        load_settings(cfg, env={})


def test_invalid_value_fails_naming_it(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mqtt:\n  port: 70000\n")
    with pytest.raises(ConfigError, match=r"mqtt\.port"):
        load_settings(cfg, env={})
    cfg.write_text("storage:\n  backend: mongodb\n")
    with pytest.raises(ConfigError, match=r"storage\.backend"):
        load_settings(cfg, env={})


def test_unknown_section_fails(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mqqt:\n  port: 1\n")
    with pytest.raises(ConfigError, match="mqqt"):
        load_settings(cfg, env={})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mqtt:\n  port: 1883\n  host: broker\n")
    s = load_settings(
        cfg,
        env={
            "STREETWATCH_MQTT__PORT": "1884",
            "STREETWATCH_INFLUXDB__URL": "http://127.0.0.1:9999",
            "STREETWATCH_MQTT__TLS__ENABLED": "true",
        },
    )
    assert s.mqtt.port == 1884 and s.mqtt.host == "broker"
    assert s.influxdb.url == "http://127.0.0.1:9999"
    assert s.mqtt.tls.enabled is True


def test_mistyped_environment_variable_fails_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"mqtt\.prot"):
        load_settings(env={"STREETWATCH_MQTT__PROT": "1"})
    with pytest.raises(ConfigError, match=r"mqtt\.port"):
        load_settings(env={"STREETWATCH_MQTT__PORT": "abc"})


def test_topic_prefix_must_be_plain_levels() -> None:
    with pytest.raises(ConfigError, match="topic_prefix"):
        load_settings(overrides={"mqtt": {"topic_prefix": "city/#"}}, env={})


def test_cli_reports_a_bad_key_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("http:\n  prot: 1\n")
    assert main(["check-config", "-c", str(cfg)]) == 2
    assert "http.prot" in capsys.readouterr().err
