"""Restarts never clear an alert: only a reading (or the absence of one) does.

The real service process, a real Mosquitto and a real InfluxDB. Rule state is saved about once a
second and the alert store commits every change at once, so a `kill -9` right after a raise leaves a
store that knows more than the rule state. The restart must keep those alerts open.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.publish import Publisher
from tests.servers import InfluxDB, Mosquitto
from tests.service import ServiceProcess

pytestmark = pytest.mark.integration

POINTS = 6
REGISTRY = "device_id,kind,road,road_class,point,report_interval_s\n" + "".join(
    f"W{i},waterlevel,运河路,main,运河路下穿{i},60\n" for i in range(POINTS)
)


def _get(svc: ServiceProcess, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{svc.http_port}{path}", timeout=5) as r:
        return orjson.loads(r.read())


def _service(tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB) -> ServiceProcess:
    reg = tmp_path / "registry.csv"
    reg.write_text(REGISTRY, encoding="utf-8")
    return ServiceProcess(
        tmp_path / "data",
        {
            "STREETWATCH_MQTT__PORT": str(mosquitto.port),
            "STREETWATCH_INFLUXDB__URL": influxdb.url,
            "STREETWATCH_REGISTRY__PATH": str(reg),
        },
    )


# The flood starts 20 min ago, so that readings after the restart can be later than the rule's
# clear_for_s (10 min) without being in the future.
T0 = time.time_ns() // 1_000_000 - 20 * 60_000


def _flood(pub: Publisher, svc: ServiceProcess) -> dict[str, str]:
    """Raise a flood at every point; returns device → alert id once the store has them all."""
    for i in range(POINTS):
        pub.send(f"city/jining/waterlevel/W{i}/telemetry", {"ts": T0, "depth_cm": 30.0})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        items = _get(svc, "/api/alerts?rule=water_level&state=active")["items"]
        if len(items) == POINTS:
            return {a["device"]: a["id"] for a in items}
        time.sleep(0.02)
    raise TimeoutError("the flood alerts were not raised")


def _states_after_restart(svc: ServiceProcess) -> dict[str, tuple[str, bool]]:
    svc.start()
    items = _get(svc, "/api/alerts?rule=water_level")["items"]
    return {a["device"]: (a["state"], a["condition_active"]) for a in items}


def test_kill_9_right_after_a_raise_keeps_the_alerts_open(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    svc = _service(tmp_path, mosquitto, influxdb).start()
    pub = Publisher(mosquitto.port)
    try:
        ids = _flood(pub, svc)
        svc.kill9()  # well within the second between rule-state saves
        after = _states_after_restart(svc)
        assert after == {d: ("active", True) for d in ids}, after
        # The water is still there: the next reading keeps them open; nothing was doubled.
        for i in range(POINTS):
            pub.send(
                f"city/jining/waterlevel/W{i}/telemetry", {"ts": T0 + 60_000, "depth_cm": 31.0}
            )
        time.sleep(1.0)
        items = _get(svc, "/api/alerts?rule=water_level")["items"]
        assert sorted(a["id"] for a in items) == sorted(ids.values())
        assert {a["state"] for a in items} == {"active"}
    finally:
        pub.close()
        svc.stop()


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_an_unusable_rule_state_file_keeps_open_alerts_until_a_reading_decides(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, damage: str
) -> None:
    svc = _service(tmp_path, mosquitto, influxdb).start()
    pub = Publisher(mosquitto.port)
    try:
        ids = _flood(pub, svc)
        rc, _ = svc.terminate()
        assert rc == 0
        state = tmp_path / "data" / "rules-state.sqlite"
        for extra in ("", "-wal", "-shm"):
            Path(f"{state}{extra}").unlink(missing_ok=True)
        if damage == "corrupt":
            state.write_bytes(b"this is not a database" * 100)
        after = _states_after_restart(svc)
        assert after == {d: ("active", True) for d in ids}, after
        # A reading decides: the water is gone at W0 (the rule's clear_for_s later), still at W1.
        pub.send("city/jining/waterlevel/W0/telemetry", {"ts": T0 + 60_000, "depth_cm": 0.0})
        pub.send("city/jining/waterlevel/W0/telemetry", {"ts": T0 + 760_000, "depth_cm": 0.0})
        pub.send("city/jining/waterlevel/W1/telemetry", {"ts": T0 + 760_000, "depth_cm": 30.0})
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            states = {
                a["device"]: a["state"] for a in _get(svc, "/api/alerts?rule=water_level")["items"]
            }
            if states.get("W0") == "cleared":
                break
            time.sleep(0.1)
        assert states["W0"] == "cleared" and states["W1"] == "active", states
    finally:
        pub.close()
        svc.stop()


async def test_a_stop_during_a_rule_state_save_waits_for_it_and_loses_nothing(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """SIGTERM's stop cancels the tick loop; a save it had in a worker thread must finish before
    the final save starts (one SQLite file, never two writers), and every device is saved once."""
    import asyncio
    import threading

    from rules.engine import RuleEngine
    from rules.testing import water
    from streetwatch.app import Service
    from streetwatch.config import load_settings

    reg = tmp_path / "registry.csv"
    reg.write_text(REGISTRY, encoding="utf-8")
    settings = load_settings(
        overrides={
            "storage": {"data_dir": str(tmp_path / "data"), "backend": "sqlite"},
            "registry": {"path": str(reg)},
            "mqtt": {"port": mosquitto.port},
            "http": {"enabled": False},
            "alerts": {"mqtt": {"enabled": False}},
        },
        env={},
    )
    service = Service(settings)
    await service.start()
    engine: RuleEngine = service.engine
    writes: list[tuple[float, float, list[str]]] = []
    real_write = engine.write_state
    entered = threading.Event()

    def slow_write(batch: Any) -> None:
        start = time.monotonic()
        entered.set()
        time.sleep(0.5)  # a slow disk
        real_write(batch)
        writes.append((start, time.monotonic(), [d for d, _ in batch.encoded.upserts]))

    engine.write_state = slow_write  # type: ignore[method-assign]
    for i in range(POINTS):
        engine.observe(water(f"W{i}", T0, 5))
    saving = asyncio.create_task(service._save_rule_state(limit=3))  # half of them
    await asyncio.to_thread(entered.wait, 5)
    saving.cancel()  # as stop() cancels the tick loop
    for i in range(POINTS):  # more changes arrive before the stop
        engine.observe(water(f"W{i}", T0 + 60_000, 6))
    await service.stop()
    assert len(writes) == 2, writes
    (_, e1, first), (s2, _, second) = writes
    assert e1 <= s2  # the final save started after the one in flight ended
    assert len(first) == 3 and sorted(second) == [f"W{i}" for i in range(POINTS)]
    again = RuleEngine(settings.rules, settings.location, service.registry, engine.env.sink,
                       state_path=tmp_path / "data" / "rules-state.sqlite")  # fmt: skip
    again.load_state()
    assert {d: again._devices[d].last_tel for d in (f"W{i}" for i in range(POINTS))} == {
        f"W{i}": T0 + 60_000 for i in range(POINTS)
    }


def test_after_a_config_change_and_a_restart_the_config_in_force_applies(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    svc = _service(tmp_path, mosquitto, influxdb).start()
    pub = Publisher(mosquitto.port)
    try:
        pub.send("city/jining/waterlevel/W0/telemetry", {"ts": T0, "depth_cm": 20.0})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            items = _get(svc, "/api/alerts?rule=water_level&device=W0")["items"]
            if items:
                break
            time.sleep(0.05)
        [before] = items
        assert (before["severity"], before["level"]) == ("major", 2)
        assert "resolution_due" in before
        rc, _ = svc.terminate()
        assert rc == 0
        # The city changes the levels (level 1 is major now) and the major time limits.
        svc.env["STREETWATCH_RULES__WATER_LEVEL__LEVELS"] = (
            '[{"at": 10, "severity": "major"}, {"at": 15, "severity": "critical"},'
            ' {"at": 27, "severity": "critical"}, {"at": 40, "severity": "critical"}]'
        )
        svc.env["STREETWATCH_ALERTS__SLA__MAJOR"] = '{"response": "10m", "resolution": null}'
        svc.start()
        [after] = _get(svc, "/api/alerts?rule=water_level&device=W0")["items"]
        assert after["id"] == before["id"] and after["state"] == "active"
        assert (after["severity"], after["level"]) == ("major", 2)  # a restart changes nothing
        assert "resolution_due" not in after  # null: no limit at all, never "overdue now"
        assert after["response_due"] != before["response_due"] and not after["overdue"]
        # Counted from when the service first saw it (a few seconds ago), not from 2 h later.
        left = _ms(after["response_due"]) - time.time_ns() // 1_000_000
        assert 8 * 60_000 < left < 10 * 60_000, left
        # The next change carries the severity of the config in force: level 1 is major now
        # (it was minor), and the major limits apply to it.
        pub.send("city/jining/waterlevel/W0/telemetry", {"ts": T0 + 60_000, "depth_cm": 11.0})
        pub.send("city/jining/waterlevel/W0/telemetry", {"ts": T0 + 700_000, "depth_cm": 11.0})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            [now] = _get(svc, "/api/alerts?rule=water_level&device=W0")["items"]
            if now["level"] == 1:
                break
            time.sleep(0.05)
        assert (now["level"], now["severity"]) == (1, "major")
        assert "resolution_due" not in now and not now["overdue"]
    finally:
        pub.close()
        svc.stop()


def _ms(text: str) -> int:
    from alerts.model import parse_time

    return parse_time(text)
