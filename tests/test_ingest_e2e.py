"""The ingest path end to end on the real servers: Mosquitto → streetwatch (subprocess) → InfluxDB."""

from __future__ import annotations

import datetime
import threading
import time
from pathlib import Path

import orjson
import pytest

from tests.publish import Publisher
from tests.servers import InfluxDB, Mosquitto
from tests.service import ServiceProcess

pytestmark = pytest.mark.integration

NASTY_ROAD = '洸河路 east, "A"=1\\'

REGISTRY = f"""device_id,kind,road,road_class,cabinet,rated_w,point,lat,lon,report_interval_s,owner
L1,lamp,"{NASTY_ROAD.replace('"', '""')}",main,"CAB 1,north",150,,35.41,116.58,300,城管局
W1,waterlevel,运河路,main,,,运河路 下穿,35.40,116.59,60,
"""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def local_rfc3339(ms: int) -> str:
    """The time as a device in Jining writes it: RFC 3339 with a +08:00 offset."""
    tz = datetime.timezone(datetime.timedelta(hours=8))
    return datetime.datetime.fromtimestamp(ms / 1000, tz).isoformat(timespec="milliseconds")


def service_env(mosquitto: Mosquitto, influxdb: InfluxDB, **extra: str) -> dict[str, str]:
    return {
        "STREETWATCH_MQTT__PORT": str(mosquitto.port),
        "STREETWATCH_INFLUXDB__URL": influxdb.url,
        "STREETWATCH_ALERTS__ENABLED": "false",
        "STREETWATCH_STORAGE__BATCH_INTERVAL_S": "0.2",
        "STREETWATCH_STORAGE__RETRY_MAX_S": "2",
        **extra,
    }


@pytest.fixture
def registry_csv(tmp_path: Path) -> Path:
    path = tmp_path / "registry.csv"
    path.write_text(REGISTRY, encoding="utf-8")
    return path


@pytest.fixture
def service(tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, registry_csv: Path):  # type: ignore[no-untyped-def]
    svc = ServiceProcess(
        tmp_path / "data",
        service_env(mosquitto, influxdb, STREETWATCH_REGISTRY__PATH=str(registry_csv)),
    ).start()
    yield svc
    svc.stop()


