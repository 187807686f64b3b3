"""One private Mosquitto, one private influxd and `streetwatch run` as a subprocess, wired together."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.servers import InfluxDB, Mosquitto
from tests.service import ServiceProcess


class Cluster:
    def __init__(self, workdir: Path, service_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.broker = Mosquitto(workdir / "mosquitto")
        self.influx = InfluxDB(workdir / "influxdb")
        self.data_dir = workdir / "data"
        self.extra_env = dict(service_env or {})
        self.service: ServiceProcess | None = None
        self.service_starts = 0

    def env(self) -> dict[str, str]:
        return {
            "STREETWATCH_MQTT__PORT": str(self.broker.port),
            "STREETWATCH_MQTT__RECONNECT_MAX_S": "2",
            "STREETWATCH_INFLUXDB__URL": self.influx.url,
            "STREETWATCH_STORAGE__RETRY_MAX_S": "2",
            "STREETWATCH_LOG__LEVEL": "WARNING",
            **self.extra_env,
        }

    def start(self) -> Cluster:
        self.broker.start()
        self.influx.start()
        self.start_service()
        return self

    def start_service(
        self, env: dict[str, str] | None = None, wait_connected: bool = True
    ) -> ServiceProcess:
        self.service = ServiceProcess(self.data_dir, {**self.env(), **(env or {})})
        # One log for all the service's lives: a kill's aftermath stays readable.
        self.service.log = self.workdir / "service.log"
        self.service_starts += 1
        self.service.start(wait_connected=wait_connected)
        return self.service

    @property
    def svc(self) -> ServiceProcess:
        assert self.service is not None
        return self.service

    def wait_drained(self, timeout: float = 120.0) -> None:
        """Until the service has an empty spool, no batch held back by a failed spool write
        (it is not in the spool yet) and a connected broker link (written all)."""
        self.svc.wait_health(
            lambda h: (
                h.get("spool_bytes") == 0
                and h.get("acks_held", 0) == 0
                and h.get("mqtt_connected") is True
            ),
            timeout,
        )

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
        self.broker.stop()
        self.influx.stop()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_until(pred: object, timeout: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(step)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")
