"""The rule engine's self-test: each shipped scenario, replayed at full speed into the real service
(real Mosquitto and InfluxDB), must raise exactly the alerts the scenario lists. The service runs
its default configuration (ingest.max_age 30 days): a scenario plays a recent night by default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import InfluxDB, Mosquitto
from tests.service import ServiceProcess

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("scenario", ["clear-night", "storm"])
def test_scenario_check_passes_against_the_real_service(
    scenario: str, tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    env = {**os.environ, "STREETWATCH_MQTT__PORT": str(mosquitto.port)}
    simulate = [sys.executable, "-m", "streetwatch.cli", "simulate", "--scenario", scenario]
    registry = tmp_path / "registry.csv"
    subprocess.run(
        [*simulate, "--write-registry", str(registry)], env=env, check=True, cwd=tmp_path
    )
    svc = ServiceProcess(
        tmp_path / "data",
        {
            "STREETWATCH_MQTT__PORT": str(mosquitto.port),
            "STREETWATCH_INFLUXDB__URL": influxdb.url,
            "STREETWATCH_REGISTRY__PATH": str(registry),
        },
    ).start()
    try:
        check = subprocess.run(
            [
                *simulate,
                "--check",
                "--api",
                f"http://127.0.0.1:{svc.http_port}",
                "--speed",
                "max",
                "--no-progress",
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert check.returncode == 0, check.stdout[-5000:] + check.stderr[-2000:]
        assert "PASS" in check.stdout
        # Every reading the scenario sent that was valid reached the store.
        svc.wait_drained(timeout=60)
        assert influxdb.count("lamp") > 10_000
    finally:
        rc, _ = svc.terminate()
    assert rc == 0
