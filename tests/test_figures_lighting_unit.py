"""Lit lamp-time, piece by piece: holding, the hold cap, outages, never heard, not_before."""

from __future__ import annotations

import datetime as dt

from devices.location import LocationConfig
from devices.registry import Device
from devices.sun import SunTimes
from figures.lighting import judge_lamps, lit_ms, night_of, summarise
from rules.config import RulesConfig

MIN = 60_000


def test_a_reading_holds_until_the_next_one_at_most_the_hold() -> None:
    window = (0, 100 * MIN)
    # lit at 0, silent until 50 (hold 15 min), dark at 50, lit at 60 until the end
    readings = [(0, True), (50 * MIN, False), (60 * MIN, True)]
    assert lit_ms(readings, window, 15 * MIN, []) == 15 * MIN + 15 * MIN
    # readings every 5 min: covered all along
    steady = [(t * MIN, True) for t in range(0, 100, 5)]
    assert lit_ms(steady, window, 15 * MIN, []) == 100 * MIN
    # an outage from 20 to 30 counts dark though the readings say lit
    assert lit_ms(steady, window, 15 * MIN, [(20 * MIN, 30 * MIN)]) == 90 * MIN
    # a reading before the window carries into it; nothing heard: all dark
    assert lit_ms([(-10 * MIN, True)], window, 15 * MIN, []) == 5 * MIN
    assert lit_ms([], window, 15 * MIN, []) == 0


def test_lamp_darks_judgement_counts_a_lamp_drawing_too_little_as_dark() -> None:
    sun = SunTimes(LocationConfig())
    rules = RulesConfig()
    date = dt.date(2026, 7, 1)
    start, end = night_of(sun, date, rules.lamp_dark)
    lamps = [
        Device("L1", "lamp", road="R", road_class="main", rated_w=150, report_interval_s=300),
        Device("L2", "lamp", road="R", road_class="main", rated_w=150, report_interval_s=300),
        Device("L3", "lamp", road="R", road_class="main", rated_w=150, report_interval_s=300),
    ]
    grid = range(start - 300_000, end + 300_000, 300_000)
    points = {
        "L1": [(t, {"on": True, "power": 140.0}) for t in grid],
        "L2": [(t, {"on": True, "power": 5.0}) for t in grid],  # relay on, light source dead
    }
    nights = judge_lamps(lamps, points, {}, rules, sun, date, 3.0)
    assert [n.lit_ms for n in nights] == [end - start, 0, 0]
    body = summarise(nights, {"main": 98.0})
    assert body["by_road"][0]["rate"] == 33.3 and body["by_road"][0]["ok"] is False
    # not_before: time before it is not counted at all
    half = (start + end) // 2
    cut = judge_lamps(lamps, points, {}, rules, sun, date, 3.0, not_before_ms=half)
    assert cut[0].should_ms == end - half and cut[0].lit_ms == end - half


async def test_a_night_not_over_counts_only_up_to_now(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from devices.registry import Registry
    from figures.service import Figures
    from streetwatch.config import load_settings

    settings = load_settings(
        overrides={"storage": {"backend": "sqlite", "data_dir": str(tmp_path)}}, env={}
    )
    sun = SunTimes(settings.location)
    date = dt.date(2026, 7, 1)
    start, end = night_of(sun, date, settings.rules.lamp_dark)
    now = {"ms": (start + end) // 2}
    lamp = Device("L1", "lamp", road="R", road_class="main", rated_w=150)
    figures = Figures(settings, Registry([lamp]), clock=lambda: now["ms"])
    try:
        half = await figures.lighting(date)
        assert half["overall"]["complete"] is False and half["overall"]["should_hours"] == round(
            (now["ms"] - start) / 3_600_000, 2
        )
        ahead = await figures.lighting(date + dt.timedelta(days=3))
        assert ahead["overall"]["rate"] is None and ahead["overall"]["should_hours"] == 0
        now["ms"] = end + 1
        assert (await figures.lighting(date))["overall"]["complete"] is True
    finally:
        await figures.aclose()
