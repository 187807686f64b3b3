"""The control-centre page's load time in headless Chromium (Debian's), for a city of N lamps and
points with a day of readings: from navigation until the header figures and the map are drawn.

    .venv/bin/python -m bench.bench_page [--lamps 790] [--points 40] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from ingest.stores.sqlite import SqliteStore
from tests.liveapp import LiveApp


def registry(lamps: int, points: int) -> str:
    rows = ["device_id,kind,road,road_class,cabinet,rated_w,point,lat,lon,report_interval_s"]
    for i in range(lamps):
        road, k = divmod(i, 40)
        rows.append(
            f"L{i:04d},lamp,路{road:02d},main,C{i // 20:03d},150,,{35.38 + road * 0.003:.4f},{116.54 + k * 0.0015:.4f},300"
        )
    for i in range(points):
        rows.append(
            f"W{i:03d},waterlevel,运河路,main,,,点{i},{35.39 + i * 0.001:.4f},{116.60:.4f},60"
        )
    return "\n".join(rows) + "\n"


async def fill(path: Path, lamps: int, points: int) -> None:
    store = SqliteStore(path)
    await store.start()
    now = time.time_ns() // 1_000_000
    lines = []
    for t in range(now - 16 * 3_600_000, now, 300_000):
        lines += [f"lamp,device=L{i:04d} on=true,power=140.0 {t}".encode() for i in range(lamps)]
    for t in range(now - 24 * 3_600_000, now, 60_000):
        lines += [f"waterlevel,device=W{i:03d} depth_cm=3.0 {t}".encode() for i in range(points)]
    for i in range(0, len(lines), 5000):
        await store.write(lines[i : i + 5000])
    await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lamps", type=int, default=790)
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-page-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        asyncio.run(fill(data / "points.sqlite", args.lamps, args.points))
        with (
            LiveApp(data, registry_csv=registry(args.lamps, args.points)) as app,
            sync_playwright() as pw,
        ):
            browser = pw.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=["--headless", "--no-sandbox", "--disable-gpu"],
            )
            times = []
            for _ in range(args.repeat):
                page = browser.new_page(viewport={"width": 1920, "height": 1080})
                t0 = time.perf_counter()
                page.goto(app.url + "/")
                page.wait_for_selector("#map[data-ready='1']", timeout=60000)
                page.wait_for_function(
                    "document.querySelector('#kpi-lighting b').textContent !== '—'", timeout=60000
                )
                times.append((time.perf_counter() - t0) * 1000)
                dots = page.locator("#map circle.dev").count()
                page.close()
            browser.close()
    print(
        f"{args.lamps} lamps + {args.points} points ({dots} dots): page load to header and map drawn, "
        f"median {statistics.median(times):.0f} ms (first {times[0]:.0f} ms, {args.repeat} loads)"
    )


if __name__ == "__main__":
    main()
