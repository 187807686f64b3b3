"""The lighting rate (亮灯率): lit lamp-time ÷ lamp-time that should have been lit, per night.

Night and "lit" are lamp_dark's (`rules.lit.LitJudge`, the rule's own offsets and dark ratio,
with the lamp's road-class and device overrides). A reading's state holds until the next reading,
for at most `hold_intervals` × the lamp's report interval; time no reading covers (offline, never
heard) is dark, and so is time under an open `cabinet_outage` of the lamp's cabinet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from devices.registry import ROAD_CLASSES, Device
from devices.sun import SunTimes
from rules.config import RulesConfig, ScheduleRule
from rules.lit import LitJudge, resolve_rule

Interval = tuple[int, int]


def night_of(sun: SunTimes, date: dt.date, spec: ScheduleRule) -> Interval:
    """[sunset of `date` + offset, sunrise of the next day + offset) in epoch ms."""
    noon = int(dt.datetime.combine(date, dt.time(12), sun.tz).timestamp() * 1000)
    _, _, sunset = sun.day(noon)
    _, sunrise, _ = sun.day(noon + 86_400_000)
    return sunset + int(spec.sunset_offset_s * 1000), sunrise + int(spec.sunrise_offset_s * 1000)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def subtract(spans: list[Interval], holes: list[Interval]) -> int:
    """Total length of `spans` (merged) outside `holes` (merged)."""
    total = 0
    for a, b in spans:
        total += b - a
        for c, d in holes:
            lo, hi = max(a, c), min(b, d)
            if hi > lo:
                total -= hi - lo
    return total


def lit_ms(
    readings: Sequence[tuple[int, bool]],
    window: Interval,
    hold_ms: int,
    dark: list[Interval],
) -> int:
    """Lit time in `window` of one lamp: each (ts, lit) holds until the next reading, at most
    `hold_ms`; `dark` (merged) are spans forced dark (its cabinet out)."""
    start, end = window
    spans: list[Interval] = []
    for i, (ts, lit) in enumerate(readings):
        if not lit:
            continue
        until = ts + hold_ms
        if i + 1 < len(readings):
            until = min(until, readings[i + 1][0])
        a, b = max(ts, start), min(until, end)
        if b > a:
            spans.append((a, b))
    return subtract(merge(spans), dark)


@dataclass
class LampNight:
    device: Device
    window: Interval
    should_ms: int
    lit_ms: int


def judge_lamps(
    lamps: Sequence[Device],
    points: dict[str, list[tuple[int, dict[str, Any]]]],
    outages: dict[str, list[Interval]],
    rules: RulesConfig,
    sun: SunTimes,
    date: dt.date,
    hold_intervals: float,
    until_ms: int | None = None,
    not_before_ms: int | None = None,
) -> list[LampNight]:
    """Each registered lamp's night, judged by lamp_dark; `until_ms` cuts a night still running,
    `not_before_ms` its beginning (time before it is not counted at all)."""
    out: list[LampNight] = []
    base = rules.lamp_dark
    for lamp in lamps:
        spec = resolve_rule(base, lamp.road_class, lamp.device_id)
        assert isinstance(spec, ScheduleRule)
        judge = LitJudge(spec, lamp.rated_w, sun)
        start, end = night_of(sun, date, spec)
        if not_before_ms is not None:
            start = min(end, max(start, not_before_ms))
        if until_ms is not None:
            end = max(start, min(end, until_ms))
        readings = [
            (ts, judge.lit(bool(rec.get("on")), _num(rec.get("power")), ts))
            for ts, rec in points.get(lamp.device_id, [])
            if rec.get("on") is not None
        ]
        hold = int(hold_intervals * lamp.report_interval_s * 1000)
        dark = merge(outages.get(lamp.cabinet or "", [])) if lamp.cabinet else []
        out.append(
            LampNight(lamp, (start, end), end - start, lit_ms(readings, (start, end), hold, dark))
        )
    return out


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def rate(lit: int, should: int) -> float | None:
    return round(100.0 * lit / should, 1) if should > 0 else None


def summarise(nights: Sequence[LampNight], targets: dict[str, float]) -> dict[str, Any]:
    """The §7 body (without date/from/to): overall, by_road, by_class."""

    def entry(group: Sequence[LampNight], target: float | None) -> dict[str, Any]:
        # Exactly the contract's keys (§7); the lamp-hours behind the rate go in `overall` only.
        r = rate(sum(n.lit_ms for n in group), sum(n.should_ms for n in group))
        return {
            "lamps": len(group),
            "rate": r,
            "target": target,
            "ok": None if r is None or target is None else r >= target,
        }

    by_road: dict[tuple[str, str | None], list[LampNight]] = {}
    by_class: dict[str, list[LampNight]] = {}
    for n in nights:
        road = n.device.road or ""
        by_road.setdefault((road, n.device.road_class), []).append(n)
        if n.device.road_class:
            by_class.setdefault(n.device.road_class, []).append(n)
    roads = []
    for (road, road_class), group in by_road.items():
        target = targets.get(road_class) if road_class else None
        roads.append({"road": road, "road_class": road_class, **entry(group, target)})
    roads.sort(key=lambda r: (r["rate"] if r["rate"] is not None else 101.0, r["road"]))
    classes = [
        {"road_class": c, **entry(by_class[c], targets.get(c))}
        for c in ROAD_CLASSES
        if c in by_class
    ]
    # The whole city against the laxest target that applies; each road and class has its own.
    overall_target = min((targets[c] for c in by_class if c in targets), default=None)
    overall = entry(nights, overall_target)
    overall["lit_hours"] = round(sum(n.lit_ms for n in nights) / 3_600_000, 2)
    overall["should_hours"] = round(sum(n.should_ms for n in nights) / 3_600_000, 2)
    return {"overall": overall, "by_road": roads, "by_class": classes}
