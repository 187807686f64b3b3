"""SIGTERM while a store write hangs: exit 0 within 10 s with either store, the reading kept.

influxdb-client's call (v2) blocks for its whole timeout (`influxdb.timeout_s`, default 30 s) when
the server accepts and never answers; shutdown must not wait for it. The v1 store's async client
must not either.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.hang import HangingServer
from tests.publish import Publisher
from tests.servers import InfluxDB, Mosquitto
from tests.service import ServiceProcess

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_sigterm_exits_within_10s_while_a_store_write_hangs(
    api: str, tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    hang = HangingServer().start()
    env = {
        "STREETWATCH_MQTT__PORT": str(mosquitto.port),
        "STREETWATCH_INFLUXDB__API": api,
        "STREETWATCH_INFLUXDB__URL": hang.url,
        "STREETWATCH_INFLUXDB__ORG": "city",
        "STREETWATCH_INFLUXDB__TOKEN": "t",
        "STREETWATCH_ALERTS__ENABLED": "false",
    }
    svc = ServiceProcess(tmp_path / "data", env).start()
    try:
        pub = Publisher(mosquitto.port)
        pub.send("city/jining/lamp/L1/telemetry", {"ts": time.time_ns() // 1_000_000, "on": True})
        pub.close()
        deadline = time.monotonic() + 20
        while hang.accepted == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert hang.accepted > 0, "the store never tried to write"
        time.sleep(0.5)  # the write is now blocked waiting for an answer
        rc, took = svc.terminate(timeout=40)
        assert rc == 0
        assert took < 10.0, f"took {took:.1f} s to stop"
    finally:
        svc.stop()
        hang.stop()

    # What the hung write held is still in the spool: it lands once a real store is there.
    again = ServiceProcess(
        tmp_path / "data",
        {
            "STREETWATCH_MQTT__PORT": str(mosquitto.port),
            "STREETWATCH_INFLUXDB__URL": influxdb.url,
            "STREETWATCH_ALERTS__ENABLED": "false",
        },
    ).start()
    try:
        again.wait_drained(timeout=30)
        assert influxdb.count("lamp") == 1
    finally:
        again.stop()
