"""Acks on a disk that refuses writes: held until durable, all out once space returns."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

from tests.mqtt_sniffer import SniffingProxy
from tests.servers import Mosquitto
from tests.test_ingest_acks import make_service, proxy, publish, readings, stored, wait_for

pytestmark = pytest.mark.integration

__all__ = ["proxy"]  # the sniffing-proxy fixture, shared with test_ingest_acks


class BrokenDisk:
    """An fsync that fails with ENOSPC while `full` is set."""

    def __init__(self) -> None:
        self.full = True
        self.failed = 0

    def __call__(self, fd: int) -> None:
        if self.full:
            self.failed += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        os.fsync(fd)


async def test_held_acks_all_go_out_when_space_returns_and_health_says_so_until_then(
    tmp_path: Path, mosquitto: Mosquitto, proxy: SniffingProxy
) -> None:
    """Batches refused over several seconds (their own backoffs grown long) are acknowledged
    together once the disk takes writes again; /healthz is not ok while any ack is held."""
    service = make_service(tmp_path / "data", proxy.port)
    await service.start()
    try:
        await asyncio.wait_for(service.receiver.connected.wait(), 20)
        disk = BrokenDisk()
        service.spool.fsync = disk
        await asyncio.to_thread(publish, mosquitto.port, readings(10, "L1"))
        await wait_for(lambda: disk.failed >= 1)
        await asyncio.sleep(4.0)  # the first batch's backoff grows
        await asyncio.to_thread(publish, mosquitto.port, readings(10, "L2"))
        await asyncio.sleep(4.0)
        assert proxy.pubacks() == []
        health = service.health()
        assert health["reasons"] and health["acks_held"] == 20, health
        disk.full = False
        # Once /healthz stops naming a reason, no ack may still be held back.
        await wait_for(lambda: not service.health()["reasons"], timeout=60)
        await wait_for(lambda: len(proxy.pubacks()) == 20, timeout=2.0)
        assert service.metrics.acks == 20
        await wait_for(lambda: stored(service) == 20)
    finally:
        await service.stop()
