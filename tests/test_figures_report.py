"""The daily report on a scenario with known answers: cases acknowledged late and in time, one never
closed, a flood point over level 1; the report kept once made, its HTML escaped."""

from __future__ import annotations

import datetime as dt
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from zoneinfo import ZoneInfo

import orjson
import pytest

from alerts.sla import SlaPolicy
from alerts.store import AlertStore
from alerts.testing import Clock, cond
from devices.registry import load_registry
from figures.report import DailyReports
from figures.report_html import render_html
from figures.service import Figures
from ingest.stores.sqlite import SqliteStore
from streetwatch.config import load_settings

TZ = ZoneInfo("Asia/Shanghai")
DAY = dt.date(2024, 7, 3)
MIN = 60_000


def at(hour: int, minute: int = 0, day: dt.date = DAY) -> int:
    return int(dt.datetime.combine(day, dt.time(hour, minute), TZ).timestamp() * 1000)


REGISTRY = """device_id,kind,road,road_class,cabinet,rated_w,point,lat,lon,report_interval_s
L1,lamp,"<b>红星路</b>",main,C1,150,,35.41,116.58,300
L2,lamp,红星路,main,C1,150,,35.41,116.59,300
W1,waterlevel,运河路,main,,,"运河路 下穿 <script>x</script>",35.40,116.59,60
"""


@pytest.fixture
async def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    reg = tmp_path / "registry.csv"
    reg.write_text(REGISTRY, encoding="utf-8")
    settings = load_settings(
        overrides={
            "storage": {"backend": "sqlite", "data_dir": str(tmp_path / "data")},
            "registry": {"path": str(reg)},
        }
    )
    clock = Clock(at(17, 0))
    alerts = AlertStore(
        settings.data_dir / "alerts.sqlite",
        policy=SlaPolicy.from_config(settings.alerts.sla),
        clock=clock,
    ).open()
    store = SqliteStore(settings.data_dir / "points.sqlite")
    await store.start()
    depths = [(at(20, 0), 5.0), (at(20, 10), 12.0), (at(20, 20), 18.0), (at(20, 30), 8.0)]
    await store.write(
        [f"waterlevel,device=W1 depth_cm={d},rain_mm=3.0 {ts}".encode() for ts, d in depths]
    )
    figures = Figures(settings, load_registry(reg), clock=clock)
    reports = DailyReports(figures, settings.reports, settings.data_dir / "reports.sqlite")
    yield clock, alerts, figures, reports
    reports.close()
    await figures.aclose()
    await store.aclose()
    alerts.shutdown()


def play_the_day(clock: Clock, store: AlertStore) -> None:
    # 1. L1 dark (major: respond in 2 h): acknowledged after 3 h (late), closed after 5 h.
    clock.now = at(19, 0)
    store.on_condition(
        cond("lamp_dark", "L1", kind="lamp", severity="major", at=clock.now, road="红星路")
    )
    a1 = store.find_open("lamp_dark", "L1")
    # 2. W1 level 1 (critical: respond in 30 min): acknowledged after 10 min, closed after 2 h.
    clock.now = at(20, 10)
    store.on_condition(cond("water_level", "W1", severity="critical", at=clock.now, road="运河路"))
    a2 = store.find_open("water_level", "W1")
    # 3. L2 offline (major): acknowledged after 30 min, never closed.
    clock.now = at(21, 0)
    store.on_condition(
        cond("device_offline", "L2", kind="lamp", severity="major", at=clock.now, road="红星路")
    )
    a3 = store.find_open("device_offline", "L2")
    assert a1 and a2 and a3
    clock.now = at(20, 20)
    store.ack(a2.id, "crew")
    clock.now = at(21, 30)
    store.ack(a3.id, "crew")
    clock.now = at(22, 0)
    store.ack(a1.id, "crew")
    clock.now = at(22, 10)
    store.on_condition(cond("water_level", "W1", active=False, severity="critical", at=clock.now))
    store.close(a2.id, "crew")
    clock.now = at(23, 59)
    store.on_condition(
        cond("lamp_dark", "L1", active=False, kind="lamp", severity="major", at=clock.now)
    )
    clock.now = at(0, 0, DAY + dt.timedelta(days=1))
    store.close(a1.id, "crew")


