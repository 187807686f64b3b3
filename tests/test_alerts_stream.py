"""GET /api/alerts/stream (server-sent events): an `alert` event per change with its audit seq as id,
snapshot or resume on connect, catch-up after a slow reader's overflow, keep-alives, clean shutdown."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from alerts.outlets import Fanout, Hub
from alerts.store import AlertStore
from alerts.stream import KEEPALIVE, AlertStream
from alerts.testing import T0, cond
from tests.liveapp import LiveApp
from tests.publish import Publisher
from tests.servers import InfluxDB, Mosquitto
from tests.service import ServiceProcess

TOKEN = "crew-token"
REGISTRY = """device_id,kind,road,road_class,cabinet,rated_w,point,report_interval_s
L1,lamp,洸河路,main,C1,150,,300
"""


class Events:
    """Server-sent events off an httpx streaming response, one at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()
        self.retry: int | None = None
        self.comments = 0

    def next(self) -> dict[str, Any]:
        event: dict[str, Any] = {}
        for line in self.lines:
            if line == "":
                if "event" in event:
                    if "data" in event:
                        event["data"] = orjson.loads(event["data"])
                    return event
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "retry":
                self.retry = int(value)
            else:
                event[field] = value
        raise EOFError("the stream ended")

    def take(self, n: int) -> list[dict[str, Any]]:
        return [self.next() for _ in range(n)]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[LiveApp]:
    with LiveApp(tmp_path / "data", token=TOKEN) as a:
        yield a


