"""The figures API against hostile HTTP clients: every bad question is a 4xx with a message,
never a 500, on a real service (InfluxDB 1.x behind it)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import InfluxDB, Mosquitto
from tests.service import ServiceProcess

pytestmark = pytest.mark.integration

REGISTRY = "device_id,kind,road,road_class,cabinet,rated_w\nA1,lamp,洸河路,main,CB,150\n"


@pytest.fixture
def service(tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB) -> Iterator[ServiceProcess]:
    registry = tmp_path / "registry.csv"
    registry.write_text(REGISTRY, encoding="utf-8")
    svc = ServiceProcess(
        tmp_path / "data",
        {
            "STREETWATCH_MQTT__PORT": str(mosquitto.port),
            "STREETWATCH_REGISTRY__PATH": str(registry),
            "STREETWATCH_INFLUXDB__URL": influxdb.url,
            "STREETWATCH_ALERTS__MQTT__ENABLED": "false",
        },
    ).start()
    yield svc
    svc.stop()


HOSTILE = [
    {"field": "power", "device": "A1", "step": "inf"},
    {"field": "power", "device": "A1", "step": "1e308"},
    {"field": "power", "device": "A1", "step": "nan"},
    {"field": "power", "device": "A1", "step": "-5m"},
    {"field": "power", "device": "A1", "from": "-99999999999999999999", "to": "0"},
    {"field": "power", "device": "A1", "to": "99999999999999999999999"},
    {"field": "power", "device": "A1", "from": "253402300799000", "to": "253402300799999"},
    {"field": "power", "device": "A1", "from": "9999-12-31T23:59:59Z"},
    {"field": "power", "device": "A1'; DROP DATABASE streetwatch"},
    {"field": 'power" FROM x --', "kind": "lamp"},
    {"field": "power", "kind": "lamp\"'"},
]


def test_hostile_series_questions_answer_4xx_with_a_message(service: ServiceProcess) -> None:
    url = f"http://127.0.0.1:{service.http_port}/api/series"
    answers = {}
    for params in HOSTILE:
        resp = httpx.get(url, params=params, timeout=30)
        answers[str(params)] = resp.status_code
    bad = {k: v for k, v in answers.items() if not 400 <= v < 500}
    assert not bad, "\n".join(f"{v} {k}" for k, v in bad.items())


def peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_fleet_wide_on_series_is_counted_by_the_store_not_loaded(
    service: ServiceProcess, influxdb: InfluxDB
) -> None:
    # One question for the whole fleet's relay state over a day: the service must not pull every
    # reading into its own memory (it ingests the city in that same process).
    end = time.time_ns() // 1_000_000 - 60_000
    start = end - 86_400_000
    n = 400_000
    with httpx.Client(base_url=influxdb.url, timeout=60) as http:
        for chunk in range(0, n, 50_000):
            body = b"".join(
                b"lamp,device=F%d on=%s %d\n"
                % (i % 2000, b"true" if i % 3 else b"false", start + i * 200)
                for i in range(chunk, chunk + 50_000)
            )
            resp = http.post(
                "/write", params={"db": "streetwatch", "precision": "ms"}, content=body
            )
            assert resp.status_code == 204, resp.text
    assert service.proc is not None
    before = peak_rss_kb(service.proc.pid)
    resp = httpx.get(
        f"http://127.0.0.1:{service.http_port}/api/series",
        params={"kind": "lamp", "field": "on", "from": str(start), "to": str(end + 1)},
        timeout=120,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert sum(body["n"]) == n
    lit = sum(m * c for m, c in zip(body["mean"], body["n"], strict=True))
    assert abs(lit - sum(1 for i in range(n) if i % 3)) < 1
    assert max(body["max"]) == 1 and min(body["min"]) == 0
    grew_mb = (peak_rss_kb(service.proc.pid) - before) / 1024
    assert grew_mb < 50, f"the service grew {grew_mb:.0f} MB answering one series"
