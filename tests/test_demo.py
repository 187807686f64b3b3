"""`streetwatch demo`: what a newcomer runs first. Embedded broker, service, SQLite, simulated fleet."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson

from tests.servers import free_port


def get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=2) as r:
        return orjson.loads(r.read())


def test_demo_runs_embedded_stores_points_and_raises_alerts(tmp_path: Path) -> None:
    http_port, mqtt_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streetwatch.cli",
            "demo",
            "--duration",
            "40",
            "--port",
            str(http_port),
            "--mqtt-port",
            str(mqtt_port),
            "--data-dir",
            str(tmp_path / "demo"),
            "--speed",
            "120",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        faults = {"lamp_fault", "cabinet_outage", "lamp_day_burning", "water_level", "lamp_dark"}
        alerts: list[dict[str, object]] = []
        health: dict[str, object] = {}
        deadline = time.monotonic() + 35
        while time.monotonic() < deadline and not faults & {a["rule"] for a in alerts}:
            time.sleep(0.5)
            try:
                health = get(f"http://127.0.0.1:{http_port}/healthz")  # type: ignore[assignment]
                alerts = get(f"http://127.0.0.1:{http_port}/api/alerts")["items"]  # type: ignore[index]
            except OSError:
                continue
        assert health.get("mqtt_connected") is True, health
        assert health.get("registered_devices", 0) > 0
        assert alerts, "the demo's faults raised no alert"
        assert faults & {a["rule"] for a in alerts}, alerts
        time.sleep(3.0)  # the alerts' crew notices reach the demo's own receiver
        proc.send_signal(signal.SIGTERM)  # Ctrl-C / SIGTERM: a clean stop
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "control centre:" in out and f"http://127.0.0.1:{http_port}/" in out
    assert "📱 演示维修班 ← 【" in out and "告警编号：" in out  # notices printed as they arrive
    with sqlite3.connect(tmp_path / "demo" / "points.sqlite") as db:
        (points,) = db.execute("SELECT count(*) FROM points").fetchone()
    assert points > 50
