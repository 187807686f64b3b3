"""HTTP routes of the alerts (contract §3) through FastAPI's TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from alerts.api import build_router
from alerts.model import rfc3339
from alerts.store import AlertStore
from alerts.testing import T0, Clock, Recorder, cond

TOKEN = "s3cret-token"
UNKNOWN = "0" * 32  # shaped like an alert id, but no such alert
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    s = AlertStore(tmp_path / "alerts.sqlite", outlet=Recorder(), clock=Clock(T0 + 10_000)).open()
    yield s
    s.shutdown()


def client_for(store: AlertStore, token: str | None = TOKEN) -> TestClient:
    app = FastAPI()
    app.include_router(build_router(store, token=token, default_limit=2, max_limit=3))
    return TestClient(app)


@pytest.fixture
def client(store: AlertStore) -> Iterator[TestClient]:
    with client_for(store) as c:
        yield c


def seed(store: AlertStore) -> dict[str, str]:
    store.on_condition(cond(device="wl-001", at=T0, severity="minor"))
    store.on_condition(cond(device="wl-002", at=T0 + 1000, severity="critical", level=4))
    store.on_condition(cond(rule="battery_low", device="wl-003", at=T0 + 2000, severity="warning"))
    return {a.device: a.id for a in store.open_alerts()}


def test_list_and_filters(client: TestClient, store: AlertStore) -> None:
    ids = seed(store)
    r = client.get("/api/alerts", params={"limit": 10})
    assert r.status_code == 200
    items = r.json()["items"]
    assert [a["device"] for a in items] == ["wl-003", "wl-002", "wl-001"]  # recent first
    assert items[0]["raised_at"] == rfc3339(T0 + 2000)
    assert len(client.get("/api/alerts").json()["items"]) == 2  # default_limit
    assert len(client.get("/api/alerts?limit=100").json()["items"]) == 3  # capped at max_limit

    def devices(**params: object) -> list[str]:
        r = client.get("/api/alerts", params={"limit": 10, **params})
        assert r.status_code == 200, r.text
        return [a["device"] for a in r.json()["items"]]

    assert devices(rule="water_level") == ["wl-002", "wl-001"]
    assert devices(device="wl-001") == ["wl-001"]
    assert devices(severity="critical") == ["wl-002"]
    assert devices(since=rfc3339(T0 + 1000)) == ["wl-003", "wl-002"]
    assert devices(since="2024-07-03T17:46:41+08:00") == ["wl-003", "wl-002"]
    assert devices(since=str(T0 + 2000)) == ["wl-003"]
    assert devices(state="active") == ["wl-003", "wl-002", "wl-001"]
    store.ack(ids["wl-002"], "x")
    assert devices(state="acknowledged") == ["wl-002"]
    assert devices(state="active,acknowledged") == ["wl-002", "wl-003", "wl-001"]
    assert devices(state="open") == ["wl-002", "wl-003", "wl-001"]
    assert devices(state="closed") == []
    assert devices(overdue="true") == []


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"state": "burning"}, "active|acknowledged"),
        ({"severity": "apocalyptic"}, "critical"),
        ({"since": "last tuesday"}, "RFC 3339"),
        ({"since": "2024-07-03T17:46:40"}, "offset"),
        ({"limit": "0"}, ""),
        ({"limit": "many"}, ""),
    ],
)
def test_bad_queries_say_why(client: TestClient, params: dict[str, str], needle: str) -> None:
    r = client.get("/api/alerts", params=params)
    assert r.status_code == 422
    assert needle in r.text


def test_get_one_and_404(client: TestClient, store: AlertStore) -> None:
    ids = seed(store)
    r = client.get(f"/api/alerts/{ids['wl-002']}")
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == ids["wl-002"] and body["severity"] == "critical" and body["level"] == 4
    assert client.get(f"/api/alerts/{UNKNOWN}").status_code == 404
    assert client.get("/api/alerts/does-not-exist").status_code == 404
    history = client.get(f"/api/alerts/{ids['wl-002']}/history").json()["items"]
    assert [c["action"] for c in history] == ["raised"]
    assert client.get(f"/api/alerts/{UNKNOWN}/history").status_code == 404


def test_actions_through_http(client: TestClient, store: AlertStore) -> None:
    alert_id = seed(store)["wl-001"]
    r = client.post(
        f"/api/alerts/{alert_id}/ack", headers=AUTH, json={"who": "zhang.wei", "note": "seen"}
    )
    assert r.status_code == 200, r.text
    # The token decides who it was (http.token is `operator`); the typed name is a display note.
    assert r.json()["state"] == "acknowledged" and r.json()["acknowledged_by"] == "operator"

    r = client.post(f"/api/alerts/{alert_id}/dispatch", headers=AUTH, json={"who": "zhang.wei"})
    assert r.status_code == 422 and "assignee" in r.text
    r = client.post(
        f"/api/alerts/{alert_id}/dispatch", headers=AUTH, json={"assignee": "drainage crew 3"}
    )
    assert r.status_code == 200 and r.json()["assignee"] == "drainage crew 3"

    r = client.post(f"/api/alerts/{alert_id}/close", headers=AUTH)  # not cleared yet
    assert r.status_code == 409
    assert r.json()["state"] == "dispatched" and "only a cleared alert" in r.json()["detail"]
    assert r.json()["reason"] == "invalid_transition"

    # The rules still see the water: resolving is refused unless forced, with a note.
    r = client.post(f"/api/alerts/{alert_id}/resolve", headers=AUTH)
    assert r.status_code == 409 and r.json()["reason"] == "condition_still_present"
    assert "still present" in r.json()["detail"]
    r = client.post(f"/api/alerts/{alert_id}/resolve", headers=AUTH, json={"force": True})
    assert r.status_code == 422 and "note" in r.json()["detail"]
    r = client.post(
        f"/api/alerts/{alert_id}/resolve",
        headers=AUTH,
        json={"force": True, "note": "sensor fouled; checked on site"},
    )
    assert r.status_code == 200 and r.json()["state"] == "cleared"
    assert r.json()["condition_still_present"] is True
    r = client.post(f"/api/alerts/{alert_id}/close", headers=AUTH, json={"note": "pumped"})
    assert r.status_code == 200 and r.json()["state"] == "closed"
    assert client.post(f"/api/alerts/{alert_id}/ack", headers=AUTH).status_code == 409

    trail = client.get(f"/api/alerts/{alert_id}/history").json()["items"]
    assert [(c["action"], c["who"]) for c in trail] == [
        ("raised", "rules"),
        ("acknowledged", "operator"),
        ("dispatched", "operator"),
        ("resolved", "operator"),
        ("closed", "operator"),
    ]
    assert trail[1]["detail"] == {"shown_as": "zhang.wei"}
    assert trail[3]["detail"] == {"forced": True}
    assert trail[-1]["note"] == "pumped"


def test_named_tokens_name_who_did_it(store: AlertStore) -> None:
    ids = seed(store)
    app = FastAPI()
    tokens = {"调度台": "desk-token-1", "scada": "scada-token-2"}
    app.include_router(build_router(store, tokens=tokens, token=TOKEN))
    with TestClient(app) as c:
        for name, token, device in (
            ("调度台", "desk-token-1", "wl-001"),
            ("scada", "scada-token-2", "wl-002"),
            ("operator", TOKEN, "wl-003"),
        ):
            r = c.post(
                f"/api/alerts/{ids[device]}/ack",
                headers={"Authorization": f"Bearer {token}"},
                json={"who": "someone else"},
            )
            assert r.status_code == 200, r.text
            last = c.get(f"/api/alerts/{ids[device]}/history").json()["items"][-1]
            assert (last["who"], last["detail"]) == (name, {"shown_as": "someone else"})
        for wrong in ("desk-token-", "desk-token-1x", "DESK-TOKEN-1", ""):
            r = c.post(
                f"/api/alerts/{ids['wl-001']}/dispatch",
                headers={"Authorization": f"Bearer {wrong}"},
                json={"assignee": "crew"},
            )
            assert r.status_code == 401


def test_credentials_never_show_a_token() -> None:
    from alerts.auth import Credentials

    creds = Credentials({"desk": "very-secret-1"}, legacy="very-secret-2")
    assert "very-secret" not in repr(creds) and creds.names == ["desk", "operator"]
    assert creds.identify("very-secret-1") == "desk"
    assert creds.identify("very-secret-2") == "operator"
    assert creds.identify(None) is None and creds.identify("") is None


def test_actions_need_the_token(client: TestClient, store: AlertStore) -> None:
    alert_id = seed(store)["wl-001"]
    url = f"/api/alerts/{alert_id}/ack"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        r = client.post(url, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
    # Authentication comes before lookup: an unknown id does not leak as 404 without a token.
    assert client.post(f"/api/alerts/{UNKNOWN}/ack").status_code == 401
    assert client.post(f"/api/alerts/{UNKNOWN}/ack", headers=AUTH).status_code == 404
    assert store.get(alert_id).state == "active"  # type: ignore[union-attr]


@pytest.mark.parametrize("configured", [None, ""])
def test_no_token_configured_refuses_every_post(store: AlertStore, configured: str | None) -> None:
    alert_id = seed(store)["wl-001"]
    with client_for(store, token=configured) as c:
        for headers in (AUTH, {"Authorization": "Bearer "}, {}):
            r = c.post(f"/api/alerts/{alert_id}/ack", headers=headers)
            assert r.status_code == 403 and "http.token" in r.text, r.text
        assert c.get(f"/api/alerts/{alert_id}").status_code == 200  # reading stays open


def test_bad_bodies(client: TestClient, store: AlertStore) -> None:
    alert_id = seed(store)["wl-001"]
    url = f"/api/alerts/{alert_id}/ack"
    assert client.post(url, headers=AUTH, content=b"{not json").status_code == 422
    r = client.post(url, headers=AUTH, json={"whom": "x"})
    assert r.status_code == 422 and "whom" in r.text
    assert client.post(url, headers=AUTH, json={"note": "x" * 5000}).status_code == 422
    assert store.get(alert_id).state == "active"  # type: ignore[union-attr]


def test_store_not_open_is_503(tmp_path: Path) -> None:
    with client_for(AlertStore(tmp_path / "a.sqlite")) as c:
        assert c.get("/api/alerts").status_code == 503


def test_a_later_stream_route_is_not_swallowed_by_the_id_route(store: AlertStore) -> None:
    app = FastAPI()
    app.include_router(build_router(store, token=TOKEN))  # mounted first on purpose

    @app.get("/api/alerts/stream")
    def stream() -> dict[str, str]:
        return {"route": "stream"}

    with TestClient(app) as c:
        assert c.get("/api/alerts/stream").json() == {"route": "stream"}
