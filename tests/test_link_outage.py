"""The service's own link to the broker, cut and given back through a TCP proxy (tests/proxy.py),
on a real Mosquitto and InfluxDB: one client per connection, no false offline alerts from our own
silence, real blackouts still reported once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.proxy import CutProxy
from tests.servers import InfluxDB, Mosquitto
from tests.service import ServiceProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CONNECTS = "streetwatch_mqtt_connects_total"


def until(check, timeout: float = 30.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met in {timeout}s")
        time.sleep(0.1)


def test_after_a_long_cut_one_client_reconnects_and_stays(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    """The cut outlasts gmqtt's own reconnect loop, so the receiver's watchdog starts a fresh
    client while the old one sleeps out its backoff. The link comes back right then: the old
    client must already be fully stopped, or it wakes and connects too, the two take the session
    from each other and the connection drops every few seconds."""
    with CutProxy(mosquitto.port) as proxy:
        svc = ServiceProcess(
            tmp_path / "data",
            {
                "STREETWATCH_MQTT__PORT": str(proxy.port),
                "STREETWATCH_MQTT__RECONNECT_MIN_S": "6",
                "STREETWATCH_MQTT__RECONNECT_MAX_S": "6",
                "STREETWATCH_INFLUXDB__URL": influxdb.url,
                "STREETWATCH_ALERTS__ENABLED": "false",
            },
        ).start()
        try:
            assert svc.metric(CONNECTS) == 1
            proxy.cut()
            svc.wait_health(lambda h: h.get("mqtt_connected") is False)
            # The old receiver's watchdog started a fresh client after 2 × reconnect_max_s + 5 s
            # (logging "afresh"); the link comes back right then.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and "afresh" not in svc.log.read_text():
                time.sleep(0.1)
            proxy.restore()
            svc.wait_health(lambda h: h.get("mqtt_connected") is True, timeout=40)
            time.sleep(14)  # a sleeping old client wakes within its backoff (≤ 9 s)
            settled = svc.metric(CONNECTS)
            time.sleep(15)  # a pair of clients taking the session from each other shows here
            log = svc.log.read_text()[-3000:]
            assert svc.metric(CONNECTS) == settled, log
            assert svc.health()["mqtt_connected"] is True, log
            assert proxy.connections == 1, log
        finally:
            svc.stop()


# ---- the rules' clock across our own outage ---------------------------------------------------


def lamp_registry(path: Path, devices: int, interval_s: int) -> Path:
    rows = [f"LD-{n + 1:05d},lamp,洸河路,main,,150,,{interval_s}" for n in range(devices)]
    path.write_text(
        "device_id,kind,road,road_class,cabinet,rated_w,point,report_interval_s\n"
        + "\n".join(rows)
        + "\n",
        encoding="utf-8",
    )
    return path


class Load:
    """The simulator's load mode in a thread: live lamp readings straight to the broker."""

    def __init__(self, port: int, *, rate: float, seconds: float, devices: int) -> None:
        import asyncio
        import threading

        from simulator.load import LoadOptions, run_worker

        self.opts = LoadOptions(
            port=port, rate=rate, duration_s=seconds, devices=devices, connections=4
        )
        self.sent = 0
        self.result: object = None

        def progress(sent: int, acked: int) -> None:
            self.sent = sent

        def main() -> None:
            self.result = asyncio.run(run_worker(self.opts, progress))

        self.thread = threading.Thread(target=main, daemon=True, name="load")
        self.thread.start()

    def join(self) -> None:
        self.thread.join(self.opts.duration_s + 60)
        assert not self.thread.is_alive(), "load did not finish"


def alerts(svc: ServiceProcess, rule: str) -> list[dict[str, object]]:
    import urllib.request

    import orjson

    url = f"http://127.0.0.1:{svc.http_port}/api/alerts?rule={rule}"
    with urllib.request.urlopen(url, timeout=10) as r:
        items: list[dict[str, object]] = orjson.loads(r.read())["items"]
    return items


def clock_service(tmp_path: Path, port: int, influxdb: InfluxDB, registry: Path) -> ServiceProcess:
    return ServiceProcess(
        tmp_path / "data",
        {
            "STREETWATCH_MQTT__PORT": str(port),
            "STREETWATCH_MQTT__RECONNECT_MAX_S": "1",
            "STREETWATCH_INFLUXDB__URL": influxdb.url,
            "STREETWATCH_REGISTRY__PATH": str(registry),
            "STREETWATCH_HTTP__TOKEN": "t",
            # Lamps burning at any hour: only absence is under test here.
            "STREETWATCH_RULES__LAMP_DAY_BURNING__ENABLED": "false",
            "STREETWATCH_RULES__LAMP_DARK__ENABLED": "false",
        },
    ).start()


def test_a_minute_cut_with_a_big_backlog_raises_no_offline_alert(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    """Every device keeps reporting while our link is cut for 60 s; the broker queues 100k+
    readings in front of the live ones. Devices report every 5 s (offline after 15 s): the wall
    clock, let run at the return, used to call all of them offline before the backlog was in."""
    devices = 1000
    registry = lamp_registry(tmp_path / "registry.csv", devices, 5)
    with CutProxy(mosquitto.port) as proxy:
        svc = clock_service(tmp_path, proxy.port, influxdb, registry)
        try:
            load = Load(mosquitto.port, rate=2300, seconds=85, devices=devices)
            until(lambda: svc.metric("streetwatch_mqtt_connected") == 1 and load.sent > 10_000)
            proxy.cut()
            cut_at = load.sent
            time.sleep(60)
            queued = load.sent - cut_at
            proxy.restore()
            load.join()
            svc.wait_health(lambda h: h.get("mqtt_connected") is True, timeout=30)
            svc.wait_drained(timeout=120)
            time.sleep(3)  # a few ticks of the wall clock after the backlog
            assert queued >= 100_000, queued
            offline = alerts(svc, "device_offline")
            assert offline == [], f"{len(offline)} false offline alerts, e.g. {offline[:1]}"
            assert svc.metric(CONNECTS) == 2  # connected, cut, back once: no flapping
        finally:
            svc.stop()


def test_a_cut_while_the_devices_also_go_silent_raises_offline_once(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    """A real blackout during our outage: nothing is queued, so once the link is back and no
    backlog comes, the devices' silence is theirs: one offline alert each, once."""
    devices = 40
    registry = lamp_registry(tmp_path / "registry.csv", devices, 5)
    with CutProxy(mosquitto.port) as proxy:
        svc = clock_service(tmp_path, proxy.port, influxdb, registry)
        try:
            load = Load(mosquitto.port, rate=200, seconds=8, devices=devices)
            load.join()  # the devices fall silent ...
            proxy.cut()  # ... as our link goes
            time.sleep(30)
            assert alerts(svc, "device_offline") == []  # silent 30 s, due after 25 s: held
            proxy.restore()
            until(lambda: len(alerts(svc, "device_offline")) >= devices, timeout=60)
            time.sleep(8)  # nothing more comes
            offline = alerts(svc, "device_offline")
            assert sorted(a["device"] for a in offline) == [
                f"LD-{n + 1:05d}" for n in range(devices)
            ]
            assert all(a["state"] == "active" for a in offline)
        finally:
            svc.stop()
