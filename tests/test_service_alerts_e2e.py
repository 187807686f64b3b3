"""Readings in over MQTT → rule engine → alert lifecycle → MQTT alert topics and the HTTP API,
through the real service process, a real Mosquitto and a real InfluxDB."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest

from tests.publish import Publisher
from tests.servers import InfluxDB, Mosquitto
from tests.service import ServiceProcess

pytestmark = pytest.mark.integration

REGISTRY = """device_id,kind,road,road_class,cabinet,rated_w,point,report_interval_s
L1,lamp,洸河路,main,C1,150,,300
W1,waterlevel,运河路,main,,,运河路下穿,60
"""
TOKEN = "crew-token"


class AlertWatcher:
    def __init__(self, port: int) -> None:
        self.messages: dict[str, list[bytes]] = {}
        self.cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("city/jining/alerts/#", qos=1)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.setdefault(msg.topic, []).append(msg.payload)
            self.cond.notify_all()

    def wait(self, topic: str, pred: Any, timeout: float = 15.0) -> bytes:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for payload in self.messages.get(topic, []):
                    if pred(payload):
                        return payload
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{topic}: {self.messages.get(topic)}")
                self.cond.wait(left)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def state_is(state: str) -> Any:
    return lambda p: bool(p) and orjson.loads(p)["state"] == state


def http(svc: ServiceProcess, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(
        f"http://127.0.0.1:{svc.http_port}{path}",
        method=method,
        data=orjson.dumps(body or {}) if method == "POST" else None,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        return orjson.loads(r.read())


def test_a_lamp_fault_and_a_flooded_point_reach_mqtt_and_http(
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
            "STREETWATCH_HTTP__TOKENS": orjson.dumps({"调度台": TOKEN}).decode(),
        },
    ).start()
    watcher = AlertWatcher(mosquitto.port)
    pub = Publisher(mosquitto.port)
    try:
        # The fault starts 10 min ago, so its clear (now) is past the rules' minimum hold time.
        now = time.time_ns() // 1_000_000 - 600_000
        pub.send(
            "city/jining/lamp/L1/event", {"ts": now, "event": "lampFailure", "state": "raised"}
        )
        topic = "city/jining/alerts/lamp_fault/L1"
        alert = orjson.loads(watcher.wait(topic, state_is("active")))
        assert (alert["rule"], alert["device"], alert["kind"], alert["road"]) == (
            "lamp_fault",
            "L1",
            "lamp",
            "洸河路",
        )
        assert alert["severity"] in ("critical", "major", "minor", "warning")

        items = http(svc, "GET", "/api/alerts?rule=lamp_fault")["items"]
        assert [a["id"] for a in items] == [alert["id"]]
        acked = http(svc, "POST", f"/api/alerts/{alert['id']}/ack", {"who": "control centre"})
        assert acked["state"] == "acknowledged"
        watcher.wait(topic, state_is("acknowledged"))

        # A repeat updates the same alert; it never opens a second one.
        pub.send(
            "city/jining/lamp/L1/event",
            {"ts": now + 1000, "event": "lampFailure", "state": "raised"},
        )
        pub.send("city/jining/waterlevel/W1/telemetry", {"ts": now + 1000, "depth_cm": 16.5})
        water = orjson.loads(watcher.wait("city/jining/alerts/water_level/W1", state_is("active")))
        assert water["level"] == 2 and water["value"] == 16.5

        pub.send(
            "city/jining/lamp/L1/event",
            {"ts": now + 600_000, "event": "lampFailure", "state": "cleared"},
        )
        watcher.wait(topic, state_is("cleared"))
        assert len(http(svc, "GET", "/api/alerts?rule=lamp_fault")["items"]) == 1
        closed = http(svc, "POST", f"/api/alerts/{alert['id']}/close", {"who": "crew 3"})
        assert closed["state"] == "closed"
        watcher.wait(topic, lambda p: p == b"")  # closing removes the retained alert
        history = http(svc, "GET", f"/api/alerts/{alert['id']}/history")
        # The service hears its own alert feed ({prefix}/+/+/+): ignored, never dead-lettered.
        assert not (tmp_path / "data" / "deadletter.jsonl").read_text().strip()
        # The token's name is who did it; the name typed in the body is kept beside it.
        trail = [(h["action"], h["who"], h["state_to"]) for h in history["items"]]
        assert ("acknowledged", "调度台", "acknowledged") in trail
        assert ("closed", "调度台", "closed") in trail
        shown = [h.get("detail", {}).get("shown_as") for h in history["items"]]
        assert "control centre" in shown and "crew 3" in shown
        assert [t[2] for t in trail][-1] == "closed"
    finally:
        pub.close()
        watcher.close()
        rc, took = svc.terminate()
    assert rc == 0 and took < 10
