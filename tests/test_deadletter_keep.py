"""Dead-letter records that hold the only copy of an acknowledged reading are never left out by
the per-minute budget (the budget is for floods of bad input, whose payload the device still has)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import orjson
import pytest

from streetwatch.app import Service
from streetwatch.config import load_settings
from tests.servers import InfluxDB, Mosquitto
from tests.test_ingest_acks import publish, wait_for

pytestmark = pytest.mark.integration


async def test_points_the_store_refuses_are_all_kept_whatever_the_budget(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB
) -> None:
    ts = time.time_ns() // 1_000_000 - 60_000
    # Someone wrote `on` as a number into this measurement before: InfluxDB now refuses every
    # boolean `on` of this shard (field type conflict), a 400 the writer dead-letters point by
    # point after the spool has let go of them.
    async with httpx.AsyncClient(base_url=influxdb.url) as http:
        await http.post("/query", data={"q": "CREATE DATABASE streetwatch"})
        resp = await http.post(
            "/write",
            params={"db": "streetwatch", "precision": "ms"},
            content=b"lamp,device=OLD on=1 %d\n" % ts,
        )
        assert resp.status_code == 204
    settings = load_settings(
        overrides={
            "mqtt": {"port": mosquitto.port, "client_id": f"dlkeep-{os.getpid()}"},
            "storage": {"data_dir": str(tmp_path / "data"), "batch_interval_s": 0.2},
            "influxdb": {"url": influxdb.url},
            "alerts": {"enabled": False},
            "http": {"enabled": False},
            "deadletter": {"per_topic_per_minute": 10, "max_per_minute": 50},
        },
        env={},
    )
    service = Service(settings)
    await service.start()
    n = 120
    try:
        await asyncio.wait_for(service.receiver.connected.wait(), 20)
        backlog = b"[" + b",".join(b'{"ts": %d, "on": true}' % (ts + i) for i in range(n)) + b"]"
        await asyncio.to_thread(
            publish, mosquitto.port, [("city/jining/lamp/GW/telemetry", backlog)]
        )
        await wait_for(lambda: service.metrics.rejected.get("store_rejected", 0) >= n, 120)
    finally:
        await service.stop()
    lines = (tmp_path / "data" / "deadletter.jsonl").read_text().splitlines()
    kept = [orjson.loads(x) for x in lines]
    refused = {r["item"]["line"] for r in kept if r["reason"] == "store_rejected"}
    assert len(refused) == n, f"{n - len(refused)} refused points left out of the dead-letter log"
