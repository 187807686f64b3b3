"""A flood reported late through a gateway, end to end: Mosquitto → streetwatch (subprocess) →
the alert API. The water point's gateway was down for five hours; when it came back it sent the
point's current reading first, then its backlog as arrays (contract §1, the gateway form)."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from alerts.model import parse_time
from tests.publish import Publisher
from tests.servers import InfluxDB, Mosquitto
from tests.service import ServiceProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MIN = 60_000
HOUR = 60 * MIN
REGISTRY = """device_id,kind,road,road_class,cabinet,rated_w,point,report_interval_s
W1,waterlevel,济安桥路,main,,,济安桥路下穿,60
W2,waterlevel,洸河路,main,,,洸河路下穿,60
"""


def water_alerts(svc: ServiceProcess) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{svc.http_port}/api/alerts?rule=water_level&device=W1"
    with urllib.request.urlopen(url, timeout=10) as r:
        items: list[dict[str, object]] = orjson.loads(r.read())["items"]
    return items


def test_a_flood_in_a_gateways_backlog_is_raised_at_its_time_and_marked_late(
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
            "STREETWATCH_HTTP__TOKEN": "t",
        },
    ).start()
    pub = Publisher(mosquitto.port)
    try:
        now = time.time_ns() // 1_000_000
        down = now - 5 * HOUR
        flood = (now - 2 * HOUR, now - 20 * MIN)  # 45 cm, over before the gateway came back

        def topic(device: str) -> str:
            return f"city/jining/waterlevel/{device}/telemetry"

        pub.send(topic("W1"), {"ts": down - MIN, "depth_cm": 2.0})  # its last before the outage
        pub.send(topic("W2"), {"ts": now, "depth_cm": 2.0})  # the rest of the city is live
        pub.send(topic("W1"), {"ts": now, "depth_cm": 2.0})  # back: the current reading first ...
        for hour in range(5):  # ... then the backlog, an hour per array
            start = down + hour * HOUR
            pub.send(
                topic("W1"),
                [
                    {"ts": t, "depth_cm": 45.0 if flood[0] <= t < flood[1] else 2.0}
                    for t in range(start, start + HOUR, MIN)
                ],
            )
        deadline = time.monotonic() + 60
        items: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            items = water_alerts(svc)
            if items and items[0]["state"] == "cleared":
                break
            time.sleep(0.3)
        assert len(items) == 1, items
        alert = items[0]
        raised = parse_time(str(alert["raised_at"]))
        assert flood[0] <= raised <= flood[0] + 2 * MIN  # its own event time, not the upload's
        assert alert["state"] == "cleared"  # already over
        assert flood[1] <= parse_time(str(alert["cleared_at"])) <= now
        assert alert["reported_late"] is True
        assert parse_time(str(alert["reported_at"])) >= now - 60_000
        assert int(alert["level"]) >= 4  # type: ignore[call-overload]
    finally:
        pub.close()
        svc.stop()