async def test_daily_report_figures_on_a_known_day(setup) -> None:  # type: ignore[no-untyped-def]
    clock, store, _figures, reports = setup
    play_the_day(clock, store)
    clock.now = at(8, 0, DAY + dt.timedelta(days=1))
    report = await reports.get(DAY + dt.timedelta(days=1))
    assert report["provisional"] is False
    cases = report["cases"]["overall"]
    assert cases["opened"] == 3
    assert cases["acked_in_time"] == 2  # W1 after 10 min, L2 after 30 min; L1 after 3 h is late
    assert cases["closed"] == 2 and cases["closed_in_time"] == 2
    assert cases["still_open"] == 1
    assert cases["overdue"] == 1  # L1's response
    assert cases["mtta_min"] == round((180 + 10 + 30) / 3, 1)
    assert cases["mttr_min"] == round((300 + 120) / 2, 1)
    assert cases["closure_rate"] == 66.7
    rules = {r["rule"]: r for r in report["cases"]["by_rule"]}
    assert rules["lamp_dark"]["acked_in_time"] == 0 and rules["lamp_dark"]["overdue"] == 1
    assert rules["device_offline"]["still_open"] == 1
    roads = {r["road"]: r for r in report["cases"]["by_road"]}
    assert roads["红星路"]["opened"] == 2 and roads["运河路"]["opened"] == 1
    flood = report["flood"]
    assert [f["device"] for f in flood] == ["W1"]
    assert flood[0]["peak_cm"] == 18.0 and flood[0]["level"] == 2
    assert flood[0]["minutes_over_level1"] == 20
    # Never heard: both lamps and the point are offline, longest first (never heard first).
    assert {o["device"] for o in report["offline"]} == {"L1", "L2", "W1"}

    # Kept: asked again after more happened that day, the report is the same.
    clock.now = at(9, 0, DAY + dt.timedelta(days=1))
    store.on_condition(cond("lamp_dark", "L2", kind="lamp", severity="major", at=at(23, 0)))
    assert await reports.get(DAY + dt.timedelta(days=1)) == report

    html = render_html(report)
    assert "<script>x" not in html and "&lt;script&gt;" in html
    assert "<b>红星路" not in html
    assert "size: A4" in html


async def test_a_report_asked_for_before_its_time_is_provisional_and_not_kept(setup) -> None:  # type: ignore[no-untyped-def]
    clock, store, _figures, reports = setup
    clock.now = at(7, 0, DAY + dt.timedelta(days=1))
    early = await reports.get(DAY + dt.timedelta(days=1))
    assert early["provisional"] is True
    assert reports.stored(DAY + dt.timedelta(days=1)) is None
    play_the_day(clock, store)
    clock.now = at(8, 0, DAY + dt.timedelta(days=1))
    later = await reports.get(DAY + dt.timedelta(days=1))
    assert later["provisional"] is False and later["cases"]["overall"]["opened"] == 3


class _Hook(BaseHTTPRequestHandler):
    got: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        _Hook.got.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


async def test_the_morning_job_sends_once(setup) -> None:  # type: ignore[no-untyped-def]
    clock, _store, _figures, reports = setup
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.got.clear()
    try:
        url = f"json://127.0.0.1:{server.server_address[1]}/hook"
        reports.config = reports.config.model_copy(update={"send_to": [url]})
        clock.now = at(8, 0, DAY + dt.timedelta(days=1))
        await reports.run_daily()
        await reports.run_daily()  # a restart that morning: not sent twice
    finally:
        server.shutdown()
    assert len(_Hook.got) == 1
    assert "亮灯率" in orjson.loads(_Hook.got[0])["message"]


async def test_a_report_made_while_the_store_is_behind_is_not_kept(setup) -> None:  # type: ignore[no-untyped-def]
    clock, store, _figures, reports = setup
    play_the_day(clock, store)
    clock.now = at(8, 0, DAY + dt.timedelta(days=1))
    behind = True
    reports.store_caught_up = lambda: not behind
    early = await reports.get(DAY + dt.timedelta(days=1))
    assert early["provisional"] is True and reports.stored(DAY + dt.timedelta(days=1)) is None
    behind = False
    clock.now = at(8, 15, DAY + dt.timedelta(days=1))
    kept = await reports.get(DAY + dt.timedelta(days=1))
    assert kept["provisional"] is False and reports.stored(DAY + dt.timedelta(days=1)) == kept
