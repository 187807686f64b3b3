"""A daily report is kept (and never changes again) only once the readings acknowledged before it
are in the store: a few megabytes of last night still waiting in the spool is not caught up."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from streetwatch.app import Service
from streetwatch.config import load_settings
from tests.servers import Mosquitto
from tests.test_ingest_acks import publish, readings, stored, wait_for

pytestmark = pytest.mark.integration


async def test_a_store_behind_by_old_readings_is_not_caught_up(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    settings = load_settings(
        overrides={
            "mqtt": {"port": mosquitto.port, "client_id": f"caughtup-{os.getpid()}"},
            "storage": {
                "data_dir": str(tmp_path / "data"),
                "backend": "sqlite",
                "batch_interval_s": 0.2,
            },
            "alerts": {"enabled": False},
            "http": {"enabled": False},
        },
        env={},
    )
    service = Service(settings)
    store_open = asyncio.Event()
    real_write = service.store.write

    async def stuck_write(lines: list[bytes]) -> None:
        await store_open.wait()  # the store answers slowly: it is still taking last night
        await real_write(lines)

    service.store.write = stuck_write  # type: ignore[method-assign]
    await service.start()
    try:
        assert service.reports is not None
        await asyncio.wait_for(service.receiver.connected.wait(), 20)
        await asyncio.to_thread(publish, mosquitto.port, readings(20))
        await wait_for(lambda: service.spool.pending_bytes > 0)
        spooled = time.monotonic()
        while time.monotonic() - spooled < 15:  # the readings wait, the writer is not failing
            await asyncio.sleep(0.5)
        assert not service.writer.failing
        assert not service.reports.store_caught_up(), "a report now would miss those readings"
        store_open.set()
        await wait_for(lambda: stored(service) == 20)
        await wait_for(service.reports.store_caught_up)
    finally:
        store_open.set()
        await service.stop()
