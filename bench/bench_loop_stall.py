"""How long the event loop stalls while the ingest takes hostile or huge messages.

Feeds batches straight into the receiver's processing (decode → dead-letter → lines → spool →
fsync, no broker) while a 1 ms ticker measures the longest gap the loop had: that gap is how long
an alert or an HTTP request would have waited. Goal: under 50 ms for any one message. Prints
figures; never asserts timing.

    .venv/bin/python bench/bench_loop_stall.py
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streetwatch.app import Service
from streetwatch.config import load_settings


def cases(now: int) -> dict[str, bytes]:
    good = [{"ts": now - i, "on": True, "dim": 50, "voltage": 220.5} for i in range(4000)]
    return {
        "gateway array, 4000 good readings (~200 kB)": orjson.dumps(good),
        "gateway array, 120,000 bad items (~240 kB)": b"[" + b",".join([b"1"] * 120_000) + b"]",
        "gateway array, 4000 readings out of range": orjson.dumps(
            [{**g, "voltage": 999} for g in good]
        ),
        "one reading": orjson.dumps(good[0]),
    }


async def longest_gap(stop: asyncio.Event) -> float:
    """The longest time the loop took to come back to a 1 ms timer, until `stop`."""
    worst = 0.0
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        worst = max(worst, now - last)
        last = now
    return worst


async def main() -> None:
    data = Path(tempfile.mkdtemp(prefix="sw-stall-"))
    settings = load_settings(
        overrides={
            "storage": {"data_dir": str(data), "backend": "sqlite"},
            "alerts": {"enabled": False},
            "http": {"enabled": False},
            "mqtt": {"port": 1},  # never connects: the batches are fed directly
        },
        env={},
    )
    service = Service(settings)
    await service.start()
    gc.freeze()  # as `streetwatch run` does after start
    receiver = service.receiver
    now = time.time_ns() // 1_000_000
    for name, payload in cases(now).items():
        stop = asyncio.Event()
        tick = asyncio.create_task(longest_gap(stop))
        await asyncio.sleep(0.01)
        t0 = time.perf_counter()
        for i in range(5):
            await receiver._process([(None, f"city/jining/lamp/GW{i}/telemetry", payload)], None)
        await service.wait_drained(10)  # the writer's share of the work counts too
        took = (time.perf_counter() - t0) / 5
        stop.set()
        worst = await tick
        print(
            f"{name}: {len(payload) / 1024:.0f} KiB, {took * 1000:.0f} ms per message to the store, "
            f"longest loop stall {worst * 1000:.1f} ms"
        )
    await service.stop()


if __name__ == "__main__":
    asyncio.run(main())
