"""The figures API against hostile HTTP clients: every bad question is a 4xx with a message,
never a 500, on a real service (InfluxDB 1.x behind it)."""

from __future__ import annotations

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
    {"field": "power", "device": "A1", "step": "0"},
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
