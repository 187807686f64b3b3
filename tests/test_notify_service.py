"""Crew notices from `streetwatch run` (a real process, real Mosquitto, a config naming two crews),
killed with `kill -9` right after a raise: every notice still arrives, once per crew channel."""

from __future__ import annotations

import sqlite3
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from notify.receiver import JsonReceiver
from tests.notify_support import REGISTRY
from tests.publish import Publisher
from tests.servers import Mosquitto, free_port
from tests.service import ServiceProcess

pytestmark = pytest.mark.integration


def alerts(svc: ServiceProcess, device: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{svc.http_port}/api/alerts?device={device}"
    with urllib.request.urlopen(url, timeout=5) as r:
        items: list[dict[str, Any]] = orjson.loads(r.read())["items"]
    return items


def wait_alert(svc: ServiceProcess, device: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = alerts(svc, device)
        if found:
            return found[0]
        time.sleep(0.02)
    raise TimeoutError(f"no alert for {device}")


def raises(rx: JsonReceiver, alert_id: str) -> Counter[str]:
    """Raise notices (not clears) per receiver path that name the alert."""
    return Counter(
        n["path"]
        for n in rx.received
        if alert_id in n["message"] and not n["title"].startswith("【恢复】")
    )


class OutboxFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _one(self, sql: str, *args: Any) -> int:
        db = sqlite3.connect(self.path)
        try:
            return int(db.execute(sql, args).fetchone()[0])
        finally:
            db.close()

    def queued(self) -> int:
        return self._one("SELECT count(*) FROM notify_outbox WHERE state = 'queued'")

    def sent(self, crew: str | None) -> int:
        if crew is None:
            return self._one("SELECT count(*) FROM notify_outbox WHERE state = 'sent'")
        return self._one(
            "SELECT count(*) FROM notify_outbox WHERE state = 'sent' AND crew = ?", crew
        )


def test_kill_9_right_after_a_raise_loses_no_notice_and_sends_none_twice(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    rx = JsonReceiver(free_port())
    reg = tmp_path / "registry.csv"
    reg.write_text(REGISTRY, encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "notify": {
                    "base_url": "http://127.0.0.1:8080",
                    "link_secret": "s3cret",
                    "retry_min_s": 0.2,
                    "retry_max_s": 1.0,
                    "crews": [
                        {"name": "运河路防汛班", "urls": [rx.url("flood")], "roads": ["运河路"]},
                        {
                            "name": "夜班总值班",
                            "urls": [rx.url("night")],
                            "kinds": ["waterlevel"],
                            "min_severity": "minor",
                        },
                    ],
                }
            },
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    env = {
        "STREETWATCH_MQTT__PORT": str(mosquitto.port),
        "STREETWATCH_STORAGE__BACKEND": "sqlite",
        "STREETWATCH_REGISTRY__PATH": str(reg),
        "STREETWATCH_ALERTS__MQTT__ENABLED": "false",
    }
    svc = ServiceProcess(tmp_path / "data", env, config=config).start()
    pub = Publisher(mosquitto.port)
    try:
        # 1. The receiver is down: the notice cannot have gone out when the process dies.
        now = time.time_ns() // 1_000_000
        pub.send("city/jining/waterlevel/WL-017/telemetry", {"ts": now, "depth_cm": 45.0})
        first = wait_alert(svc, "WL-017")
        svc.kill9()
        rx.start()
        svc.start()
        rx.wait(lambda got: set(raises(rx, first["id"])) == {"/flood", "/night"}, 60)

        # 2. The receiver is up: kill -9 the moment an alert exists, whether or not it went out.
        pub.send("city/jining/waterlevel/WL-099/telemetry", {"ts": now, "depth_cm": 45.0})
        second = wait_alert(svc, "WL-099")
        svc.kill9()
        svc.start()
        outbox = OutboxFile(tmp_path / "data" / "alerts.sqlite")
        deadline = time.monotonic() + 30
        while outbox.queued() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)  # a restart that re-sent anything would have done so by now
        assert outbox.queued() == 0
        # Every notice row (one per change and crew channel) arrived; none twice, except that the
        # kill may land in the one documented window (after the receiver's answer, before the row
        # is marked sent), which repeats that one notice.
        repeats = 0
        for crew, path in (("运河路防汛班", "/flood"), ("夜班总值班", "/night")):
            got = sum(1 for n in rx.received if n["path"] == path)
            assert outbox.sent(crew) <= got
            repeats += got - outbox.sent(crew)
        assert repeats <= 1
        assert raises(rx, first["id"])["/flood"] >= 1
        assert raises(rx, second["id"])["/night"] >= 1  # unregistered: only the kinds crew
        # The notices carry a one-tap ack link for their crew.
        flood = next(n for n in rx.received if n["path"] == "/flood")
        assert f"/a/{first['id']}?c=" in flood["message"]
        print(
            f"\nkill -9 right after a raise: {len(rx.received)} notices received for"
            f" {outbox.sent(None)} queued (per change and channel), repeats {repeats}"
        )
    finally:
        pub.close()
        svc.stop()
        rx.stop()
