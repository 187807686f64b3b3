"""`streetwatch check-config` warns when the service would speak to a remote broker anonymously or
in clear text; on loopback, or with a password over TLS, it says nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from streetwatch.cli import main


def check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, **env: str
) -> list[str]:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("{}\n")
    for key, value in env.items():
        monkeypatch.setenv(f"STREETWATCH_MQTT__{key.upper()}", value)
    assert main(["check-config", "-c", str(cfg)]) == 0
    return [ln for ln in capsys.readouterr().err.splitlines() if "warning" in ln]


def test_remote_broker_anonymous_and_plain_gets_two_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    warnings = check(tmp_path, capsys, monkeypatch, host="10.20.0.5")
    assert len(warnings) == 2
    assert "anonymously" in warnings[0] and "10.20.0.5:1883" in warnings[0]
    assert "without TLS" in warnings[1]


def test_remote_broker_by_name_with_password_but_no_tls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    warnings = check(
        tmp_path, capsys, monkeypatch, host="mqtt.city.example", username="sw", password="x"
    )
    assert len(warnings) == 1 and "without TLS" in warnings[0]


def test_remote_broker_with_password_over_tls_is_quiet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"host": "10.20.0.5", "port": "8883", "username": "sw", "password": "x"}
    monkeypatch.setenv("STREETWATCH_MQTT__TLS__ENABLED", "true")
    assert check(tmp_path, capsys, monkeypatch, **env) == []
    monkeypatch.setenv("STREETWATCH_MQTT__TLS__INSECURE", "true")
    warnings = check(tmp_path, capsys, monkeypatch, **env)
    assert len(warnings) == 1 and "insecure" in warnings[0]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.53"])
def test_loopback_broker_is_quiet(
    host: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert check(tmp_path, capsys, monkeypatch, host=host) == []
