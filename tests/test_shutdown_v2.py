"""SIGTERM with the v2 store's write hanging: exit 0 within 10 s, the reading kept in the spool.

influxdb-client's call blocks for its whole timeout (`influxdb.timeout_s`, default 30 s) when the
server accepts and never answers; shutdown must not wait for it.
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


def test_sigterm_exits_within_10s_while_a_v2_write_hangs(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    hang = HangingServer().start()
    env = {
        "STREETWATCH_MQTT__PORT": str(mosquitto.port),
        "STREETWATCH_INFLUXDB__API": "v2",
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
        assert hang.accepted > 0, "the v2 store never tried to write"
        time.sleep(0.5)  # the write is now blocked inside influxdb-client
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
