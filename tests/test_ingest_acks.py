"""When acks leave, judged by the bytes on the wire between the service and a real Mosquitto.

The ack is the commit point (MQTT never redelivers on a live connection): a PUBACK that leaves
before the spool's fsync returns promises a reading the disk may not hold.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from ingest import mqtt_seam
from ingest.errors import MqttSeamError
from streetwatch.app import Service
from streetwatch.config import load_settings
from tests.mqtt_sniffer import SniffingProxy
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def make_service(data_dir: Path, port: int, protocol: str = "5", **storage: Any) -> Service:
    settings = load_settings(
        overrides={
            "mqtt": {
                "port": port,
                "protocol": protocol,
                "client_id": f"acks-{protocol}-{os.getpid()}",
            },
            "storage": {
                "data_dir": str(data_dir),
                "backend": "sqlite",
                "batch_interval_s": 0.2,
                **storage,
            },
            "alerts": {"enabled": False},
            "http": {"enabled": False},
        },
        env={},
    )
    return Service(settings)


class Gate:
    """An fsync that waits until opened; records when each call returned."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.returned: list[float] = []
        self.calls = 0

    def __call__(self, fd: int) -> None:
        self.calls += 1
        self.open.wait(60)
        os.fsync(fd)
        self.returned.append(time.monotonic())


def publish(port: int, messages: list[tuple[str, bytes]], qos: int = 1) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(t, p, qos=qos) for t, p in messages]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


