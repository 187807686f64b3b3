"""The ingest's broker options on a real Mosquitto: TLS with a private CA, username/password."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.servers import InfluxDB, Mosquitto, free_port
from tests.service import ServiceProcess

pytestmark = pytest.mark.integration


def make_ca_and_server_cert(d: Path) -> tuple[Path, Path, Path]:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=streetwatch-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    )
    return d / "ca.crt", d / "server.crt", d / "server.key"


def publish(
    port: int, *, tls_ca: Path | None = None, user: str | None = None, password: str | None = None
) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if tls_ca is not None:
        c.tls_set(ca_certs=str(tls_ca))
    if user is not None:
        c.username_pw_set(user, password)
    c.connect("127.0.0.1", port)
    c.loop_start()
    now = time.time_ns() // 1_000_000
    c.publish(
        "city/jining/lamp/L1/telemetry", f'{{"ts": {now}, "on": true}}', qos=1
    ).wait_for_publish(10)
    c.loop_stop()
    c.disconnect()


def wait_count(influxdb: InfluxDB, n: int) -> int:
    deadline = time.monotonic() + 20
    got = 0
    while time.monotonic() < deadline and got < n:
        time.sleep(0.2)
        try:
            got = influxdb.count("lamp")
        except (OSError, RuntimeError):
            got = 0
    return got


def test_ingest_over_tls_with_username_and_password(tmp_path: Path, influxdb: InfluxDB) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, crt, key = make_ca_and_server_cert(certs)
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "ingest", "s3cret"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "device", "lamp-pw"], check=True)
    tls_port = free_port()
    broker = Mosquitto(
        tmp_path / "mosquitto",
        extra=[
            "allow_anonymous false",
            f"password_file {passwd}",
            f"listener {tls_port} 127.0.0.1",
            f"cafile {ca}",
            f"certfile {crt}",
            f"keyfile {key}",
        ],
    ).start()
    try:
        env = {
            "STREETWATCH_MQTT__PORT": str(tls_port),
            "STREETWATCH_MQTT__USERNAME": "ingest",
            "STREETWATCH_MQTT__PASSWORD": "s3cret",
            "STREETWATCH_MQTT__TLS__ENABLED": "true",
            "STREETWATCH_MQTT__TLS__CA_FILE": str(ca),
            "STREETWATCH_INFLUXDB__URL": influxdb.url,
            "STREETWATCH_ALERTS__ENABLED": "false",
        }
        svc = ServiceProcess(tmp_path / "data", env).start()  # waits until connected
        try:
            publish(tls_port, tls_ca=ca, user="device", password="lamp-pw")
            assert wait_count(influxdb, 1) == 1
        finally:
            svc.stop()

        # Wrong password: the service keeps retrying (never exits), reports it is not connected.
        bad = ServiceProcess(
            tmp_path / "data-bad", {**env, "STREETWATCH_MQTT__PASSWORD": "wrong"}
        ).start(wait_connected=False)
        try:
            health = bad.wait_health(lambda h: h.get("mqtt_connected") is False, timeout=20)
            assert health["status"] == "degraded"
            time.sleep(1.5)
            assert bad.proc is not None and bad.proc.poll() is None
        finally:
            bad.stop()
    finally:
        broker.stop()


def test_the_service_recovers_after_the_broker_refused_its_credentials_for_a_while(
    tmp_path: Path, influxdb: InfluxDB
) -> None:
    """gmqtt gives up reconnecting after a refusal it deems permanent; the service starts over,
    so an operator who fixes the broker's password file needs no restart of streetwatch."""
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "ingest", "s3cret"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), "device", "lamp-pw"], check=True)
    broker = Mosquitto(
        tmp_path / "mosquitto", extra=["allow_anonymous false", f"password_file {passwd}"]
    ).start()
    env = {
        "STREETWATCH_MQTT__PORT": str(broker.port),
        "STREETWATCH_MQTT__USERNAME": "ingest",
        "STREETWATCH_MQTT__PASSWORD": "s3cret",
        "STREETWATCH_MQTT__RECONNECT_MAX_S": "1",
        "STREETWATCH_INFLUXDB__URL": influxdb.url,
        "STREETWATCH_ALERTS__ENABLED": "false",
    }
    svc = ServiceProcess(tmp_path / "data", env).start()
    try:
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), "ingest", "rotated"], check=True)
        broker.restart()  # the ingest's password no longer works: refused
        svc.wait_health(lambda h: h["mqtt_connected"] is False, timeout=15)
        time.sleep(3)
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), "ingest", "s3cret"], check=True)
        broker.restart()  # fixed
        svc.wait_health(lambda h: h["mqtt_connected"] is True, timeout=30)
        publish(broker.port, user="device", password="lamp-pw")
        assert wait_count(influxdb, 1) == 1
    finally:
        svc.stop()
        broker.stop()
