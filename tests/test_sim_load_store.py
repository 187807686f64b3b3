"""Load mode writes what a store can keep: against the real service and InfluxDB, every acked load
message becomes exactly one stored point (unique (device, ts), so none overwrites another)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from simulator.load import LoadOptions, run_load
from tests.servers import InfluxDB, Mosquitto
from tests.service import ServiceProcess

pytestmark = pytest.mark.integration


def test_every_acked_load_message_is_one_stored_point(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    svc = ServiceProcess(
        tmp_path / "data",
        {
            "STREETWATCH_MQTT__PORT": str(mosquitto.port),
            "STREETWATCH_INFLUXDB__URL": influxdb.url,
        },
    ).start()
    try:
        # Few devices flat out: each device sends many readings per millisecond tick.
        result = run_load(
            LoadOptions(
                port=mosquitto.port, rate=math.inf, duration_s=1.0, connections=2, devices=8
            )
        )
        assert result.errors == []
        assert result.acked == result.sent > 1000
        svc.wait_drained(timeout=120)
        deadline = time.monotonic() + 60
        while influxdb.count("lamp") < result.acked and time.monotonic() < deadline:
            time.sleep(0.5)
        assert influxdb.count("lamp") == result.acked
    finally:
        rc, _ = svc.terminate()
    assert rc == 0