async def wait_for(pred: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def proxy(mosquitto: Mosquitto) -> AsyncIterator[SniffingProxy]:
    p = await SniffingProxy(mosquitto.port).start()
    yield p
    await p.close()


def readings(n: int, device: str = "L1") -> list[tuple[str, bytes]]:
    ts = now_ms() - 60_000
    return [
        (f"city/jining/lamp/{device}/telemetry", b'{"ts": %d, "on": true}' % (ts + i))
        for i in range(n)
    ]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_no_puback_leaves_before_the_spools_fsync_returns(
    tmp_path: Path, mosquitto: Mosquitto, proxy: SniffingProxy, protocol: str
) -> None:
    service = make_service(tmp_path / "data", proxy.port, protocol)
    await service.start()
    try:
        await asyncio.wait_for(service.receiver.connected.wait(), 20)
        gate = Gate()
        service.spool.fsync = gate
        await asyncio.to_thread(publish, mosquitto.port, readings(30))
        await wait_for(lambda: service.metrics.messages >= 30)
        await wait_for(lambda: gate.calls >= 1)
        await asyncio.sleep(0.5)  # every chance for an early ack to reach the wire
        assert proxy.pubacks() == [], "a PUBACK left while the fsync was still running"
        gate.open.set()
        await wait_for(lambda: len(proxy.pubacks()) >= 30)
        first_fsync = min(gate.returned)
        assert all(p.at >= first_fsync for p in proxy.pubacks())
        received = {p.mid for p in proxy.received if p.type == 3}
        assert {p.mid for p in proxy.pubacks()} == received
    finally:
        await service.stop()


async def test_start_is_refused_when_gmqtt_would_ack_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A gmqtt whose QoS 1 path no longer goes through the method we take over.
    monkeypatch.setattr(mqtt_seam, "install", lambda client, hook: None)
    service = make_service(tmp_path / "data", 1)
    with pytest.raises(MqttSeamError, match=r"gmqtt .* >=0\.8,<0\.9"):
        await service.start()


def test_the_cli_refuses_to_start_with_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from streetwatch import cli

    monkeypatch.setattr(mqtt_seam, "install", lambda client, hook: None)
    monkeypatch.setenv("STREETWATCH_STORAGE__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STREETWATCH_STORAGE__BACKEND", "sqlite")
    monkeypatch.setenv("STREETWATCH_HTTP__ENABLED", "false")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("streetwatch: cannot start: gmqtt")


def stored(service: Service) -> int:
    return int(service.store.query("SELECT count(*) FROM points")[0][0])  # type: ignore[attr-defined]


async def test_qos0_readings_reach_the_store_within_the_batch_interval(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    service = make_service(tmp_path / "data", mosquitto.port)
    await service.start()
    try:
        await asyncio.wait_for(service.receiver.connected.wait(), 20)
        await asyncio.to_thread(publish, mosquitto.port, readings(50), 0)
        await wait_for(lambda: service.metrics.messages >= 50)
        # Nothing else arrives to push them along: they must still be written.
        await wait_for(lambda: stored(service) == 50, timeout=10)
    finally:
        await service.stop()


async def peak_held(service: Service, seconds: float) -> int:
    """The most payload bytes the receiver held in memory over a while.

    (Counting what crossed the wire says little here: loopback TCP buffers grow to 32 MB.)"""
    peak = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, service.receiver._held_bytes)
        await asyncio.sleep(0.005)
    return peak


def big_readings(n: int, size: int) -> list[tuple[str, bytes]]:
    ts = now_ms() - 60_000
    pad = b"x" * size  # an unknown field: ignored, but held in memory until acknowledged
    return [
        (
            f"city/jining/lamp/B{i % 7}/telemetry",
            b'{"ts": %d, "on": true, "pad": "%s"}' % (ts + i, pad),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_bytes_held_in_memory_are_bounded_and_the_broker_keeps_the_rest(
    tmp_path: Path, mosquitto: Mosquitto, proxy: SniffingProxy, protocol: str
) -> None:
    service = make_service(tmp_path / "data", proxy.port, protocol)
    service.settings.mqtt.max_inflight_bytes = 1024 * 1024
    await service.start()
    try:
        await asyncio.wait_for(service.receiver.connected.wait(), 20)
        gate = Gate()  # the disk is stuck: nothing can be acknowledged
        service.spool.fsync = gate
        n = 200
        pub = asyncio.create_task(
            asyncio.to_thread(publish, mosquitto.port, big_readings(n, 100_000))
        )
        await wait_for(lambda: gate.calls >= 1)
        peak = await peak_held(service, 2.0)
        assert service.metrics.value("streetwatch_mqtt_socket_paused") == 1
        # The limit, plus what one socket read and gmqtt's reader buffer had already taken.
        assert peak < 3 * 1024 * 1024, f"{peak} bytes held, 20 MB were on the way"
        assert proxy.pubacks() == []
        gate.open.set()
        await pub
        await wait_for(lambda: stored(service) == n, timeout=60)
        assert service.metrics.value("streetwatch_mqtt_socket_paused") == 0
    finally:
        gate.open.set()
        await service.stop()


async def test_a_full_spool_on_mqtt_311_stops_reading_the_socket(
    tmp_path: Path, mosquitto: Mosquitto, proxy: SniffingProxy
) -> None:
    service = make_service(tmp_path / "data", proxy.port, "3.1.1", spool_max_bytes=1024 * 1024)
    store_open = asyncio.Event()
    real_write = service.store.write

    async def stuck_write(lines: list[bytes]) -> None:
        await store_open.wait()  # the store is down
        await real_write(lines)

    service.store.write = stuck_write  # type: ignore[method-assign]
    await service.start()
    try:
        await asyncio.wait_for(service.receiver.connected.wait(), 20)
        filler = b"lamp,device=F on=true %d"
        service.spool.append([filler % i for i in range(40_000)])
        await service.spool.durable()
        assert service.spool.full
        n = 200
        pub = asyncio.create_task(
            asyncio.to_thread(publish, mosquitto.port, big_readings(n, 100_000))
        )
        await wait_for(lambda: service.metrics.value("streetwatch_mqtt_socket_paused") == 1)
        peak = await peak_held(service, 2.0)
        assert peak < 3 * 1024 * 1024, f"{peak} bytes held, 20 MB were on the way"
        assert proxy.pubacks() == []  # acks wait while the spool is full
        store_open.set()
        await pub
        await wait_for(lambda: stored(service) == n + 40_000, timeout=60)
    finally:
        store_open.set()
        await service.stop()


async def test_an_exception_of_any_class_from_one_message_never_blocks_the_window(
    tmp_path: Path, mosquitto: Mosquitto, proxy: SniffingProxy
) -> None:
    service = make_service(tmp_path / "data", proxy.port)
    real_decode = service.decoder.decode

    def decode(topic: str, payload: bytes, now: int) -> Any:
        if "/BUG/" in topic:
            raise KeyError("a bug of ours, not the device's")
        return real_decode(topic, payload, now)

    service.decoder.decode = decode  # type: ignore[method-assign]
    await service.start()
    try:
        await asyncio.wait_for(service.receiver.connected.wait(), 20)
        msgs = readings(10) + readings(1, device="BUG") + readings(10, device="L2")
        await asyncio.to_thread(publish, mosquitto.port, msgs)
        await wait_for(lambda: len(proxy.pubacks()) == 21)
        await wait_for(lambda: stored(service) == 20)
        assert service.metrics.rejected["internal_error"] == 1
        lines = (tmp_path / "data" / "deadletter.jsonl").read_text().splitlines()
        assert '"reason":"internal_error"' in lines[0] and "BUG" in lines[0]
    finally:
        await service.stop()


async def test_large_messages_are_decoded_off_the_event_loop(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    service = make_service(tmp_path / "data", mosquitto.port)
    real_decode = service.decoder.decode
    threads: list[tuple[int, int]] = []

    def decode(topic: str, payload: bytes, now: int) -> Any:
        threads.append((len(payload), threading.get_ident()))
        return real_decode(topic, payload, now)

    service.decoder.decode = decode  # type: ignore[method-assign]
    await service.start()
    try:
        await asyncio.wait_for(service.receiver.connected.wait(), 20)
        ts = now_ms() - 60_000
        backlog = (
            b"["
            + b",".join(b'{"ts": %d, "on": true, "dim": 50}' % (ts + i) for i in range(3000))
            + b"]"
        )
        await asyncio.to_thread(
            publish,
            mosquitto.port,
            [("city/jining/lamp/GW1/telemetry", backlog), *readings(1)],
        )
        await wait_for(lambda: stored(service) == 3001)
        loop_thread = threading.get_ident()
        big = [t for n, t in threads if n > 16 * 1024]
        small = [t for n, t in threads if n <= 16 * 1024]
        assert big and all(t != loop_thread for t in big)
        assert small and all(t == loop_thread for t in small)
    finally:
        await service.stop()


async def test_a_batch_whose_spool_write_failed_is_retried_then_acknowledged(
    tmp_path: Path, mosquitto: Mosquitto, proxy: SniffingProxy
) -> None:
    from tests.test_spool_faults import FlakyFsync

    service = make_service(tmp_path / "data", proxy.port)
    await service.start()
    try:
        await asyncio.wait_for(service.receiver.connected.wait(), 20)
        flaky = FlakyFsync(fail=3)  # the disk refuses three times, then recovers
        service.spool.fsync = flaky
        await asyncio.to_thread(publish, mosquitto.port, readings(10))
        await wait_for(lambda: len(proxy.pubacks()) == 10, timeout=30)
        assert [ok for _, _, ok in flaky.calls][:3] == [False, False, False]
        assert service.metrics.spool_errors >= 3
        await wait_for(lambda: stored(service) == 10)
        assert service.health()["reasons"] == []  # recovered: nothing left to say
    finally:
        await service.stop()


async def test_a_long_pause_does_not_make_gmqtt_drop_the_link(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    service = make_service(tmp_path / "data", mosquitto.port, "3.1.1", spool_max_bytes=1024 * 1024)
    service.settings.mqtt.keepalive_s = 5
    store_open = asyncio.Event()
    real_write = service.store.write

    async def stuck_write(lines: list[bytes]) -> None:
        await store_open.wait()
        await real_write(lines)

    service.store.write = stuck_write  # type: ignore[method-assign]
    await service.start()
    try:
        await asyncio.wait_for(service.receiver.connected.wait(), 20)
        service.spool.append([b"lamp,device=F on=true %d" % i for i in range(40_000)])
        await service.spool.durable()
        await asyncio.to_thread(publish, mosquitto.port, readings(5))
        await wait_for(lambda: service.receiver.paused)
        await asyncio.sleep(13)  # more than gmqtt's 2 x keepalive without reading a byte
        assert service.metrics.value("streetwatch_mqtt_connects_total") == 1
        assert service.receiver.connected.is_set()
        store_open.set()
        await wait_for(lambda: stored(service) == 40_005, timeout=60)
        assert not service.receiver.paused
    finally:
        store_open.set()
        await service.stop()


async def test_qos0_readings_wait_for_a_full_spool_like_any_other(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    service = make_service(tmp_path / "data", mosquitto.port, spool_max_bytes=1024 * 1024)
    store_open = asyncio.Event()
    real_write = service.store.write

    async def stuck_write(lines: list[bytes]) -> None:
        await store_open.wait()
        await real_write(lines)

    service.store.write = stuck_write  # type: ignore[method-assign]
    await service.start()
    try:
        await asyncio.wait_for(service.receiver.connected.wait(), 20)
        service.spool.append([b"lamp,device=F on=true %d" % i for i in range(40_000)])
        await service.spool.durable()
        before = service.spool.pending_bytes
        await asyncio.to_thread(publish, mosquitto.port, readings(5), 0)
        await wait_for(lambda: service.receiver.paused)
        await asyncio.sleep(0.5)
        assert service.spool.pending_bytes == before  # held back, not spooled past the limit
        store_open.set()
        await wait_for(lambda: stored(service) == 40_005, timeout=60)
    finally:
        store_open.set()
        await service.stop()
