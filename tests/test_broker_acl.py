"""The production broker config (deploy/mosquitto.conf + mosquitto.acl) on a real Mosquitto.

A device may publish only under its own id: a fake flood under another device's id, or a fake
alert under alerts/, is refused by the broker (MQTT 5 PUBACK "not authorised"), and nothing of it
is stored or raised. Anonymous clients are refused; the control room only reads.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest

from tests.servers import REPO, InfluxDB, Mosquitto, free_port
from tests.service import ServiceProcess
from tests.test_mqtt_tls_auth import make_ca_and_server_cert

pytestmark = pytest.mark.integration

NOT_AUTHORISED = 135


def production_conf(
    d: Path, *, tls_port: int, plain_port: int, ca: Path, crt: Path, key: Path
) -> list[str]:
    """deploy/mosquitto.conf with its paths and ports moved into `d` (every setting kept)."""
    passwd = d / "passwd"
    for i, (user, pw) in enumerate(
        [
            ("streetwatch", "svc-pw"),
            ("controlroom", "cr-pw"),
            ("L1", "l1-pw"),
            ("W2", "w2-pw"),
            ("W3", "w3-pw"),
        ]
    ):
        args = ["mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(passwd), user, pw]
        subprocess.run(args, check=True, capture_output=True)
    acl = d / "acl"
    acl.write_text((REPO / "deploy" / "mosquitto.acl").read_text())
    paths = {
        "password_file": passwd,
        "acl_file": acl,
        "cafile": ca,
        "certfile": crt,
        "keyfile": key,
        "persistence_location": f"{d}/",
    }
    out = []
    for line in (REPO / "deploy" / "mosquitto.conf").read_text().splitlines():
        words = line.split()
        if words and words[0] in paths:
            line = f"{words[0]} {paths[words[0]]}"
        elif words[:2] == ["listener", "8883"]:
            line = f"listener {tls_port} 127.0.0.1"
        elif words[:2] == ["listener", "1883"]:
            line = f"listener {plain_port} 127.0.0.1"
        elif words and words[0] == "log_dest":
            line = f"log_dest file {d}/mosquitto.log"
        out.append(line)
    if os.geteuid() == 0:
        out.append("user root")  # see tests/servers.py: the persistence file in a root temp dir
    return out


class Device:
    """A paho MQTT 5 client over TLS that records each PUBACK's reason code."""

    count = 0

    def __init__(self, port: int, ca: Path, user: str | None, password: str | None) -> None:
        Device.count += 1  # unique client ids: a second one would take the first's session over
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"t-{user}-{Device.count}",
            protocol=mqtt.MQTTv5,
        )
        self.client.tls_set(ca_certs=str(ca))
        if user is not None:
            self.client.username_pw_set(user, password)
        self.reasons: dict[int, int] = {}
        self.connack: int | None = None
        self.connected = threading.Event()
        self.client.on_publish = lambda c, u, mid, rc, props: self.reasons.__setitem__(
            mid, rc.value
        )

        def on_connect(c: object, u: object, flags: object, rc: object, props: object) -> None:
            self.connack = rc.value  # type: ignore[attr-defined]
            self.connected.set()

        self.client.on_connect = on_connect
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.connected.wait(10)

    def publish(self, topic: str, payload: dict[str, object], retain: bool = False) -> int:
        info = self.client.publish(topic, orjson.dumps(payload), qos=1, retain=retain)
        info.wait_for_publish(10)
        deadline = time.monotonic() + 5
        while info.mid not in self.reasons and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.reasons[info.mid]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_a_device_may_publish_only_under_its_own_id(tmp_path: Path, influxdb: InfluxDB) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, crt, key = make_ca_and_server_cert(certs)
    tls_port, plain_port = free_port(), free_port()
    broker = Mosquitto(tmp_path / "mosquitto", port=plain_port)
    broker.write_conf = lambda: broker.conf.write_text(  # type: ignore[method-assign]
        "\n".join(
            production_conf(
                broker.workdir, tls_port=tls_port, plain_port=plain_port, ca=ca, crt=crt, key=key
            )
        )
        + "\n"
    )
    broker.start()
    env = {
        "STREETWATCH_MQTT__PORT": str(tls_port),
        "STREETWATCH_MQTT__USERNAME": "streetwatch",
        "STREETWATCH_MQTT__PASSWORD": "svc-pw",
        "STREETWATCH_MQTT__TLS__ENABLED": "true",
        "STREETWATCH_MQTT__TLS__CA_FILE": str(ca),
        "STREETWATCH_INFLUXDB__URL": influxdb.url,
    }
    svc = ServiceProcess(tmp_path / "data", env).start()
    devices: list[Device] = []
    try:
        # The control room watches the retained alert feed from the start.
        seen: list[str] = []
        room = Device(tls_port, ca, "controlroom", "cr-pw")
        devices.append(room)
        room.client.on_message = lambda c, u, m: seen.append(m.topic)
        room.client.subscribe("city/jining/alerts/#", qos=1)

        anonymous = Device(tls_port, ca, None, None)
        devices.append(anonymous)
        assert anonymous.connack == NOT_AUTHORISED or anonymous.connack == 134  # bad user/pw

        now = time.time_ns() // 1_000_000
        flood = {"ts": now, "depth_cm": 50.0}
        fake_alert = {"id": "x", "rule": "water_level", "device": "W2", "state": "active"}

        def attempt(user: str, pw: str, topic: str, payload: dict[str, object]) -> int | None:
            """One publish on a fresh connection: the PUBACK's reason code (None: dropped)."""
            dev = Device(tls_port, ca, user, pw)
            try:
                return dev.publish(topic, payload, retain="alerts" in topic)
            except (RuntimeError, KeyError):
                return None
            finally:
                dev.close()

        # L1 poses as waterlogging point W2 (a fake 50 cm flood), as lamp L2, and fakes alerts.
        assert (
            attempt("L1", "l1-pw", "city/jining/waterlevel/W2/telemetry", flood) == NOT_AUTHORISED
        )
        lamp_off = {"ts": now, "on": False}
        assert attempt("L1", "l1-pw", "city/jining/lamp/L2/telemetry", lamp_off) == NOT_AUTHORISED
        assert (
            attempt("L1", "l1-pw", "city/jining/alerts/water_level/W2", fake_alert)
            == NOT_AUTHORISED
        )
        # …the "alerts" kind slot with its own id does not help either.
        assert attempt("L1", "l1-pw", "city/jining/alerts/L1/telemetry", flood) == NOT_AUTHORISED
        # The control room reads only.
        assert attempt("controlroom", "cr-pw", "city/jining/waterlevel/W2/telemetry", flood) == (
            NOT_AUTHORISED
        )
        assert attempt("controlroom", "cr-pw", "city/jining/alerts/water_level/W2", fake_alert) == (
            NOT_AUTHORISED
        )

        l1 = Device(tls_port, ca, "L1", "l1-pw")
        devices.append(l1)
        # Its own topic is fine; W2's own flood (a real one) is taken and raises an alert.
        assert l1.publish("city/jining/lamp/L1/telemetry", {"ts": now, "on": True}) == 0
        w2 = Device(tls_port, ca, "W2", "w2-pw")
        devices.append(w2)
        assert (
            w2.publish("city/jining/waterlevel/W2/telemetry", {"ts": now + 1, "depth_cm": 5}) == 0
        )

        # A real flood at W3 raises a real alert: the service may write the alert feed.
        w3 = Device(tls_port, ca, "W3", "w3-pw")
        devices.append(w3)
        assert w3.publish("city/jining/waterlevel/W3/telemetry", {"ts": now, "depth_cm": 50}) == 0

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if (
                    influxdb.count("lamp") == 1
                    and influxdb.count("waterlevel") == 2
                    and "city/jining/alerts/water_level/W3" in seen
                ):
                    break
            except (OSError, RuntimeError):
                pass
            time.sleep(0.2)
        time.sleep(1.0)  # anything refused would have arrived by now
        assert influxdb.count("lamp") == 1
        lamps = influxdb.rows('SELECT "on" FROM "lamp" GROUP BY "device"')
        assert [r["device"] for r in lamps] == ["L1"]
        water = influxdb.rows('SELECT depth_cm FROM "waterlevel" GROUP BY "device"')
        assert sorted((r["device"], r["depth_cm"]) for r in water) == [("W2", 5.0), ("W3", 50.0)]
        with urllib.request.urlopen(f"http://127.0.0.1:{svc.http_port}/api/alerts", timeout=5) as r:
            alerts = orjson.loads(r.read())["items"]
        assert [(a["rule"], a["device"]) for a in alerts] == [("water_level", "W3")]
        assert "city/jining/alerts/water_level/W3" in seen, seen
        assert not any(re.search(r"/W2$|/L1/", t) for t in seen), seen
        assert svc.metric("streetwatch_rejected_total") == 0
    finally:
        for d in devices:
            d.close()
        svc.stop()
        broker.stop()
