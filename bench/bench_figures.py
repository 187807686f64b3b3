"""Figures on a city's worth of data: /api/series for 24 h of one device and for a night of 790
lamps (all lamps' power, mean/min/max per step), and /api/kpi/lighting for that night, from SQLite
and from a real InfluxDB 1.x (started here on a free port when `influxd` is installed).

    .venv/bin/python -m bench.bench_figures [--lamps 790] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from devices.registry import load_registry
from figures.api import build_router
from figures.lighting import night_of
from figures.service import Figures
from ingest.stores.influx_v1 import InfluxV1Store
from ingest.stores.sqlite import SqliteStore
from streetwatch.config import load_settings


def registry_csv(lamps: int) -> str:
    rows = ["device_id,kind,road,road_class,cabinet,rated_w,point,lat,lon,report_interval_s"]
    for i in range(lamps):
        road = f"路{i // 40:02d}"
        rows.append(
            f"L{i:04d},lamp,{road},main,C{i // 20:03d},150,,35.4,{116.5 + i * 1e-4:.4f},300"
        )
    rows.append("W0001,waterlevel,运河路,main,,,下穿,35.41,116.55,60")
    return "\n".join(rows) + "\n"


def lines_for(lamps: int, start: int, end: int) -> list[bytes]:
    out = []
    for t in range(start // 300_000 * 300_000, end, 300_000):
        for i in range(lamps):
            on = "false" if i % 50 == 0 else "true"
            out.append(
                f"lamp,device=L{i:04d} on={on},power={140 + i % 7}.0,voltage=221.0 {t}".encode()
            )
    for t in range(end - 86_400_000, end, 60_000):
        out.append(
            f"waterlevel,device=W0001 depth_cm={(t // 60_000) % 30}.0,rain_mm=0.2 {t}".encode()
        )
    return out


async def fill(store: Any, lines: list[bytes]) -> float:
    t0 = time.perf_counter()
    await store.start()
    for i in range(0, len(lines), 5000):
        await store.write(lines[i : i + 5000])
    await store.aclose()
    return time.perf_counter() - t0


async def timed(
    client: httpx.AsyncClient, url: str, params: dict[str, str], repeat: int
) -> tuple[float, dict[str, Any]]:
    times = []
    body: dict[str, Any] = {}
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = await client.get(url, params=params)
        times.append(time.perf_counter() - t0)
        r.raise_for_status()
        body = r.json()
    return statistics.median(times) * 1000, body


async def measure(
    name: str, settings: Any, registry: Any, start: int, end: int, repeat: int
) -> None:
    figures = Figures(settings, registry, clock=lambda: end + 3_600_000)
    app = FastAPI()
    app.include_router(build_router(figures, None))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://bench", timeout=120
    ) as client:
        ms, body = await timed(
            client,
            "/api/series",
            {"device": "W0001", "field": "depth_cm", "from": str(end - 86_400_000), "to": str(end)},
            repeat,
        )
        print(
            f"{name:8} series 24 h of one point        {ms:8.1f} ms  ({len(body['t'])} points from {sum(body['n'])} readings)"
        )
        ms, body = await timed(
            client,
            "/api/series",
            {"device": "L0001", "field": "power", "from": str(start), "to": str(end)},
            repeat,
        )
        print(
            f"{name:8} series a night of one lamp      {ms:8.1f} ms  ({len(body['t'])} points from {sum(body['n'])} readings)"
        )
        ms, body = await timed(
            client,
            "/api/series",
            {"kind": "lamp", "field": "power", "from": str(start), "to": str(end)},
            repeat,
        )
        print(
            f"{name:8} series a night of all lamps     {ms:8.1f} ms  ({len(body['t'])} points from {sum(body['n'])} readings)"
        )
        date = dt.datetime.fromtimestamp(start / 1000, figures.sun.tz).date()
        ms, body = await timed(client, "/api/kpi/lighting", {"date": date.isoformat()}, repeat)
        print(
            f"{name:8} lighting rate of that night     {ms:8.1f} ms  (overall {body['overall']['rate']} %)"
        )
    await figures.aclose()


async def main_async(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-figures-"))
    try:
        reg = work / "registry.csv"
        reg.write_text(registry_csv(args.lamps), encoding="utf-8")
        registry = load_registry(reg)
        base = load_settings(overrides={"registry": {"path": str(reg)}}, env={})
        sun_date = dt.date.today() - dt.timedelta(days=3)
        from devices.sun import SunTimes

        start, end = night_of(SunTimes(base.location), sun_date, base.rules.lamp_dark)
        lines = lines_for(args.lamps, start - 1_800_000, end + 1_800_000)
        print(
            f"{args.lamps} lamps, a night of {(end - start) / 3_600_000:.1f} h: {len(lines)} points"
        )
        sq = load_settings(
            overrides={
                "registry": {"path": str(reg)},
                "storage": {"backend": "sqlite", "data_dir": str(work / "sq")},
            },
            env={},
        )
        took = await fill(SqliteStore(sq.data_dir / "points.sqlite"), lines)
        print(f"sqlite   filled in {took:.1f} s")
        await measure("sqlite", sq, registry, start, end, args.repeat)
        if shutil.which("influxd") is None:
            print("influxd not installed: InfluxDB skipped")
            return
        from tests.servers import InfluxDB

        with InfluxDB(work / "influx").start() as server:
            ix = load_settings(
                overrides={"registry": {"path": str(reg)}, "influxdb": {"url": server.url}}, env={}
            )
            took = await fill(InfluxV1Store(ix.influxdb), lines)
            print(f"influxdb filled in {took:.1f} s")
            await measure("influxdb", ix, registry, start, end, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lamps", type=int, default=790)
    parser.add_argument("--repeat", type=int, default=5)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
