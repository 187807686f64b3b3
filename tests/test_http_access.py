"""Who may reach the HTTP app: the Host check (DNS rebinding), read tokens, named tokens in config,
one error shape — against the real app under uvicorn."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from streetwatch.config import load_settings
from streetwatch.errors import ConfigError
from tests.liveapp import LiveApp

TOKEN = "desk-token"


def test_a_loopback_service_answers_only_to_loopback_names(tmp_path: Path) -> None:
    with LiveApp(tmp_path / "d") as app:
        port = app.port
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
            r = httpx.get(f"{app.url}/healthz", headers={"Host": host})
            assert r.status_code == 200, host
        for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", ""):
            r = httpx.get(f"{app.url}/api/alerts", headers={"Host": host})
            assert r.status_code == 400, host
            assert "allowed_hosts" in r.json()["detail"]


def test_allowed_hosts_from_config(tmp_path: Path) -> None:
    with LiveApp(tmp_path / "d", http={"allowed_hosts": ["alerts.city.example"]}) as app:
        ok = httpx.get(f"{app.url}/healthz", headers={"Host": "alerts.city.example:8080"})
        assert ok.status_code == 200
        assert httpx.get(f"{app.url}/healthz").status_code == 400  # 127.0.0.1 is not listed
    with LiveApp(tmp_path / "e", http={"allowed_hosts": ["*"]}) as app:
        assert httpx.get(f"{app.url}/healthz", headers={"Host": "any.example"}).status_code == 200


def test_read_token_required_covers_every_get_but_healthz(tmp_path: Path) -> None:
    http = {"read_token_required": True, "tokens": {"大屏": TOKEN}}
    with LiveApp(tmp_path / "d", token=None, http=http) as app:
        alert = app.raise_alert(rule="water_level", device="WL-017", severity="major", level=2)
        assert httpx.get(f"{app.url}/healthz").status_code == 200
        for path in (
            "/",
            "/metrics",
            "/openapi.json",
            "/api/docs",
            "/api/alerts",
            f"/api/alerts/{alert.id}",
            f"/api/alerts/{alert.id}/history",
            "/api/alerts/stream",
            f"/api/alerts/{'0' * 32}",  # no 404 leaks before the token
            "/api/kpi/overview",
            "/api/devices",
            "/api/series?device=WL-017&field=depth_cm",
        ):
            r = httpx.get(app.url + path)
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"] == "Bearer"
            r = httpx.get(app.url + path, headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401, path
        # The page's own script and style files hold no data: a browser loads them without a
        # token (a <script src> cannot carry one), and the scripts then send it with every fetch.
        for path in ("/static/figures/figures.js", "/static/figures/figures.css"):
            assert httpx.get(app.url + path).status_code == 200, path
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(f"{app.url}/api/kpi/overview", headers=auth).status_code == 200
        assert httpx.get(f"{app.url}/api/alerts", headers=auth).json()["items"][0]["id"] == alert.id
        r = httpx.get(f"{app.url}/api/alerts", params={"access_token": TOKEN})
        assert r.status_code == 200
        assert httpx.get(f"{app.url}/", params={"access_token": TOKEN}).status_code == 200
        with httpx.stream(
            "GET", f"{app.url}/api/alerts/stream", params={"access_token": TOKEN}, timeout=5
        ) as r:
            assert r.status_code == 200
        # The named token also acts, and the audit trail names it.
        r = httpx.post(f"{app.url}/api/alerts/{alert.id}/ack", headers=auth, json={"who": "小李"})
        assert r.status_code == 200
        last = httpx.get(f"{app.url}/api/alerts/{alert.id}/history", headers=auth).json()
        assert (last["items"][-1]["who"], last["items"][-1]["detail"]) == (
            "大屏",
            {"shown_as": "小李"},
        )


def test_validation_errors_have_the_documented_shape(tmp_path: Path) -> None:
    with LiveApp(tmp_path / "d", token=TOKEN) as app:
        alert = app.raise_alert(rule="water_level", device="WL-017", severity="major", level=2)
        for r in (
            httpx.get(f"{app.url}/api/alerts", params={"limit": "many"}),
            httpx.get(f"{app.url}/api/alerts", params={"state": "burning"}),
            httpx.post(
                f"{app.url}/api/alerts/{alert.id}/ack",
                headers={"Authorization": f"Bearer {TOKEN}"},
                json={"whom": "x"},
            ),
        ):
            assert r.status_code == 422
            assert isinstance(r.json()["detail"], str) and r.json()["detail"]


@pytest.mark.parametrize(
    ("http", "needle"),
    [
        ({"tokens": {"a": "same-token", "b": "same-token"}}, "same token"),
        ({"tokens": {"a": ""}}, "empty token"),
        ({"tokens": {"": "x-token"}}, "name"),
    ],
)
def test_bad_named_tokens_fail_at_start_without_showing_them(
    http: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(overrides={"http": http}, env={})
    assert "http" in str(err.value) and needle in str(err.value)
    assert "same-token" not in str(err.value) and "x-token" not in str(err.value)


def test_named_tokens_from_the_environment() -> None:
    settings = load_settings(env={"STREETWATCH_HTTP__TOKENS": '{"调度台": "t-1", "scada": "t-2"}'})
    assert settings.http.tokens == {"调度台": "t-1", "scada": "t-2"}


def test_check_config_never_prints_a_credential(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    config = tmp_path / "c.yaml"
    config.write_text(
        "http: {token: legacy-secret-1, tokens: {调度台: named-secret-2}}\n"
        "mqtt: {password: mqtt-secret-3}\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREETWATCH_")}
    out = subprocess.run(
        [sys.executable, "-m", "streetwatch.cli", "check-config", "-c", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    for value in ("legacy-secret-1", "named-secret-2", "mqtt-secret-3"):
        assert value not in out.stdout + out.stderr
    assert "调度台" in out.stdout  # the names are shown, the tokens are not


def test_a_crews_signed_ack_link_needs_no_read_token(tmp_path: Path) -> None:
    # The link in a notice is the crew's credential (notify.links): a phone has no API token, so
    # http.read_token_required must not shut the ack page. Anything else still needs the token.
    from notify import links
    from tests.notify_support import REGISTRY, json_receiver

    http = {"read_token_required": True, "tokens": {"大屏": TOKEN}}
    with json_receiver() as rx:
        notify = {"link_secret": "s3", "crews": [{"name": "维修班", "urls": [rx.url("a")]}]}
        with LiveApp(
            tmp_path / "d",
            token=None,
            http=http,
            overrides={"notify": notify},
            registry_csv=REGISTRY,
        ) as app:
            alert = app.raise_alert(rule="water_level", device="WL-017", severity="major", level=2)
            url = links.link(app.url, "s3", alert.id, "维修班", int(time.time()) + 3600)
            r = httpx.get(url)
            assert r.status_code == 200 and "text/html" in r.headers["content-type"]
            assert httpx.post(url, data={"note": "到场"}).status_code == 200
            # An altered link is refused by the page itself (403), not let through to anything.
            assert httpx.get(url[:-3] + "xyz").status_code == 403
            for path in ("/a", "/api/alerts", "/apx", f"/a/{alert.id}/../../metrics"):
                assert httpx.get(app.url + path).status_code == 401, path
