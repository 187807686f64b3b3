"""Real Mosquitto and InfluxDB 1.x for tests and benchmarks, on free ports in temp dirs.

Never touches anything already running on the machine: every server gets its own port, config,
data directory and process, and is stopped by whoever started it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(
    port: int, timeout: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Mosquitto:
    """A private Mosquitto using the shipped deploy/mosquitto-dev.conf settings (persistence on)."""

    workdir: Path
    port: int = 0
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None
    extra: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)

    @property
    def conf(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def write_conf(self) -> None:
        shipped = (REPO / "deploy" / "mosquitto-dev.conf").read_text()
        lines = [
            ln
            for ln in shipped.splitlines()
            if not ln.strip().startswith(
                ("listener", "persistence_location", "log_dest", "pid_file")
            )
        ]
        lines += [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"persistence_location {self.workdir}/",
            f"log_dest file {self.workdir}/mosquitto.log",
            # As root, Mosquitto drops to the `mosquitto` user, which cannot write its persistence
            # file into a root-owned temp dir: queued messages and retained alerts would be lost
            # across restart(). Stay root for these private test brokers.
            *(["user root"] if os.geteuid() == 0 else []),
            *self.extra,
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> Mosquitto:
        self.write_conf()
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.workdir,
        )
        _wait_port(self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # SIGTERM saves the persistence file
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Mosquitto:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class InfluxDB:
    """A private influxd (Debian's 1.x) with its own meta/data/wal dirs."""

    workdir: Path
    port: int = 0
    database: str = "streetwatch"
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bind_port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_conf(self) -> Path:
        conf = self.workdir / "influxdb.conf"
        conf.write_text(
            f"""reporting-enabled = false
bind-address = "127.0.0.1:{self.bind_port}"
[meta]
  dir = "{self.workdir}/meta"
[data]
  dir = "{self.workdir}/data"
  wal-dir = "{self.workdir}/wal"
  query-log-enabled = false
  cache-max-memory-size = "1g"
  max-series-per-database = 0
  max-values-per-tag = 0
[http]
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
  max-body-size = 0
[monitor]
  store-enabled = false
[logging]
  level = "warn"
[continuous_queries]
  enabled = false
"""
        )
        return conf

    def start(self) -> InfluxDB:
        conf = self.write_conf()
        binary = shutil.which("influxd") or "/usr/bin/influxd"
        log = open(self.workdir / "influxd.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [binary, "run", "-config", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "INFLUXDB_DATA_QUERY_LOG_ENABLED": "false"},
        )
        _wait_port(self.port, timeout=30, proc=self.proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as r:
                    if r.status == 204:
                        break
            except OSError:
                time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> InfluxDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def query(self, q: str, database: str | None = None) -> list[dict[str, Any]]:
        """Run InfluxQL; return the series of the first statement (empty list when none)."""
        params = urllib.parse.urlencode({"q": q, "db": database or self.database, "epoch": "ms"})
        with urllib.request.urlopen(f"{self.url}/query?{params}", timeout=30) as r:
            body = orjson.loads(r.read())
        result = body["results"][0]
        if "error" in result:
            raise RuntimeError(result["error"])
        return list(result.get("series", []))

    def rows(self, q: str, database: str | None = None) -> list[dict[str, Any]]:
        """Rows as dicts (tags merged in when the query groups by them)."""
        out = []
        for series in self.query(q, database):
            tags = series.get("tags", {})
            for values in series["values"]:
                row = dict(zip(series["columns"], values, strict=True))
                row.update(tags)
                out.append(row)
        return out

    def count(self, measurement: str, database: str | None = None) -> int:
        # SELECT count(*) counts per field; count of the always-present field is the point count.
        field_name = {"lamp": "on", "waterlevel": "depth_cm", "device_event": "raised"}[measurement]
        series = self.query(f'SELECT count("{field_name}") FROM "{measurement}"', database)
        if not series:
            return 0
        return int(series[0]["values"][0][1])

    def create_database(self, name: str | None = None) -> None:
        data = urllib.parse.urlencode({"q": f'CREATE DATABASE "{name or self.database}"'}).encode()
        urllib.request.urlopen(f"{self.url}/query", data=data, timeout=10).read()
