"""/healthz says why the ingest is not writing: nothing stalls without saying so."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.servers import Mosquitto
from tests.test_ingest_acks import make_service, publish, readings, stored, wait_for

pytestmark = pytest.mark.integration


async def test_a_stuck_writer_and_a_dying_writer_are_reported_until_it_writes_again(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    service = make_service(tmp_path / "data", mosquitto.port, stuck_after_s=0.5)
    store_ok = asyncio.Event()
    real_write = service.store.write
    calls = [0]

    async def write(lines: list[bytes]) -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise ValueError("corrupt page in the store")  # not a StoreError: nobody foresaw it
        await store_ok.wait()
        await real_write(lines)

    service.store.write = write  # type: ignore[method-assign]
    await service.start()
    try:
        await asyncio.wait_for(service.receiver.connected.wait(), 20)
        await asyncio.to_thread(publish, mosquitto.port, readings(5))
        await wait_for(lambda: service.writer.metrics.writer_restarts == 1)
        health = service.health()
        assert health["status"] == "degraded"
        assert any("corrupt page" in r for r in health["reasons"]), health
        await wait_for(lambda: any("stuck" in r for r in service.health()["reasons"]))
        assert service.health()["oldest_unwritten_s"] >= 0.5
        store_ok.set()
        await wait_for(lambda: stored(service) == 5)
        await wait_for(lambda: service.health()["status"] == "ok")
        assert service.health()["reasons"] == []
        assert service.health()["writer_restarts"] == 1
    finally:
        store_ok.set()
        await service.stop()


async def test_a_full_spool_is_reported(tmp_path: Path, mosquitto: Mosquitto) -> None:
    service = make_service(tmp_path / "data", mosquitto.port, spool_max_bytes=1024 * 1024)
    store_ok = asyncio.Event()
    real_write = service.store.write

    async def write(lines: list[bytes]) -> None:
        await store_ok.wait()
        await real_write(lines)

    service.store.write = write  # type: ignore[method-assign]
    await service.start()
    try:
        service.spool.append([b"lamp,device=F on=true %d" % i for i in range(40_000)])
        await service.spool.durable()
        health = service.health()
        assert health["status"] == "degraded" and health["spool_full"] is True
        assert any("spool full" in r for r in health["reasons"])
        store_ok.set()
        await wait_for(lambda: service.health()["status"] == "ok", timeout=30)
    finally:
        store_ok.set()
        await service.stop()


async def test_a_burst_of_new_device_ids_is_stored_counted_and_warned(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    service = make_service(tmp_path / "data", mosquitto.port)
    service.settings.ingest.new_devices_warn_per_minute = 50
    await service.start()
    try:
        await asyncio.wait_for(service.receiver.connected.wait(), 20)
        msgs = [m for i in range(120) for m in readings(1, device=f"NEW-{i}")]
        await asyncio.to_thread(publish, mosquitto.port, msgs)
        await wait_for(lambda: stored(service) == 120)  # all stored: the contract ingests them
        health = service.health()
        assert health["status"] == "ok"  # a warning, not a fault
        assert health["new_devices_per_minute"] == 120
        assert any("new unregistered device ids" in w for w in health["warnings"])
        text = service.metrics.value("streetwatch_new_devices_total")
        assert text == 120
        assert service.metrics.value("streetwatch_new_devices_per_minute") == 120
    finally:
        await service.stop()
