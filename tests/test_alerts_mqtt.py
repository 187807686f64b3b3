"""The alert service end to end against a REAL Mosquitto (the `mosquitto` fixture): retained alert
messages, removal on close, queueing through a broker outage, catching up after a service restart;
plus the in-memory hub, queue compaction and the SLA scheduler wiring."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest

from alerts.config import AlertsMqttConfig
from alerts.mqtt_outlet import MqttOutlet
from alerts.service import Alerting
from alerts.testing import T0, Clock, cond
from devices.registry import Device, Registry
from devices.topics import alert_topic
from streetwatch.config import Settings, load_settings
from tests.servers import Mosquitto

PREFIX = "city/jining"
pytestmark = pytest.mark.timeout(60)


def settings_for(tmp_path: Path, port: int, **alerts: Any) -> Settings:
    return load_settings(
        overrides={
            "mqtt": {
                "host": "127.0.0.1",
                "port": port,
                "topic_prefix": PREFIX,
                "reconnect_min_s": 0.05,
                "reconnect_max_s": 0.3,
            },
            "storage": {"data_dir": str(tmp_path / "data")},
            "http": {"token": "t"},
            "alerts": alerts,
        },
        env={},
    )


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def retained(port: int, wait: float = 0.4) -> dict[str, bytes]:
    """Every retained message under {prefix}/alerts/ as a fresh subscriber sees it."""
    out: dict[str, bytes] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"t-{uuid.uuid4().hex[:8]}") as c:
        await c.subscribe(f"{PREFIX}/alerts/#", qos=1)
        try:
            async with asyncio.timeout(wait):
                async for msg in c.messages:
                    assert msg.retain
                    out[str(msg.topic)] = bytes(msg.payload)  # type: ignore[arg-type]
        except TimeoutError:
            pass
    return out


def persistent(mosquitto: Mosquitto) -> Mosquitto:
    """The fixture's broker keeps retained messages across restarts (tests/servers.py stays root
    when run as root, so Mosquitto can write its persistence file)."""
    return mosquitto


def registry() -> Registry:
    return Registry([Device("wl-001", "waterlevel", road="洸河路", point="洸河路下穿")])


async def test_changes_are_retained_and_closing_removes_them(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    alerting = Alerting(settings_for(tmp_path, mosquitto.port), registry())
    await alerting.start()
    assert alerting.mqtt is not None
    live: list[tuple[str, bytes]] = []

    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="live-watcher") as watcher:
        await watcher.subscribe(f"{PREFIX}/alerts/#", qos=1)

        async def watch() -> None:
            async for msg in watcher.messages:
                live.append((str(msg.topic), bytes(msg.payload)))  # type: ignore[arg-type]

        watching = asyncio.create_task(watch())
        try:
            alerting.sink.on_condition(cond(at=T0, level=1))
            alerting.sink.on_condition(cond(at=T0 + 60_000, level=2, severity="major"))
            alert = alerting.store.find_open("water_level", "wl-001")
            assert alert is not None
            topic = alert_topic(PREFIX, "water_level", "wl-001")
            assert topic == "city/jining/alerts/water_level/wl-001"
            await until(lambda: alerting.mqtt.published >= 2 and alerting.mqtt.queued == 0)  # type: ignore[union-attr]

            seen = await retained(mosquitto.port)
            assert list(seen) == [topic]
            body = orjson.loads(seen[topic])
            assert body == alert.to_json()
            assert (body["state"], body["level"], body["road"]) == ("active", 2, "洸河路")

            alerting.store.ack(alert.id, "zhang.wei")
            alerting.sink.on_condition(cond(at=T0 + 120_000, active=False))
            alerting.store.close(alert.id, "li.na", "pumped")
            await until(lambda: alerting.mqtt.published >= 5 and alerting.mqtt.queued == 0)  # type: ignore[union-attr]
            assert await retained(mosquitto.port) == {}  # gone once closed
            await until(lambda: len(live) >= 5)
        finally:
            watching.cancel()
    states = [orjson.loads(p)["state"] if p else None for _, p in live]
    assert states == ["active", "active", "acknowledged", "cleared", None]  # every change, in order
    await alerting.aclose()


async def test_broker_outage_queues_then_flushes(tmp_path: Path, mosquitto: Mosquitto) -> None:
    alerting = Alerting(settings_for(tmp_path, mosquitto.port), registry())
    await alerting.start()
    mqtt = alerting.mqtt
    assert mqtt is not None
    alerting.sink.on_condition(cond(device="wl-001", at=T0))
    await until(lambda: mqtt.published >= 1 and mqtt.queued == 0)

    mosquitto.stop()
    started = time.perf_counter()
    for i in range(50):  # the rules keep going; publishing must not block them
        alerting.sink.on_condition(cond(device="wl-001", at=T0 + i + 1, value=20.0 + i))
    alerting.sink.on_condition(cond(device="wl-002", at=T0 + 100))
    wl2 = alerting.store.find_open("water_level", "wl-002")
    assert wl2 is not None
    alerting.store.dispatch(wl2.id, "zhang.wei", "crew 3")
    assert time.perf_counter() - started < 1.0
    await until(lambda: not mqtt.connected and mqtt.queued > 0)
    assert alerting.store.open_alerts()[0].value == 69.0

    mosquitto.start()  # same port, same persistence file
    # queued == 0 only says the last window left the queue; wait for its PUBACKs too (1 + 50 + the
    # second alert's raise and dispatch = 53 changes), or a fresh subscriber may see them live.
    await until(lambda: mqtt.queued == 0 and mqtt.connected and mqtt.published >= 53, timeout=15)
    seen = await retained(mosquitto.port)
    assert orjson.loads(seen[alert_topic(PREFIX, "water_level", "wl-001")])["value"] == 69.0
    wl2_body = orjson.loads(seen[alert_topic(PREFIX, "water_level", "wl-002")])
    assert (wl2_body["state"], wl2_body["assignee"]) == ("dispatched", "crew 3")
    assert mqtt.connects >= 2
    await alerting.aclose()


async def test_changes_made_while_stopping_are_published_after_restart(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The audit trail is the outbox: what the broker never acknowledged goes out at next start."""
    persistent(mosquitto)
    first = Alerting(settings_for(tmp_path, mosquitto.port), registry())
    await first.start()
    first.sink.on_condition(cond(device="wl-001", at=T0))
    await until(lambda: first.mqtt.published >= 1 and first.mqtt.queued == 0)  # type: ignore[union-attr]
    mosquitto.stop()
    first.sink.on_condition(cond(device="wl-002", at=T0 + 1))
    old = first.store.find_open("water_level", "wl-001")
    assert old is not None
    first.sink.on_condition(cond(device="wl-001", at=T0 + 2, active=False))
    first.store.close(old.id, "li.na")
    started = time.perf_counter()
    await first.aclose(timeout=1.0)  # the broker is away: gives up quickly, loses nothing
    assert time.perf_counter() - started < 2.0

    mosquitto.start()
    assert set(await retained(mosquitto.port)) == {alert_topic(PREFIX, "water_level", "wl-001")}
    second = Alerting(settings_for(tmp_path, mosquitto.port), registry())
    await second.start()
    await until(lambda: second.mqtt.published >= 2 and second.mqtt.queued == 0)  # type: ignore[union-attr]
    seen = await retained(mosquitto.port)
    assert set(seen) == {alert_topic(PREFIX, "water_level", "wl-002")}  # wl-001 closed: removed
    await second.aclose()


