"""A cabinet outage that clears and comes back on the same alert (cleared, not yet closed, then
reactivated) is dark only while the outage was there: the hours between count as they were lit."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from alerts.store import AlertStore
from devices.registry import Device, Registry
from devices.sun import SunTimes
from figures.lighting import night_of
from figures.service import Figures, alerts_path
from ingest.stores.sqlite import SqliteStore
from rules.signals import Condition
from streetwatch.config import load_settings

HOUR = 3_600_000


def outage(at: int, active: bool) -> Condition:
    return Condition(
        rule="cabinet_outage",
        device="CB",
        kind="cabinet",
        active=active,
        severity="major",
        at_ms=at,
        message="cabinet CB out" if active else "",
    )


async def test_an_outage_that_comes_back_darkens_only_its_own_hours(tmp_path: Path) -> None:
    settings = load_settings(
        overrides={"storage": {"backend": "sqlite", "data_dir": str(tmp_path)}}, env={}
    )
    date = dt.date(2026, 11, 20)
    start, end = night_of(SunTimes(settings.location), date, settings.rules.lamp_dark)
    lamp = Device("L1", "lamp", road="R", road_class="main", cabinet="CB", rated_w=150)
    # The lamp reports lit every five minutes all night (its readings say the cabinet was out
    # for two separate hours; lamp_dark's judgement aside, the outage hours are dark).
    store = SqliteStore(tmp_path / "points.sqlite")
    await store.start()
    lines = [
        b"lamp,device=L1,cabinet=CB on=true,power=140.0 %d" % t
        for t in range(start - 300_000, end + 300_000, 300_000)
    ]
    await store.write(lines)
    await store.aclose()
    alerts = AlertStore(alerts_path(settings), clock=lambda: end + HOUR).open()
    for at, active in (
        (start + 1 * HOUR, True),
        (start + 2 * HOUR, False),
        (start + 5 * HOUR, True),  # back, on the same (cleared, not closed) alert
        (start + 6 * HOUR, False),
    ):
        alerts.on_condition(outage(at, active))
    alerts.shutdown()
    figures = Figures(settings, Registry([lamp]), clock=lambda: end + HOUR)
    try:
        body = await figures.lighting(date)
    finally:
        await figures.aclose()
    should = (end - start) / HOUR
    assert body["overall"]["should_hours"] == round(should, 2)
    assert body["overall"]["lit_hours"] == round(should - 2, 2)
