"""The control centre's figures in real headless Chromium: header tiles equal the API's, the map
draws every registered device at its place, a click opens the device's chart with its stored
readings, a new alert reaches the map without a reload; screenshots at 1920×1080 and phone size."""

from __future__ import annotations

import asyncio
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ingest.stores.sqlite import SqliteStore
from tests.liveapp import LiveApp
from tests.test_page import browser, page, sync_api  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser
expect = sync_api.expect

LAMPS = [(f"GH-{i:02d}", "洸河路", "main", 35.4100, 116.5500 + i * 0.0012) for i in range(12)] + [
    (f"HX-{i:02d}", "红星路 <b>x</b>", "branch", 35.4000 + i * 0.0010, 116.5700) for i in range(8)
]
POINTS = [("WL-01", "运河路下穿", 35.4050, 116.5600), ("WL-02", "建设路下穿", 35.4150, 116.5650)]


def registry_csv() -> str:
    lines = ["device_id,kind,road,road_class,cabinet,rated_w,point,lat,lon,report_interval_s"]
    for dev, road, cls, lat, lon in LAMPS:
        lines.append(f'{dev},lamp,"{road}",{cls},C-{dev[:2]},150,,{lat},{lon},300')
    for dev, point, lat, lon in POINTS:
        lines.append(f"{dev},waterlevel,运河路,main,,,{point},{lat},{lon},60")
    return "\n".join(lines) + "\n"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def fill_store(path: Path) -> int:
    """24 h of readings: lamps every 5 min (two dark), points every minute; returns W-01's count."""
    store = SqliteStore(path)
    await store.start()
    now = now_ms()
    lines: list[bytes] = []
    for t in range(now - 24 * 3_600_000, now, 300_000):
        for i, (dev, *_rest) in enumerate(LAMPS):
            on = "false" if i in (3, 14) else "true"
            power = 0.0 if on == "false" else 140.0 + i
            lines.append(f"lamp,device={dev} on={on},power={power},voltage=221.5 {t}".encode())
    w1 = 0
    for t in range(now - 24 * 3_600_000 + 30_000, now, 60_000):
        depth = max(0.0, 30.0 - abs((now - t) / 60_000 - 30) / 4)  # a storm peak half an hour ago
        for dev, *_rest in POINTS:
            lines.append(
                f"waterlevel,device={dev} depth_cm={depth},rain_mm=0.5,battery=88 {t}".encode()
            )
        w1 += 1
    for i in range(0, len(lines), 5000):
        await store.write(lines[i : i + 5000])
    await store.aclose()
    return w1


def artifacts_dir(tmp_path: Path) -> Path:
    where = Path(os.environ.get("STREETWATCH_ARTIFACTS", tmp_path / "artifacts"))
    where.mkdir(parents=True, exist_ok=True)
    return where


