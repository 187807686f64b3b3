"""Registry text in alert topics (contract §3) and an outlet that never dies of one alert, on a
REAL Mosquitto: a cabinet named `C#1` once stopped the whole alert feed for good."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import orjson
import pytest

from alerts.mqtt_outlet import MqttOutlet
from alerts.service import Alerting
from alerts.testing import T0, cond
from devices.registry import Device, Registry
from devices.topics import alert_topic, topic_safe
from tests.servers import Mosquitto
from tests.test_alerts_mqtt import PREFIX, retained, settings_for, until

pytestmark = pytest.mark.timeout(60)


def test_topic_safe_encodes_what_mqtt_topics_cannot_carry() -> None:
    assert topic_safe("C#1") == "C%231"
    assert topic_safe("a/b+c#d%e") == "a%2Fb%2Bc%23d%25e"
    assert topic_safe("x\x00y\x1fz\x7f") == "x%00y%1Fz%7F"
    assert topic_safe("洸河路 1号柜") == "洸河路 1号柜"  # other text stays as it is
    assert topic_safe("L-001_a.b") == "L-001_a.b"
    assert topic_safe("") == ""
    assert alert_topic("city/jining", "cabinet_outage", "C#1") == (
        "city/jining/alerts/cabinet_outage/C%231"
    )


@pytest.mark.parametrize(
    "name",
    ["C#1", "C+2", "C/3", "C\x00 4", "柜\x07五", "100%", "柜\uffff", "\ufdd0x", "\U0010fffe"],
)
def test_the_encoding_is_reversible(name: str) -> None:
    from urllib.parse import unquote

    assert unquote(topic_safe(name)) == name


async def test_a_cabinet_named_with_wildcards_does_not_stop_the_feed(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    reg = Registry(
        [
            Device("L1", "lamp", road="洸河路", cabinet="C#1"),
            Device("wl-001", "waterlevel", road="洸河路", point="洸河路下穿"),
        ]
    )
    alerting = Alerting(settings_for(tmp_path, mosquitto.port), reg)
    await alerting.start()
    mqtt = alerting.mqtt
    assert mqtt is not None
    try:
        for i, name in enumerate(["C#1", "C+2", "C/3", "C\uffff4"]):
            alerting.sink.on_condition(
                cond("cabinet_outage", name, kind="cabinet", at=T0 + i, level=None, value=None)
            )
        alerting.sink.on_condition(cond(device="wl-001", at=T0 + 10))
        await until(lambda: mqtt.published >= 5 and mqtt.queued == 0, timeout=15)
        seen = await retained(mosquitto.port)
        assert sorted(seen) == sorted(
            [
                f"{PREFIX}/alerts/cabinet_outage/C%231",
                f"{PREFIX}/alerts/cabinet_outage/C%2B2",
                f"{PREFIX}/alerts/cabinet_outage/C%2F3",
                f"{PREFIX}/alerts/cabinet_outage/C%EF%BF%BF4",
                f"{PREFIX}/alerts/water_level/wl-001",
            ]
        )
        body = orjson.loads(seen[f"{PREFIX}/alerts/cabinet_outage/C%231"])
        assert body["device"] == "C#1"  # the JSON keeps the original name
        assert mqtt.failed == 0
    finally:
        await alerting.aclose()


async def test_an_alert_the_broker_refuses_is_counted_and_the_next_goes_out(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """An item that cannot be published (here: a topic the client refuses) is logged, counted and
    skipped; the publisher stays up and the following alerts are published."""
    # A broker that drops the connection on a change leaves its PUBACK to the timeout.
    settings = settings_for(tmp_path, mosquitto.port, mqtt={"publish_timeout_s": 0.5})
    outlet = MqttOutlet(settings.mqtt, settings.alerts.mqtt)
    await outlet.start()
    try:
        from alerts.mqtt_outlet import _Item

        outlet._queue.append(_Item(f"{PREFIX}/alerts/x/bad#", b"{}", 0))  # as the old code made
        outlet._queue.append(_Item(f"{PREFIX}/alerts/x/\x00", b"{}", 0))
        outlet._notify()
        ok = f"{PREFIX}/alerts/water_level/wl-002"
        outlet._queue.append(_Item(ok, orjson.dumps({"state": "active"}), 0))
        outlet._notify()
        await until(lambda: outlet.failed >= 2 and outlet.published >= 1, timeout=30)
        assert outlet._task is not None and not outlet._task.done()
        seen = await retained(mosquitto.port)
        assert ok in seen
        # ... and it keeps going after that.
        later = f"{PREFIX}/alerts/water_level/wl-003"
        outlet._queue.append(_Item(later, orjson.dumps({"state": "active"}), 0))
        outlet._notify()
        await until(lambda: outlet.published >= 2, timeout=15)
    finally:
        await outlet.aclose()


async def test_a_subscriber_can_read_back_the_original_name(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    del tmp_path
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="t-sub") as c:
        await c.subscribe(f"{PREFIX}/alerts/cabinet_outage/+", qos=1)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="t-pub") as p:
            await p.publish(alert_topic(PREFIX, "cabinet_outage", "C#1"), b"x", qos=1)
        async with asyncio.timeout(5):
            async for msg in c.messages:
                from urllib.parse import unquote

                assert unquote(str(msg.topic).rsplit("/", 1)[1]) == "C#1"
                break
