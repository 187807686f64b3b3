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
