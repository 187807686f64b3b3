"""`streetwatch alerts …` against the real HTTP API, `streetwatch notify test` against real
receivers, and `check-config`'s report of roads and cabinets no crew covers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from alerts.model import wall_ms
from notify.receiver import JsonReceiver
from streetwatch.cli import main
from tests.liveapp import LiveApp
from tests.notify_support import REGISTRY, json_receiver


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_alerts_list_show_and_every_action(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with LiveApp(tmp_path / "data", token="tok", registry_csv=REGISTRY) as live:
        alert = live.raise_alert(rule="lamp_dark", device="L-GHL-014", kind="lamp", at=wall_ms())
        url = ["--url", live.url]
        code, out, _ = run(capsys, "alerts", *url, "list")
        assert code == 0 and "路灯不亮" in out and "L-GHL-014" in out and alert.id in out
        code, out, _ = run(capsys, "alerts", *url, "--json", "list", "--state", "open")
        assert code == 0 and [a["id"] for a in json.loads(out)["items"]] == [alert.id]

        # An action without a token: one clear line, exit 2.
        monkeypatch.delenv("STREETWATCH_TOKEN", raising=False)
        code, _, err = run(capsys, "alerts", *url, "ack", alert.id)
        assert code == 2 and "token" in err and len(err.strip().splitlines()) == 1
        code, _, err = run(capsys, "alerts", *url, "--token", "wrong", "ack", alert.id)
        assert code == 1 and "401" in err

        monkeypatch.setenv("STREETWATCH_TOKEN", "tok")
        code, out, _ = run(capsys, "alerts", *url, "--json", "ack", alert.id, "--note", "看到了")
        assert code == 0 and json.loads(out)["state"] == "acknowledged"
        code, out, _ = run(
            capsys, "alerts", *url, "--json", "dispatch", alert.id, "--assignee", "洸河路维修班"
        )
        assert code == 0 and json.loads(out)["assignee"] == "洸河路维修班"
        code, out, err = run(capsys, "alerts", *url, "--json", "resolve", alert.id)
        if code == 1:  # the condition still holds: the service asks for force (and a note)
            assert "409" in err
            code, out, _ = run(
                capsys, "alerts", *url, "--json", "resolve", alert.id, "--force", "--note", "修好"
            )
        assert code == 0 and json.loads(out)["state"] == "cleared"
        code, out, _ = run(capsys, "alerts", *url, "close", alert.id)
        assert code == 0 and "已关闭" in out
        code, out, _ = run(capsys, "alerts", *url, "show", alert.id)
        assert code == 0 and "acknowledged" in out and "看到了" in out
        code, out, _ = run(capsys, "alerts", *url, "--json", "show", alert.id)
        actions = [h["action"] for h in json.loads(out)["history"]]
        assert actions == ["raised", "acknowledged", "dispatched", "resolved", "closed"]
        # A closed alert cannot be acked: the service's 409, one line, exit 1.
        code, _, err = run(capsys, "alerts", *url, "ack", alert.id)
        assert code == 1 and "409" in err
        code, _, err = run(capsys, "alerts", *url, "show", "0" * 32)
        assert code == 1 and "404" in err
    code, _, err = run(capsys, "alerts", *url, "list")
    assert code == 1 and "cannot reach" in err


def test_alerts_misuse_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["alerts", "dispatch", "abc"])  # no --assignee
    assert exc.value.code == 2


def test_notify_test_reports_each_channel(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = JsonReceiver(json_receiver().port)
    with json_receiver() as rx:
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {"notify": {"crews": [{"name": "洸河路班", "urls": [rx.url(), dead.url()]}]}},
                allow_unicode=True,
            ),
            encoding="utf-8",
        )
        code, out, _ = run(
            capsys, "notify", "test", "-c", str(config), "--crew", "洸河路班", "--json"
        )
        assert code == 1
        result = json.loads(out)["channels"]
        assert [r["ok"] for r in result] == [True, False] and result[1]["error"]
        assert len(rx.received) == 1 and "测试通知" in rx.received[0]["title"]
        code, _, err = run(capsys, "notify", "test", "-c", str(config), "--crew", "nobody")
        assert code == 2 and "洸河路班" in err


def test_check_config_names_roads_and_cabinets_no_crew_covers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "registry.csv"
    registry.write_text(REGISTRY, encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "registry": {"path": str(registry)},
                "notify": {
                    "crews": [
                        {"name": "A", "urls": ["json://127.0.0.1:9/x"], "roads": ["洸河路"]},
                        {"name": "B", "urls": ["json://127.0.0.1:9/y"], "kinds": ["waterlevel"]},
                    ]
                },
            },
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    code, out, err = run(capsys, "check-config", "-c", str(config))
    assert code == 0 and json.loads(out)["notify"]["crews"][0]["name"] == "A"
    assert "红星路" in err and "C-HXL-1" in err
    assert "洸河路" not in err.split("roads no crew covers")[1].splitlines()[0]
    assert "运河路" not in err  # the water crew takes every water point


def test_a_bad_apprise_url_fails_the_start_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump({"notify": {"crews": [{"name": "A", "urls": ["nonsense://x"]}]}}),
        encoding="utf-8",
    )
    code, _, err = run(capsys, "check-config", "-c", str(config))
    assert code == 2 and "notify.crews[0].urls[0]" in err