def test_header_map_panel_live_alert_and_screenshots(
    tmp_path: Path,
    page: sync_api.Page,  # noqa: F811
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # Playwright's sync API holds this thread's event loop: write the store from another thread.
    with ThreadPoolExecutor(1) as pool:
        readings = pool.submit(asyncio.run, fill_store(data / "points.sqlite")).result()
    with LiveApp(data, registry_csv=registry_csv()) as app:
        app.raise_alert(
            rule="water_level",
            device="WL-01",
            severity="critical",
            level=3,
            value=30.0,
            at=now_ms() - 3_600_000,
        )
        page.set_viewport_size({"width": 1920, "height": 1080})
        t0 = time.monotonic()
        page.goto(app.url + "/")
        expect(page.locator("#map")).to_have_attribute("data-ready", "1", timeout=15000)
        expect(page.locator("#kpi-lighting b")).not_to_have_text("—", timeout=15000)
        loaded = time.monotonic() - t0
        print(f"page load to map and header drawn: {loaded * 1000:.0f} ms")

        # Header figures are the API's.
        o = httpx.get(f"{app.url}/api/kpi/overview", timeout=30).json()
        expect(page.locator("#kpi-lighting b")).to_have_text(f"{o['lighting']['rate']}%")
        expect(page.locator("#kpi-online b")).to_have_text(f"{o['online']['rate']}%")
        expect(page.locator("#kpi-open b")).to_have_text(str(o["open_alerts"]["total"]))
        expect(page.locator("#kpi-flood b")).to_have_text(str(o["in_flood"]))
        expect(page.locator("#kpi-overdue b")).to_have_text(str(o["overdue"]))
        assert o["in_flood"] == 2 and o["open_alerts"]["total"] == 1
        expect(page.locator("#kpi-worst li")).to_have_count(len(o["lighting"]["worst_roads"]))
        # Registry text is shown as text, never as markup.
        expect(page.locator("#lighting-rows")).to_contain_text("红星路 <b>x</b>")
        assert page.locator("#lighting-rows b").count() == 0

        # Every registered device is drawn, each at its place (one linear map lon→x, lat→y).
        circles = page.locator("#map circle.dev")
        expect(circles).to_have_count(len(LAMPS) + len(POINTS))
        spots = page.eval_on_selector_all(
            "#map circle.dev",
            "cs => cs.map(c => { const r = c.getBoundingClientRect();"
            " return [c.dataset.device, +c.dataset.lat, +c.dataset.lon, r.x + r.width / 2, r.y + r.height / 2]; })",
        )
        west = min(spots, key=lambda s: s[2])
        east = max(spots, key=lambda s: s[2])
        south = min(spots, key=lambda s: s[1])
        north = max(spots, key=lambda s: s[1])
        kx = (east[3] - west[3]) / (east[2] - west[2])
        ky = (north[4] - south[4]) / (north[1] - south[1])
        assert kx > 0 and ky < 0  # east is right, north is up
        for dev, lat, lon, x, y in spots:
            assert abs(west[3] + (lon - west[2]) * kx - x) < 2, dev
            assert abs(south[4] + (lat - south[1]) * ky - y) < 2, dev
        registered = {d[0] for d in LAMPS} | {p[0] for p in POINTS}
        assert {s[0] for s in spots} == registered
        dark = page.locator('#map circle[data-device="GH-03"]')
        expect(dark).to_have_class("dev dark")
        expect(page.locator('#map circle[data-device="GH-04"]')).to_have_class("dev lit")
        expect(page.locator('#map circle[data-device="WL-01"]')).to_have_attribute(
            "data-alert", "critical"
        )

        # Click a point: its panel, open alert and 24 h chart with every stored reading.
        page.locator('#map circle[data-device="WL-01"]').click()
        expect(page.locator("#panel")).to_be_visible()
        expect(page.locator("#panel-title")).to_have_text("WL-01")
        expect(page.locator("#panel-alerts li")).to_have_count(1)
        depth = page.locator('#panel-charts .chart[data-field="depth_cm"]')
        expect(depth).to_have_attribute("data-total", str(readings), timeout=10000)
        expect(depth.locator("canvas")).to_have_count(1)
        series = httpx.get(
            f"{app.url}/api/series", params={"device": "WL-01", "field": "depth_cm"}, timeout=30
        ).json()
        assert max(series["max"]) == pytest.approx(30.0, abs=0.5)
        # A lamp: last night's power, voltage and on/off.
        page.locator('#map circle[data-device="GH-04"]').click()
        expect(page.locator("#panel-title")).to_have_text("GH-04")
        expect(page.locator('#panel-charts .chart[data-field="power"] canvas')).to_have_count(1)
        expect(page.locator('#panel-charts .chart[data-field="on"]')).to_have_attribute(
            "data-total", re.compile(r"[1-9]\d*")
        )

        # A new alert reaches the map without a reload, within 2 s.
        t1 = time.monotonic()
        app.raise_alert(
            rule="lamp_dark",
            device="GH-07",
            kind="lamp",
            severity="major",
            level=None,
            value=0.0,
            at=now_ms() - 60_000,
        )
        expect(page.locator('#map circle[data-device="GH-07"]')).to_have_attribute(
            "data-alert", "major", timeout=2000
        )
        print(f"new alert on the map after {(time.monotonic() - t1) * 1000:.0f} ms")
        # A cabinet's outage marks every lamp on it.
        app.raise_alert(
            rule="cabinet_outage",
            device="C-HX",
            kind="cabinet",
            severity="critical",
            level=None,
            value=8.0,
        )
        expect(page.locator('#map circle[data-device="HX-05"]')).to_have_attribute(
            "data-alert", "critical", timeout=2000
        )
        expect(page.locator('#map circle[data-device="GH-05"]')).not_to_have_attribute(
            "data-alert", "critical"
        )

        out = artifacts_dir(tmp_path)
        page.screenshot(path=str(out / "control-centre-1920x1080.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        expect(page.locator("#map")).to_have_attribute("data-ready", "1", timeout=15000)
        box = page.locator("#map").bounding_box()
        assert box is not None and box["width"] <= 390
        page.screenshot(path=str(out / "control-centre-phone.png"), full_page=True)
        print(f"screenshots in {out}")
