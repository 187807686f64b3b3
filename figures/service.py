"""The figures the control centre reads: lighting rate, online rate, flood board, case figures
and chart series, computed from the point store (through a `PointReader`) and the alert store."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alerts.model import RULES_WHO, rfc3339
from alerts.sla import SlaPolicy
from devices.kinds import KINDS
from devices.models import LampReading, WaterLevelReading
from devices.registry import Device, Registry
from devices.sun import SunTimes
from figures.alertlog import AlertLog
from figures.cases import day_cases
from figures.config import FiguresConfig
from figures.errors import BadQuery, UnknownDevice
from figures.lighting import Interval, judge_lamps, night_of, summarise
from figures.readers import PointReader, make_reader
from rules.config import LevelsRule, ScheduleRule
from rules.lit import LitJudge, resolve_rule

if TYPE_CHECKING:
    from streetwatch.config import Settings

DAY_MS = 86_400_000
# Fields a chart may ask for, per kind: the contract's numeric fields (the reading models own that
# list), and a lamp's relay.
SERIES_FIELDS: dict[str, tuple[str, ...]] = {
    "lamp": ("on", *LampReading.number_fields),
    "waterlevel": WaterLevelReading.number_fields,
}
TREND_WINDOW_MS = 10 * 60_000
FLOOD_LOOKBACK_MS = 6 * 3_600_000
TONIGHT_CACHE_MS = 20_000


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def alerts_path(settings: Settings) -> Path:
    path = Path(settings.alerts.db_file)
    return path if path.is_absolute() else settings.data_dir / path


class Figures:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        reader: PointReader | None = None,
        alerts: AlertLog | None = None,
        clock: Any = wall_ms,
    ) -> None:
        self.settings = settings
        self.config: FiguresConfig = settings.figures
        self.registry = registry
        self.reader = reader if reader is not None else make_reader(settings)
        self.alerts = alerts if alerts is not None else AlertLog(alerts_path(settings))
        self.sun = SunTimes(settings.location)
        self.policy = SlaPolicy.from_config(settings.alerts.sla)
        self.clock = clock
        self._tonight: tuple[int, dict[str, Any]] | None = None
        self._tonight_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self.reader.aclose()
        self.alerts.close()

    # ---- dates ------------------------------------------------------------------------------

    def today(self, now_ms: int | None = None) -> dt.date:
        return self.sun.local(self.clock() if now_ms is None else now_ms).date()

    def day_span(self, date: dt.date) -> Interval:
        start = dt.datetime.combine(date, dt.time(), self.sun.tz)
        end = dt.datetime.combine(date + dt.timedelta(days=1), dt.time(), self.sun.tz)
        return int(start.timestamp() * 1000), int(end.timestamp() * 1000)

    def current_night(self, now_ms: int) -> dt.date:
        """Tonight if it has begun, else the night that started yesterday (last night by day)."""
        today = self.today(now_ms)
        start, _ = night_of(self.sun, today, self.settings.rules.lamp_dark)
        return today if now_ms >= start else today - dt.timedelta(days=1)

    # ---- lighting rate ----------------------------------------------------------------------

    async def outages(self, start: int, end: int, now_ms: int) -> dict[str, list[Interval]]:
        out: dict[str, list[Interval]] = {}
        found = await self.alerts.overlapping("cabinet_outage", start, end)
        # One alert can hold several outages: cleared, then reactivated before anyone closed it.
        # Its audit trail tells them apart (raised_at … cleared_at would span the hours between).
        trails = await self.alerts.trails([a.id for a in found])
        for a in found:
            spans = outage_spans(trails.get(a.id, []), now_ms)
            if not spans:  # no trail (an older store): the alert's own times
                until = a.cleared_at if a.cleared_at is not None else now_ms
                if a.state == "closed" and a.cleared_at is None:
                    until = a.closed_at or a.updated_at
                spans = [(a.raised_at, until)]
            out.setdefault(a.device, []).extend(spans)
        return out

    async def lighting(self, date: dt.date | None = None) -> dict[str, Any]:
        if date is not None:
            return await self._lighting(date)
        # Tonight so far: every open page asks every half minute; a city's night takes about a
        # second to judge, so one answer serves everyone for TONIGHT_CACHE_MS.
        now = self.clock()
        cached = self._tonight
        if cached is not None and 0 <= now - cached[0] < TONIGHT_CACHE_MS:
            return cached[1]
        async with self._tonight_lock:
            cached = self._tonight
            if cached is not None and 0 <= self.clock() - cached[0] < TONIGHT_CACHE_MS:
                return cached[1]
            result = await self._lighting(None)
            self._tonight = (now, result)
            return result

    async def _lighting(self, date: dt.date | None) -> dict[str, Any]:
        now = self.clock()
        if date is None:
            date = self.current_night(now)
        # A night not over yet (tonight, or one asked for ahead) counts only up to now: time still
        # to come is neither lit nor dark.
        until: int | None = now
        base = night_of(self.sun, date, self.settings.rules.lamp_dark)
        lamps = self.registry.by_kind("lamp")
        longest_hold = max(
            (int(self.config.hold_intervals * d.report_interval_s * 1000) for d in lamps), default=0
        )
        # A little wider than the base night: road-class overrides may move a lamp's window.
        q_start = base[0] - longest_hold - 2 * 3_600_000
        q_end = base[1] + 2 * 3_600_000
        if until is not None and until < base[0]:
            until = base[0]
        points = await self.reader.points("lamp", ("on", "power"), q_start, q_end)
        outages = await self.outages(q_start, q_end, now)
        nights = judge_lamps(
            lamps,
            points,
            outages,
            self.settings.rules,
            self.sun,
            date,
            self.config.hold_intervals,
            until_ms=until,
            not_before_ms=(
                int(self.config.not_before.timestamp() * 1000) if self.config.not_before else None
            ),
        )
        body = summarise(nights, self.config.targets)
        to = base[1] if until is None else min(base[1], until)
        # Whether the night is over: in `overall`, so the top level is exactly the contract's.
        body["overall"]["complete"] = until is None or until >= base[1]
        return {"date": date.isoformat(), "from": rfc3339(base[0]), "to": rfc3339(to), **body}

    # ---- online rate ------------------------------------------------------------------------

    async def online(self) -> dict[str, Any]:
        now = self.clock()
        hold = self.config.hold_intervals
        seen: dict[str, int] = {}
        for kind, spec in KINDS.items():
            devices = self.registry.by_kind(kind)
            if not devices:
                continue
            longest = max(d.report_interval_s for d in devices)
            since = now - int(hold * longest * 1000)
            first = spec.reading_model.model_fields
            field = "on" if "on" in first else next(iter(SERIES_FIELDS.get(kind, ("rssi",))))
            for dev, (ts, _) in (await self.reader.last(spec.measurement, (field,), since)).items():
                seen[dev] = max(ts, seen.get(dev, ts))
        by_kind: dict[str, list[bool]] = {}
        by_road: dict[tuple[str, str], list[bool]] = {}
        devices_out: dict[str, dict[str, Any]] = {}
        for d in self.registry:
            last = seen.get(d.device_id)
            up = last is not None and now - last <= hold * d.report_interval_s * 1000
            by_kind.setdefault(d.kind, []).append(up)
            by_road.setdefault((d.kind, d.road or ""), []).append(up)
            devices_out[d.device_id] = {
                "online": up,
                "last_seen": rfc3339(last) if last is not None else None,
            }

        def entry(flags: list[bool]) -> dict[str, Any]:
            n = len(flags)
            return {"devices": n, "online": sum(flags), "rate": _pct(sum(flags), n)}

        everyone = [f for flags in by_kind.values() for f in flags]
        return {
            "at": rfc3339(now),
            "overall": entry(everyone),
            "by_kind": [{"kind": k, **entry(v)} for k, v in sorted(by_kind.items())],
            "by_road": [
                {"kind": k, "road": r, **entry(v)} for (k, r), v in sorted(by_road.items())
            ],
            "devices": devices_out,
        }

    # ---- flood board ------------------------------------------------------------------------

    def levels_of(self, d: Device) -> list[float]:
        spec = resolve_rule(self.settings.rules.water_level, d.road_class, d.device_id)
        assert isinstance(spec, LevelsRule)
        return sorted(level.at for level in spec.levels)

    async def flood(self) -> dict[str, Any]:
        now = self.clock()
        points = await self.reader.points(
            "waterlevel", ("depth_cm", "rain_mm", "battery"), now - FLOOD_LOOKBACK_MS, now + 60_000
        )
        board = []
        for d in self.registry.by_kind("waterlevel"):
            levels = self.levels_of(d)
            rows = [
                (ts, r) for ts, r in points.get(d.device_id, []) if r.get("depth_cm") is not None
            ]
            item: dict[str, Any] = {
                "device": d.device_id,
                "point": d.point,
                "road": d.road,
                "lat": d.lat,
                "lon": d.lon,
                "levels": levels,
            }
            if not rows:
                board.append({**item, "depth_cm": None, "level": 0, "trend": None})
                continue
            ts, last = rows[-1]
            depth = float(last["depth_cm"])
            level = sum(1 for at in levels if depth >= at)
            # The reading nearest to ten minutes before the latest one.
            ref = min(rows, key=lambda r: abs(r[0] - (ts - TREND_WINDOW_MS)))
            per10: float | None = None
            trend = "steady"
            if ref[0] < ts:
                per10 = round(
                    (depth - float(ref[1]["depth_cm"])) * TREND_WINDOW_MS / (ts - ref[0]), 1
                )
                trend = "rising" if per10 >= 1.0 else "receding" if per10 <= -1.0 else "steady"
            above_since = None
            if levels and depth >= levels[0]:
                above_since = ts
                for t, r in reversed(rows):
                    if float(r["depth_cm"]) < levels[0]:
                        break
                    above_since = t
            rain = sum(float(r.get("rain_mm") or 0) for t, r in rows if t > ts - 3_600_000)
            board.append(
                {
                    **item,
                    "depth_cm": depth,
                    "level": level,
                    "trend": trend,
                    "cm_per_10min": per10,
                    "rain_mm_1h": round(rain, 1),
                    "battery": last.get("battery"),
                    "at": rfc3339(ts),
                    "above_level1_since": rfc3339(above_since) if above_since else None,
                    "stale": now - ts > self.config.hold_intervals * d.report_interval_s * 1000,
                }
            )
        board.sort(key=lambda b: (-(b["level"] or 0), -(b.get("depth_cm") or 0), b["device"]))
        return {
            "at": rfc3339(now),
            "in_flood": sum(1 for b in board if b["level"] >= 1),
            "points": board,
        }

    # ---- cases ------------------------------------------------------------------------------

    async def cases(self, date: dt.date | None = None) -> dict[str, Any]:
        now = self.clock()
        date = date or self.today(now)
        start, end = self.day_span(date)
        raised = await self.alerts.raised_between(start, end)
        return {"date": date.isoformat(), **day_cases(raised, self.policy, now)}

    async def overview(self) -> dict[str, Any]:
        """The page header: tonight's rate and worst roads, online, open alerts, flood, overdue."""
        now = self.clock()
        lighting = await self.lighting()
        online = await self.online()
        flood = await self.flood()
        open_alerts = await self.alerts.open_alerts()
        by_severity = {s: 0 for s in ("critical", "major", "minor", "warning")}
        overdue = 0
        for a in open_alerts:
            by_severity[a.severity] = by_severity.get(a.severity, 0) + 1
            overdue += bool(a.overdue)
        worst = [r for r in lighting["by_road"] if r["rate"] is not None][:3]
        return {
            "at": rfc3339(now),
            "lighting": {
                "date": lighting["date"],
                "rate": lighting["overall"]["rate"],
                "worst_roads": worst,
            },
            "online": online["overall"],
            "open_alerts": {"total": len(open_alerts), "by_severity": by_severity},
            "in_flood": flood["in_flood"],
            "overdue": overdue,
        }

    # ---- the map ----------------------------------------------------------------------------

    async def devices(self) -> dict[str, Any]:
        """Every registered device with its place and state, for the map."""
        now = self.clock()
        online = (await self.online())["devices"]
        longest = max((d.report_interval_s for d in self.registry), default=300.0)
        since = now - int(self.config.hold_intervals * longest * 1000)
        lamps = await self.reader.last("lamp", ("on", "power"), since)
        water = await self.reader.last("waterlevel", ("depth_cm",), since)
        open_by_device: dict[str, list[str]] = {}
        for a in await self.alerts.open_alerts():
            open_by_device.setdefault(a.device, []).append(a.severity)
        items = []
        for d in self.registry:
            item: dict[str, Any] = {
                "device": d.device_id,
                "kind": d.kind,
                "road": d.road,
                "road_class": d.road_class,
                "cabinet": d.cabinet,
                "point": d.point,
                "lat": d.lat,
                "lon": d.lon,
                "online": online.get(d.device_id, {}).get("online", False),
                "last_seen": online.get(d.device_id, {}).get("last_seen"),
                "alerts": sorted(open_by_device.get(d.device_id, [])),
            }
            if d.kind == "lamp" and d.device_id in lamps:
                rec = lamps[d.device_id][1]
                spec = resolve_rule(self.settings.rules.lamp_dark, d.road_class, d.device_id)
                assert isinstance(spec, ScheduleRule)
                ts = lamps[d.device_id][0]
                item["lit"] = LitJudge(spec, d.rated_w, self.sun).lit(
                    bool(rec.get("on")), _float(rec.get("power")), ts
                )
            if d.kind == "waterlevel" and d.device_id in water:
                depth = _float(water[d.device_id][1].get("depth_cm"))
                item["depth_cm"] = depth
                levels = self.levels_of(d)
                item["level"] = sum(1 for at in levels if depth is not None and depth >= at)
            items.append(item)
        return {"at": rfc3339(now), "items": items}

    # ---- chart series -----------------------------------------------------------------------

    async def series(
        self,
        *,
        device: str | None,
        kind: str | None,
        field: str,
        start: int | None,
        end: int | None,
        step_s: float | None,
    ) -> dict[str, Any]:
        now = self.clock()
        if device is not None:
            d = self.registry.get(device)
            if d is None:
                raise UnknownDevice(f"device {device!r} is not in the registry")
            kind = d.kind
        if kind is None:
            kind = next((k for k, fields in SERIES_FIELDS.items() if field in fields), None)
        if kind not in SERIES_FIELDS:
            raise BadQuery(f"kind must be one of {', '.join(SERIES_FIELDS)}")
        if field not in SERIES_FIELDS[kind]:
            raise BadQuery(f"field {field!r} is not one of {', '.join(SERIES_FIELDS[kind])}")
        end = now if end is None else end
        start = end - DAY_MS if start is None else start
        if start >= end:
            raise BadQuery("from must be before to")
        if end - start > 400 * DAY_MS:
            raise BadQuery("at most 400 days per series")
        span = end - start
        smallest = math.ceil(span / self.config.max_points / 1000) * 1000
        step = max(int((step_s or 0) * 1000), smallest, 1000)
        measurement = KINDS[kind].measurement
        buckets = await self.reader.aggregate(
            measurement, field, start, end, step, device, boolean=field == "on"
        )
        return {
            "device": device,
            "kind": kind,
            "field": field,
            "from": rfc3339(start),
            "to": rfc3339(end),
            "step_s": step / 1000,
            "t": [b[0] for b in buckets],
            "mean": [round(b[1], 3) for b in buckets],
            "min": [b[2] for b in buckets],
            "max": [b[3] for b in buckets],
            "n": [b[4] for b in buckets],
        }


def outage_spans(trail: list[tuple[str, str, int, int]], now_ms: int) -> list[Interval]:
    """The spans an alert's condition was present, from its audit trail: the rules raise or
    reactivate it and clear it (event times); a person resolving or closing it ends one too."""
    spans: list[Interval] = []
    since: int | None = None
    for action, who, at, event_at in trail:
        if action in ("raised", "reactivated") and who == RULES_WHO:
            if since is None:
                since = event_at
        elif since is not None and (
            (action == "cleared" and who == RULES_WHO) or action in ("resolved", "closed")
        ):
            until = event_at if action == "cleared" else at
            spans.append((since, max(since, until)))
            since = None
    if since is not None:
        spans.append((since, max(since, now_ms)))
    return spans


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None