def post(app: LiveApp, alert_id: str, action: str, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{app.url}/api/alerts/{alert_id}/{action}",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )


def test_an_event_per_change_with_its_seq_then_resume_from_last_event_id(app: LiveApp) -> None:
    first = app.raise_alert(rule="water_level", device="WL-017", severity="major", level=2)
    url = f"{app.url}/api/alerts/stream"
    with httpx.stream("GET", url, timeout=httpx.Timeout(5.0)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        events = Events(r)
        snap, alert, ready = events.take(3)
        assert events.retry == 3000
        assert snap["event"] == "snapshot" and snap["data"]["open"] == 1
        assert alert["event"] == "alert" and "id" not in alert  # snapshot alerts carry no seq
        assert alert["data"]["id"] == first.id and alert["data"]["road"] == "运河路"
        top = app.store.last_seq()
        assert ready["event"] == "ready" and ready["id"] == str(top)
        assert ready["data"] == {"seq": top, "mode": "snapshot", "alerts": 1, "truncated": False}

        # Live: a new alert (the rule engine), an ack (HTTP, from the thread pool), a repeat.
        second = app.raise_alert(rule="lamp_dark", device="LD-0231", kind="lamp", severity="minor")
        assert post(app, first.id, "ack", who="值班员 王").status_code == 200
        app.raise_alert(
            rule="water_level", device="WL-017", severity="critical", level=3, at=T0 + 1
        )
        got = events.take(3)
        assert [e["event"] for e in got] == ["alert"] * 3
        assert [(e["data"]["id"], e["data"]["state"]) for e in got] == [
            (second.id, "active"),
            (first.id, "acknowledged"),
            (first.id, "acknowledged"),
        ]
        assert got[2]["data"]["level"] == 3 and got[2]["data"]["severity"] == "critical"
        seqs = [int(e["id"]) for e in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3 and seqs[0] > top
        assert seqs[-1] == app.store.last_seq()
        history = [c.seq for c in app.store.history(first.id)]
        assert seqs[1] in history and seqs[2] in history

    # While nobody listens: the second alert is resolved and closed.
    assert post(app, second.id, "resolve", force=True, note="relay replaced").status_code == 200
    assert post(app, second.id, "close").status_code == 200
    # A browser reconnecting sends Last-Event-ID: only what changed after it comes, current state.
    headers = {"Last-Event-ID": str(seqs[0])}
    with httpx.stream("GET", url, headers=headers, timeout=5.0) as r:
        events = Events(r)
        replay = events.take(3)
        assert [(e["event"], e["data"].get("id")) for e in replay[:2]] == [
            ("alert", first.id),
            ("alert", second.id),
        ]
        assert replay[1]["data"]["state"] == "closed"
        assert int(replay[0]["id"]) < int(replay[1]["id"]) == app.store.last_seq()
        assert replay[2]["event"] == "ready" and replay[2]["data"]["mode"] == "resume"
    # The same through the query (the page's own reconnects), and an id from another store.
    with httpx.stream("GET", url, params={"last_event_id": app.store.last_seq()}, timeout=5) as r:
        ready = Events(r).next()
        assert ready["event"] == "ready" and ready["data"]["mode"] == "resume"
    with httpx.stream("GET", url, headers={"Last-Event-ID": "999999"}, timeout=5) as r:
        snap = Events(r).next()
        assert snap["event"] == "snapshot" and snap["data"]["open"] == 1
    with httpx.stream("GET", url, params={"snapshot": "false"}, timeout=5) as r:
        ready = Events(r).next()
        assert ready["event"] == "ready" and ready["data"]["mode"] == "live"


def test_stopping_the_service_ends_open_streams(tmp_path: Path) -> None:
    app = LiveApp(tmp_path / "data").start()
    url = f"{app.url}/api/alerts/stream"
    with httpx.stream("GET", url, timeout=5.0) as r:
        events = Events(r)
        assert events.next()["event"] == "snapshot"
        assert events.next()["event"] == "ready"
        t0 = time.monotonic()
        app.stop()  # the hub closes first, so the server need not wait for this stream
        with pytest.raises((EOFError, httpx.HTTPError)):
            events.next()
    assert time.monotonic() - t0 < 3


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    s = AlertStore(tmp_path / "alerts.sqlite", outlet=Fanout()).open()
    yield s
    s.shutdown()


def _parse(chunk: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for line in chunk.decode().splitlines():
        field, _, value = line.partition(": ")
        out[field] = orjson.loads(value) if field == "data" else value
    return out


async def test_keep_alives_while_quiet_and_the_end_when_the_hub_closes(store: AlertStore) -> None:
    hub = Hub()
    chunks = aiter(AlertStream(store, hub, keepalive_s=0.05))
    assert await anext(chunks) == b"retry: 3000\n\n"
    assert _parse(await anext(chunks))["event"] == "snapshot"
    assert _parse(await anext(chunks))["event"] == "ready"
    assert await anext(chunks) == KEEPALIVE
    assert await anext(chunks) == KEEPALIVE
    assert hub.subscribers == 1
    hub.close()
    with pytest.raises(StopAsyncIteration):
        await anext(chunks)
    assert hub.subscribers == 0
    # A stream opened after the hub closed (the service stopping) ends after its catch-up.
    late = [c async for c in AlertStream(store, hub, keepalive_s=0.05)]
    assert _parse(late[-1])["event"] == "ready"


async def test_a_slow_reader_catches_up_from_the_audit_trail(store: AlertStore) -> None:
    hub = Hub(maxsize=2)
    assert isinstance(store.outlet, Fanout)
    store.outlet.add(hub)
    stream = AlertStream(store, hub, snapshot=False)
    chunks = aiter(stream)
    await anext(chunks)  # retry
    assert _parse(await anext(chunks))["data"]["mode"] == "live"
    # Six changes (four alerts) while the reader is busy; its queue holds two.
    for i, device in enumerate(["WL-1", "WL-2", "WL-3", "WL-4"]):
        store.on_condition(cond(device=device, at=T0 + i))
    store.on_condition(cond(device="WL-1", at=T0 + 10, level=2))
    store.on_condition(cond(device="WL-2", at=T0 + 11, level=3))
    got = [_parse(await anext(chunks)) for _ in range(4)]
    assert stream.catch_ups == 1
    seqs = [int(e["id"]) for e in got]
    assert seqs == sorted(seqs) and seqs[-1] == store.last_seq()
    latest = {e["data"]["device"]: e["data"].get("level") for e in got}
    assert latest == {"WL-3": 1, "WL-4": 1, "WL-1": 2, "WL-2": 3}  # every alert, latest state
    store.on_condition(cond(device="WL-3", at=T0 + 20, active=False))
    nxt = _parse(await anext(chunks))
    assert int(nxt["id"]) == store.last_seq() and nxt["data"]["state"] == "cleared"
    hub.close()


@pytest.mark.integration
def test_the_real_service_streams_an_alert_raised_over_mqtt_and_stops_with_a_client_attached(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    reg = tmp_path / "registry.csv"
    reg.write_text(REGISTRY, encoding="utf-8")
    svc = ServiceProcess(
        tmp_path / "data",
        {
            "STREETWATCH_MQTT__PORT": str(mosquitto.port),
            "STREETWATCH_INFLUXDB__URL": influxdb.url,
            "STREETWATCH_REGISTRY__PATH": str(reg),
            "STREETWATCH_HTTP__TOKEN": TOKEN,
        },
    ).start()
    pub = Publisher(mosquitto.port)
    try:
        base = f"http://127.0.0.1:{svc.http_port}"
        assert "告警" in httpx.get(f"{base}/", timeout=5).text  # the page ships with the package
        with httpx.stream("GET", f"{base}/api/alerts/stream", timeout=10.0) as r:
            events = Events(r)
            assert [e["event"] for e in events.take(2)] == ["snapshot", "ready"]
            now = time.time_ns() // 1_000_000
            pub.send(
                "city/jining/lamp/L1/event", {"ts": now, "event": "lampFailure", "state": "raised"}
            )
            event = events.next()
            assert event["event"] == "alert" and int(event["id"]) >= 1
            assert (event["data"]["rule"], event["data"]["device"]) == ("lamp_fault", "L1")
            assert event["data"]["road"] == "洸河路" and event["data"]["state"] == "active"
            # SIGTERM with the stream still open: the service must not wait for the client.
            rc, took = svc.terminate()
            with pytest.raises((EOFError, httpx.HTTPError)):
                events.next()
    finally:
        pub.close()
        svc.stop()
    assert rc == 0 and took < 10
