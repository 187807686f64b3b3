"""The lighting rate end to end: a night built here, published through real Mosquitto into real
InfluxDB 1.x and into SQLite by two real services, read back through /api/kpi/lighting.

Road 洸河路 (main): 20 lamps, two dark all night, one dark from the middle of the night → 87.5 %.
Road 红星路 (branch): lamp B5 never heard (dark); B1–B4 lose their cabinet's supply from 22:00 to
23:00 (they say supplyLoss and fall silent): the cabinet_outage the rules raise counts as dark from
its start, not only after their last readings stop holding.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest

from devices.location import LocationConfig
from devices.sun import SunTimes
from tests.servers import InfluxDB, Mosquitto
from tests.service import ServiceProcess

pytestmark = pytest.mark.integration

TZ = ZoneInfo("Asia/Shanghai")
STEP = 300_000  # report interval, ms
HOLD = 3 * STEP
A = [f"A{i:02d}" for i in range(1, 21)]
B = ["B1", "B2", "B3", "B4", "B5"]


def registry_text() -> str:
    lines = ["device_id,kind,road,road_class,cabinet,rated_w,lat,lon,report_interval_s"]
    # The dark lamps hang on cabinets of their own and B5 (never heard) on another: three of them
    # on one cabinet would make a cabinet_outage of their own, which would count (rightly) too.
    cabinets = {"A01": "CA1", "A02": "CA2", "A03": "CA3", "B5": "CB5"}
    for i, d in enumerate(A):
        lines.append(
            f"{d},lamp,洸河路,main,{cabinets.get(d, 'CA')},150,35.41,{116.55 + i * 0.001:.3f},300"
        )
    for i, d in enumerate(B):
        lines.append(
            f"{d},lamp,红星路,branch,{cabinets.get(d, 'CB')},100,35.42,{116.56 + i * 0.001:.3f},300"
        )
    return "\n".join(lines) + "\n"


def night(date: dt.date) -> tuple[int, int]:
    sun = SunTimes(LocationConfig())
    noon = int(dt.datetime.combine(date, dt.time(12), TZ).timestamp() * 1000)
    return sun.day(noon)[2] + 900_000, sun.day(noon + 86_400_000)[1] - 900_000


def local_ms(date: dt.date, hour: int) -> int:
    return int(dt.datetime.combine(date, dt.time(hour), TZ).timestamp() * 1000)


def covered(spans: list[tuple[int, int]], window: tuple[int, int]) -> int:
    return sum(max(0, min(b, window[1]) - max(a, window[0])) for a, b in spans)


class Night:
    def __init__(self) -> None:
        today = dt.datetime.now(TZ).date()
        self.date = today - dt.timedelta(days=2)
        self.start, self.end = night(self.date)
        first = (self.start - 3_600_000) // STEP * STEP
        self.grid = list(range(first, self.end + 3_600_000, STEP))
        mid = (self.start + self.end) // 2
        self.middle = min(self.grid, key=lambda t: abs(t - mid))
        self.cut, self.back = local_ms(self.date, 22), local_ms(self.date, 23)

    def messages(self) -> list[tuple[int, str, dict[str, object]]]:
        out: list[tuple[int, str, dict[str, object]]] = []
        for ts in self.grid:
            for d in A:
                on = not (d in ("A01", "A02") or (d == "A03" and ts >= self.middle))
                out.append(
                    (ts, f"lamp/{d}/telemetry", {"ts": ts, "on": on, "power": 140.0 if on else 0.0})
                )
            for d in B[:4]:
                if ts == self.cut:
                    out.append(
                        (
                            ts,
                            f"lamp/{d}/event",
                            {"ts": ts, "event": "supplyLoss", "state": "raised"},
                        )
                    )
                if self.cut <= ts < self.back:
                    continue
                if ts == self.back:
                    out.append(
                        (
                            ts,
                            f"lamp/{d}/event",
                            {"ts": ts, "event": "supplyLoss", "state": "cleared"},
                        )
                    )
                out.append((ts, f"lamp/{d}/telemetry", {"ts": ts, "on": True, "power": 95.0}))
        out.sort(key=lambda m: m[0])
        return out


def publish_all(port: int, messages: list[tuple[int, str, dict[str, object]]]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(200)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [
            client.publish(f"city/jining/{topic}", orjson.dumps(body), qos=1)
            for _, topic, body in messages
        ]
        for info in infos:
            info.wait_for_publish(30)
    finally:
        client.loop_stop()
        client.disconnect()


def get(svc: ServiceProcess, path: str, **params: str) -> dict[str, object]:
    resp = httpx.get(f"http://127.0.0.1:{svc.http_port}{path}", params=params, timeout=30)
    assert resp.status_code == 200, resp.text
    data: dict[str, object] = resp.json()
    return data


def wait_stored(
    svc: ServiceProcess, want: int, start: int, end: int, timeout: float = 90.0
) -> None:
    """Until every telemetry reading published is in the store (published is not yet received)."""
    deadline = time.monotonic() + timeout
    got = -1
    while time.monotonic() < deadline:
        body = get(
            svc,
            "/api/series",
            kind="lamp",
            field="power",
            step="1h",
            **{"from": str(start), "to": str(end)},
        )
        got = sum(body["n"])  # type: ignore[arg-type]
        if got >= want:
            return
        time.sleep(0.3)
    raise TimeoutError(f"{svc.data_dir.name}: {got} of {want} readings stored")


def wait_outage(svc: ServiceProcess, timeout: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = get(svc, "/api/alerts", rule="cabinet_outage", device="CB")["items"]
        assert isinstance(items, list)
        done = [a for a in items if a.get("cleared_at")]
        if done:
            return dict(done[0])
        time.sleep(0.3)
    raise TimeoutError("no cleared cabinet_outage for CB")


@pytest.fixture
def services(tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB):  # type: ignore[no-untyped-def]
    registry = tmp_path / "registry.csv"
    registry.write_text(registry_text(), encoding="utf-8")
    common = {
        "STREETWATCH_MQTT__PORT": str(mosquitto.port),
        "STREETWATCH_REGISTRY__PATH": str(registry),
        "STREETWATCH_STORAGE__BATCH_INTERVAL_S": "0.2",
        "STREETWATCH_ALERTS__MQTT__ENABLED": "false",
    }
    influx = ServiceProcess(
        tmp_path / "influx-data",
        {
            **common,
            "STREETWATCH_INFLUXDB__URL": influxdb.url,
            "STREETWATCH_MQTT__CLIENT_ID": "sw-influx",
        },
    ).start()
    sqlite = ServiceProcess(
        tmp_path / "sqlite-data",
        {
            **common,
            "STREETWATCH_STORAGE__BACKEND": "sqlite",
            "STREETWATCH_MQTT__CLIENT_ID": "sw-sqlite",
        },
    ).start()
    yield influx, sqlite
    influx.stop()
    sqlite.stop()


def test_lighting_rate_is_exact_and_the_same_from_influxdb_and_sqlite(
    services: tuple[ServiceProcess, ServiceProcess], mosquitto: Mosquitto
) -> None:
    scene = Night()
    messages = scene.messages()
    publish_all(mosquitto.port, messages)
    window = (scene.start, scene.end)
    n = scene.end - scene.start
    # 洸河路: 17 lamps lit all night, A03 until the middle, A01/A02 never.
    expect_a = round(100 * (17 * n + scene.middle - scene.start) / (20 * n), 1)
    results = []
    for svc in services:
        telemetry = [m for m in messages if m[1].endswith("/telemetry")]
        wait_stored(svc, len(telemetry), scene.grid[0], scene.grid[-1] + 1)
        outage = wait_outage(svc)
        from alerts.model import parse_time

        r, c = parse_time(str(outage["raised_at"])), parse_time(str(outage["cleared_at"]))
        print(
            f"{svc.data_dir.name}: cabinet_outage CB {outage['raised_at']} → {outage['cleared_at']}"
        )
        # The rules decide when the outage clears; the rate must follow whatever they decided.
        assert scene.cut <= r <= scene.cut + STEP and c >= scene.back
        # 红星路: B1–B4 lit except [22:00, 23:00) of silence (their 21:55 reading would hold until
        # 22:10) and the outage; B5 never heard.
        lit_spans = [(scene.start, scene.cut - STEP + HOLD), (scene.back, scene.end)]
        lit_b = covered(lit_spans, window) - sum(
            covered([(max(a, r), min(b, c))], window) for a, b in lit_spans if min(b, c) > max(a, r)
        )
        # Without the outage counted, the ten minutes its last reading holds would count lit.
        assert lit_b < covered(lit_spans, window)
        expect_b = round(100 * 4 * lit_b / (5 * n), 1)
        body = get(svc, "/api/kpi/lighting", date=scene.date.isoformat())
        roads = {r["road"]: r for r in body["by_road"]}  # type: ignore[attr-defined]
        got_a, got_b = roads["洸河路"]["rate"], roads["红星路"]["rate"]
        print(
            f"{svc.data_dir.name}: 洸河路 expected {expect_a} got {got_a}; 红星路 expected {expect_b} got {got_b}"
        )
        assert abs(expect_a - 87.5) <= 0.1
        if got_a != expect_a:
            for a in get(svc, "/api/alerts", limit="200")["items"]:  # type: ignore[union-attr]
                print(
                    "DEBUG",
                    a["rule"],
                    a["device"],
                    a["raised_at"],
                    a.get("cleared_at"),
                    a["message"],
                )
        assert got_a == expect_a
        assert got_b == expect_b
        assert roads["洸河路"]["lamps"] == 20 and roads["红星路"]["lamps"] == 5
        assert roads["洸河路"]["target"] == 98.0 and roads["洸河路"]["ok"] is False
        assert roads["红星路"]["target"] == 96.0
        classes = {c["road_class"]: c for c in body["by_class"]}  # type: ignore[attr-defined]
        assert classes["main"]["rate"] == got_a
        assert body["date"] == scene.date.isoformat()
        # Exactly the contract's shape (§7).
        assert set(body) == {"date", "from", "to", "overall", "by_road", "by_class"}
        assert all(
            set(r) == {"road", "road_class", "lamps", "rate", "target", "ok"}
            for r in body["by_road"]
        )  # type: ignore[attr-defined]
        assert all(
            set(c) == {"road_class", "lamps", "rate", "target", "ok"} for c in body["by_class"]
        )  # type: ignore[attr-defined]
        results.append(body)
    strip = [{k: v for k, v in b.items() if k not in ("overall",)} for b in results]
    assert strip[0] == strip[1]
    assert results[0]["overall"] == results[1]["overall"]

    # The charts read the same readings back from either store, downsampled alike.
    params = {"device": "A03", "from": str(scene.start), "to": str(scene.end)}
    for field in ("on", "power"):
        one, two = (get(svc, "/api/series", field=field, step="30m", **params) for svc in services)
        assert one == two, field
        assert one["step_s"] == 1800.0
        assert len(one["t"]) == -(-(scene.end - scene.start) // 1_800_000) or len(one["t"]) > 20  # type: ignore[arg-type]
    power = get(services[0], "/api/series", field="power", step="5m", **params)
    readings = [t for t in scene.grid if scene.start <= t < scene.end]
    assert sum(power["n"]) == len(readings)  # type: ignore[arg-type]
    assert power["max"][0] == 140.0 and power["min"][-1] == 0.0  # type: ignore[index]
    # The whole fleet's night at most figures.max_points buckets, whatever step was asked.
    fleet = get(
        services[1],
        "/api/series",
        kind="lamp",
        field="power",
        step="1s",
        **{k: v for k, v in params.items() if k != "device"},
    )
    assert len(fleet["t"]) == len(readings)  # type: ignore[arg-type]  # one bucket per reading time
    assert fleet["step_s"] * 2000 >= (scene.end - scene.start) / 1000  # type: ignore[operator]
    assert max(fleet["n"]) == 24  # type: ignore[arg-type]  # A01–A20 and B1–B4 (B5 never heard)
    # Bad questions answer 422 with a message (as the alert routes do); an unknown device 404.
    for bad, status in (
        ({"field": "depth_cm", "device": "A03"}, 422),
        ({"field": "power", "device": "nope"}, 404),
        ({"field": "power", "device": "A03", "from": "yesterday"}, 422),
        ({"field": "power", "device": "A03", "from": ""}, 422),
        ({"field": "power", "device": "A03", "step": "inf"}, 422),
        ({"field": "power", "device": "A03", "step": "1e999"}, 422),
        ({"field": "nope"}, 422),
    ):
        resp = httpx.get(
            f"http://127.0.0.1:{services[0].http_port}/api/series", params=bad, timeout=10
        )
        assert resp.status_code == status and isinstance(resp.json()["detail"], str), bad
    for date in ("2026-02-30", "2026-02-29", "2100-02-29", "9999-12-31", "0001-01-01", "yesterday"):
        resp = httpx.get(
            f"http://127.0.0.1:{services[0].http_port}/api/kpi/lighting",
            params={"date": date},
            timeout=10,
        )
        assert resp.status_code == 422 and isinstance(resp.json()["detail"], str), date
    for date in ("2028-02-29", "2000-02-29", "1970-01-01", "2200-12-31"):  # leap days, the ends
        resp = httpx.get(
            f"http://127.0.0.1:{services[0].http_port}/api/kpi/cases",
            params={"date": date},
            timeout=10,
        )
        assert resp.status_code == 200, date