def wait_count(influxdb: InfluxDB, measurement: str, want: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    got = 0
    while time.monotonic() < deadline:
        try:
            got = influxdb.count(measurement)
        except (OSError, RuntimeError):
            got = 0
        if got >= want:
            return got
        time.sleep(0.2)
    return got


def test_readings_land_with_measurement_tags_fields_and_time(
    service: ServiceProcess, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    pub = Publisher(mosquitto.port)
    ts = now_ms() - 60_000
    pub.send(
        "city/jining/lamp/L1/telemetry",
        {"ts": ts, "on": True, "dim": 80, "voltage": 220, "power": 118.5, "seq": 7, "extra": "x"},
    )
    pub.send(
        "city/jining/waterlevel/W1/telemetry",
        [
            {"ts": local_rfc3339(ts - 3_600_000), "depth_cm": 12, "rain_mm": 4.5, "battery": 88},
            {"ts": ts, "depth_cm": 0},
        ],
    )
    pub.send("city/jining/lamp/L2/telemetry", {"ts": ts, "on": False})  # unregistered
    pub.send("city/jining/lamp/L1/event", {"ts": ts, "event": "doorOpen", "state": "raised"})
    pub.close()
    assert wait_count(influxdb, "lamp", 2) == 2
    assert wait_count(influxdb, "waterlevel", 2) == 2
    assert wait_count(influxdb, "device_event", 1) == 1

    rows = influxdb.rows('SELECT * FROM "lamp" WHERE "device" = \'L1\'')
    assert len(rows) == 1
    row = rows[0]
    assert row["time"] == ts
    assert row["road"] == NASTY_ROAD[:-1] + "\uff3c"  # a trailing backslash cannot be stored as is
    assert row["cabinet"] == "CAB 1,north"
    assert row["on"] is True and row["voltage"] == 220 and row["power"] == 118.5
    assert "owner" not in row  # unknown registry columns are attributes, not tags
    fields = influxdb.query('SHOW FIELD KEYS FROM "lamp"')[0]["values"]
    types = dict((k, t) for k, t in fields)
    assert types == {
        "on": "boolean",
        "dim": "float",
        "voltage": "float",
        "power": "float",
    }
    unreg = influxdb.rows('SELECT * FROM "lamp" WHERE "device" = \'L2\'')
    assert unreg[0].get("road") is None and unreg[0]["on"] is False

    water = influxdb.rows('SELECT * FROM "waterlevel" ORDER BY time')
    assert water[0]["time"] == ts - 3_600_000  # written in +08:00, stored as UTC ms
    assert water[0]["point"] == "运河路 下穿" and water[0]["road"] == "运河路"
    event = influxdb.rows('SELECT * FROM "device_event"')[0]
    assert (event["device"], event["kind"], event["event"], event["raised"]) == (
        "L1",
        "lamp",
        "doorOpen",
        True,
    )
    assert service.metric("streetwatch_unregistered_readings_total") == 1


BAD = [
    ("not_json", "city/jining/lamp/L1/telemetry", b"{oops"),
    ("not_utf8", "city/jining/lamp/L1/telemetry", b'{"ts": 1, "on": true, "x": "\xff"}'),
    ("non_finite", "city/jining/lamp/L1/telemetry", b'{"ts": 1, "on": true, "power": NaN}'),
    ("non_finite", "city/jining/lamp/L1/telemetry", b'{"ts": 1, "on": true, "power": Infinity}'),
    ("wrong_type", "city/jining/lamp/L1/telemetry", b'{"ts": 1, "on": "true"}'),
    ("wrong_type", "city/jining/lamp/L1/telemetry", b'{"ts": 1, "on": true, "power": "12"}'),
    ("out_of_range", "city/jining/lamp/L1/telemetry", b'{"ts": 1, "on": true, "voltage": 401}'),
    ("out_of_range", "city/jining/waterlevel/W1/telemetry", b'{"ts": 1, "depth_cm": -0.5}'),
    ("missing_ts", "city/jining/lamp/L1/telemetry", b'{"on": true}'),
    ("bad_ts", "city/jining/lamp/L1/telemetry", b'{"ts": "yesterday", "on": true}'),
    ("bad_ts", "city/jining/lamp/L1/telemetry", b'{"ts": "2026-07-15T21:30:00", "on": true}'),
    ("missing_field", "city/jining/waterlevel/W1/telemetry", b'{"ts": 1}'),
    ("unknown_kind", "city/jining/hydrant/H1/telemetry", b'{"ts": 1}'),
    ("unknown_channel", "city/jining/lamp/L1/config", b'{"ts": 1}'),
    ("bad_device_id", "city/jining/lamp/L%201/telemetry", b'{"ts": 1, "on": true}'),
    ("not_object", "city/jining/lamp/L1/telemetry", b'"hello"'),
    ("empty_array", "city/jining/lamp/L1/telemetry", b"[]"),
    (
        "bad_event",
        "city/jining/lamp/L1/event",
        b'{"ts": 1, "event": "door open", "state": "raised"}',
    ),
    ("bad_event", "city/jining/lamp/L1/event", b'{"ts": 1, "event": "doorOpen", "state": "on"}'),
    ("wrong_type", "city/jining/lamp/L1/status", b'{"online": "yes"}'),
    ("payload_too_large", "city/jining/lamp/L1/telemetry", b"[" + b" " * 300_000 + b"]"),
]


def test_every_rejection_reason_is_counted_dead_lettered_and_stores_nothing(
    service: ServiceProcess, mosquitto: Mosquitto, influxdb: InfluxDB, tmp_path: Path
) -> None:
    pub = Publisher(mosquitto.port)
    for _, topic, payload in BAD:
        pub.send(topic, payload)
    future = now_ms() + 10 * 60_000
    pub.send("city/jining/lamp/L1/telemetry", {"ts": future, "on": True})
    # An array: each reading judged on its own; the good one is stored.
    good_ts = now_ms() - 1000
    pub.send(
        "city/jining/lamp/L1/telemetry",
        [{"ts": good_ts, "on": True}, {"ts": good_ts + 1, "on": True, "dim": 101}, 5],
    )
    pub.close()
    assert wait_count(influxdb, "lamp", 1) == 1
    time.sleep(0.5)
    assert influxdb.count("lamp") == 1  # nothing from a rejected reading
    expected: dict[str, int] = {}
    for reason, _, _ in BAD:
        expected[reason] = expected.get(reason, 0) + 1
    expected["ts_in_future"] = 1
    expected["out_of_range"] += 1
    expected["not_object"] += 1
    for reason, n in expected.items():
        assert service.metric(f'streetwatch_rejected_total{{reason="{reason}"}}') == n, reason
    lines = (tmp_path / "data" / "deadletter.jsonl").read_text().splitlines()
    records = [orjson.loads(line) for line in lines]
    assert len(records) == sum(expected.values())
    assert all({"topic", "reason", "detail"} <= set(r) for r in records)
    by_reason = {r["reason"] for r in records}
    assert by_reason == set(expected)
    utf = next(r for r in records if r["reason"] == "not_utf8")
    assert "payload_b64" in utf
    big = next(r for r in records if r["reason"] == "payload_too_large")
    assert big["payload_bytes"] == 300_002 and big["truncated"] is True
    assert service.health()["status"] == "ok"  # bad input never stops the service


def test_a_redelivered_reading_leaves_one_point(
    service: ServiceProcess, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    pub = Publisher(mosquitto.port)
    msg = {"ts": now_ms() - 5000, "on": True, "power": 100}
    for _ in range(3):
        pub.send("city/jining/lamp/L1/telemetry", msg)
    pub.send("city/jining/lamp/L1/telemetry", [msg, msg])
    pub.close()
    service.wait_drained()
    time.sleep(0.5)
    assert influxdb.count("lamp") == 1


def _publish_many(port: int, n: int, start_ts: int, devices: int = 50) -> None:
    pub = Publisher(port)
    for i in range(n):
        pub.client.publish(
            f"city/jining/lamp/D{i % devices}/telemetry",
            orjson.dumps({"ts": start_ts + i, "on": True, "power": float(i % 300)}),
            qos=1,
        )
    # wait for the last PUBACKs
    info = pub.client.publish("city/jining/lamp/D0/telemetry", b"{}", qos=1)
    info.wait_for_publish(60)
    pub.close()


def test_kill_9_mid_stream_then_restart_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    n = 20_000
    env = service_env(mosquitto, influxdb)
    svc = ServiceProcess(tmp_path / "data", env).start()
    start_ts = now_ms() - 3_600_000
    publisher = threading.Thread(target=_publish_many, args=(mosquitto.port, n, start_ts))
    publisher.start()
    # Kill while messages are flowing and the writer is mid-batch.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and svc.metric("streetwatch_messages_received_total") < n / 4:
        time.sleep(0.05)
    svc.kill9()
    publisher.join(120)
    svc = ServiceProcess(tmp_path / "data", env).start()
    try:
        assert wait_count(influxdb, "lamp", n, timeout=60) == n
        svc.wait_drained()
        time.sleep(0.5)
        assert influxdb.count("lamp") == n
    finally:
        svc.stop()


def test_influxdb_down_for_a_while_then_back_everything_arrives(
    service: ServiceProcess, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    pub = Publisher(mosquitto.port)
    base = now_ms() - 600_000
    pub.send("city/jining/lamp/L1/telemetry", {"ts": base, "on": True})
    assert wait_count(influxdb, "lamp", 1) == 1
    influxdb.stop()
    for i in range(1, 501):
        pub.send("city/jining/lamp/L1/telemetry", {"ts": base + i, "on": True})
    health = service.wait_health(lambda h: h["store_up"] is False and h["spool_bytes"] > 0)
    assert health["status"] == "degraded"
    time.sleep(1.5)
    influxdb.start()
    assert wait_count(influxdb, "lamp", 501, timeout=30) == 501
    service.wait_drained()
    pub.close()


def test_broker_restart_the_service_reconnects_and_goes_on(
    service: ServiceProcess, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    pub = Publisher(mosquitto.port)
    base = now_ms() - 600_000
    pub.send("city/jining/lamp/L1/telemetry", {"ts": base, "on": True})
    pub.close()
    assert wait_count(influxdb, "lamp", 1) == 1
    mosquitto.restart()
    service.wait_health(lambda h: h["mqtt_connected"] is True, timeout=30)
    pub = Publisher(mosquitto.port)
    for i in range(1, 101):
        pub.send("city/jining/lamp/L1/telemetry", {"ts": base + i, "on": True})
    pub.close()
    assert wait_count(influxdb, "lamp", 101) == 101
    assert service.metric("streetwatch_mqtt_connects_total") >= 2


def test_readings_sent_while_the_service_is_down_wait_in_the_broker(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    env = service_env(mosquitto, influxdb)
    svc = ServiceProcess(tmp_path / "data", env).start()
    rc, took = svc.terminate()
    assert rc == 0 and took < 10
    pub = Publisher(mosquitto.port)
    base = now_ms() - 600_000
    for i in range(2000):  # more than Mosquitto's default max_queued_messages (1000)
        pub.client.publish(
            "city/jining/lamp/L1/telemetry", orjson.dumps({"ts": base + i, "on": True}), qos=1
        )
    pub.send("city/jining/lamp/L2/telemetry", {"ts": base, "on": True})
    pub.close()
    svc = ServiceProcess(tmp_path / "data", env).start()
    try:
        assert wait_count(influxdb, "lamp", 2001) == 2001
    finally:
        rc, took = svc.terminate()
    assert rc == 0 and took < 10


def test_queued_readings_survive_a_broker_restart_while_the_service_is_down(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    env = service_env(mosquitto, influxdb)
    svc = ServiceProcess(tmp_path / "data", env).start()
    svc.terminate()
    pub = Publisher(mosquitto.port)
    base = now_ms() - 600_000
    for i in range(300):
        pub.send("city/jining/lamp/L1/telemetry", {"ts": base + i, "on": True})
    pub.close()
    mosquitto.restart()  # persistence on (deploy/mosquitto.conf): the session's queue survives
    svc = ServiceProcess(tmp_path / "data", env).start()
    try:
        assert wait_count(influxdb, "lamp", 300) == 300
    finally:
        svc.stop()


def test_a_full_spool_holds_acks_and_the_broker_keeps_the_rest(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    """InfluxDB down long enough to fill the spool: acks stop (nothing is dropped), the broker
    queues the rest, and everything arrives once InfluxDB is back."""
    env = service_env(mosquitto, influxdb, STREETWATCH_STORAGE__SPOOL_MAX_BYTES=str(1024 * 1024))
    svc = ServiceProcess(tmp_path / "data", env).start()
    try:
        influxdb.stop()
        n = 30_000  # ~1.7 MB of spooled lines: more than the spool may hold
        _publish_many(mosquitto.port, n, now_ms() - 3_600_000)
        health = svc.wait_health(lambda h: h["spool_full"] is True, timeout=30)
        assert health["spool_bytes"] >= 1024 * 1024
        held = svc.metric("streetwatch_messages_received_total")
        assert held < n  # the rest waits in the broker: not delivered, since acks stopped
        influxdb.start()
        assert wait_count(influxdb, "lamp", n, timeout=60) == n
        svc.wait_drained()
    finally:
        svc.stop()