async def test_aclose_is_quick_when_the_broker_is_away(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    alerting = Alerting(settings_for(tmp_path, mosquitto.port), registry())
    await alerting.start()
    mosquitto.stop()
    alerting.sink.on_condition(cond())
    await until(lambda: not alerting.mqtt.connected)  # type: ignore[union-attr]
    started = time.perf_counter()
    await alerting.aclose()
    assert time.perf_counter() - started < 1.0
    assert not alerting.store.is_open
    assert all(t.done() for t in asyncio.all_tasks() if t.get_name() == "alerts-mqtt-publisher")


async def test_aclose_closes_the_store_even_when_cancelled(tmp_path: Path) -> None:
    alerting = Alerting(settings_for(tmp_path, 1), registry())  # nothing listens on port 1
    await alerting.start()
    assert alerting.mqtt is not None

    async def stuck(timeout: float = 0) -> None:
        await asyncio.sleep(3600)

    real_aclose = alerting.mqtt.aclose
    alerting.mqtt.aclose = stuck  # type: ignore[method-assign]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(alerting.aclose(), timeout=0.2)  # a caller's own limit
    assert not alerting.store.is_open
    await real_aclose(0.1)  # the test's own clean-up of the publisher task


async def test_first_start_publishes_open_alerts(tmp_path: Path, mosquitto: Mosquitto) -> None:
    # A store filled without an MQTT outlet (e.g. mqtt was switched off), then started with one.
    quiet = Alerting(settings_for(tmp_path, mosquitto.port, mqtt={"enabled": False}), registry())
    await quiet.start()
    quiet.sink.on_condition(cond(device="wl-009"))
    await quiet.aclose()
    loud = Alerting(settings_for(tmp_path, mosquitto.port), registry())
    await loud.start()
    await until(lambda: loud.mqtt.published >= 1)  # type: ignore[union-attr]
    assert set(await retained(mosquitto.port)) == {alert_topic(PREFIX, "water_level", "wl-009")}
    await loud.aclose()


# ---- without a broker ------------------------------------------------------------------------


def test_full_queue_keeps_the_latest_state_per_topic() -> None:
    settings = load_settings(env={})
    outlet = MqttOutlet(settings.mqtt, AlertsMqttConfig(queue_max=10))
    from alerts.store import AlertStore  # noqa: F401  (the outlet needs no store)

    alerts = []
    clock = Clock()
    for i in range(25):
        a = _alert(f"d{i % 3}", value=float(i), clock=clock)
        alerts.append(a)
        outlet.enqueue(a, seq=i + 1)
    assert outlet.queued <= 10 and outlet.compactions >= 1
    items = list(outlet._queue)
    latest = {}
    for item in items:
        latest[item.topic] = orjson.loads(item.payload)["value"]
    assert latest == {
        alert_topic(PREFIX, "water_level", "d0"): 24.0,
        alert_topic(PREFIX, "water_level", "d1"): 22.0,
        alert_topic(PREFIX, "water_level", "d2"): 23.0,
    }
    seqs = [item.seq for item in items]
    assert seqs == sorted(seqs)


def _alert(device: str, value: float, clock: Clock) -> Any:
    from alerts.model import Alert

    return Alert(
        id=device,
        rule="water_level",
        device=device,
        kind="waterlevel",
        severity="minor",
        state="active",
        message="m",
        raised_at=clock.now,
        updated_at=clock.now,
        value=value,
    )


async def test_hub_fans_out_to_subscribers(tmp_path: Path) -> None:
    alerting = Alerting(settings_for(tmp_path, 1, mqtt={"enabled": False}), registry())
    await alerting.start()
    with alerting.hub.subscribe() as one, alerting.hub.subscribe(maxsize=2) as two:
        alerting.sink.on_condition(cond(at=T0))
        alerting.sink.on_condition(cond(at=T0 + 1, level=2))
        alerting.sink.on_condition(cond(at=T0 + 2, level=3))
        got = [(await one.get())[1].action for _ in range(3)]
        assert got == ["raised", "updated", "updated"]
        assert two.lagged == 1 and two.pending() == 2  # the slow one lost the oldest, and knows
        alert, change = await two.get()
        assert change.action == "updated" and alert.level == 2
        assert alerting.hub.subscribers == 2
    assert alerting.hub.subscribers == 0
    await alerting.aclose()


async def test_sla_scheduler_runs_on_its_own(tmp_path: Path) -> None:
    clock = Clock()
    settings = settings_for(tmp_path, 1, mqtt={"enabled": False}, sla={"check_interval_s": 0.1})
    alerting = Alerting(settings, registry(), clock=clock)
    await alerting.start()
    assert alerting.scheduler is not None and alerting.scheduler.get_job("alerts-sla") is not None
    alerting.sink.on_condition(cond(severity="critical", at=T0))
    alert_id = alerting.store.open_alerts()[0].id
    clock.advance(31 * 60)  # past the 30-minute response limit
    await until(lambda: bool(alerting.store.get(alert_id).overdue), timeout=5)  # type: ignore[union-attr]
    actions = [c.action for c in alerting.store.history(alert_id)]
    assert actions == ["raised", "overdue"]
    await alerting.aclose()


async def test_disabled_alerting_swallows_conditions(tmp_path: Path) -> None:
    alerting = Alerting(settings_for(tmp_path, 1, enabled=False), registry())
    await alerting.start()
    alerting.sink.on_condition(cond())
    assert not alerting.store.is_open and alerting.mqtt is None
    await alerting.aclose()


async def test_collector_reports(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    alerting = Alerting(settings_for(tmp_path, 1, mqtt={"enabled": False}), registry())
    reg = CollectorRegistry()
    reg.register(alerting.collector)
    await alerting.start()
    alerting.sink.on_condition(cond())
    text = generate_latest(reg).decode()
    assert 'streetwatch_alerts_open{state="active"} 1.0' in text
    await alerting.aclose()
