"""Simulated time: parsing `--start` / `--duration` / `--speed`, sun times, and pacing.

Generation never reads the wall clock: every timestamp is `start_ms + offset_ms`, so one seed and
one set of options give one byte stream. Only `--start now…` and the live pacer look at the wall.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import re
import time
from zoneinfo import ZoneInfo

from astral import LocationInfo
from astral.sun import elevation, sun

from devices.location import LocationConfig
from simulator.errors import OptionError

DAY_MS = 86_400_000
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | float | int, *, option: str = "duration") -> float:
    """'12h', '90m', '1h30m', '45s', '1500ms' or a bare number of seconds → seconds."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        raw = text.strip().lower()
        try:
            seconds = float(raw)
        except ValueError:
            pos = 0
            seconds = 0.0
            for match in _DURATION_RE.finditer(raw):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNIT_S[match.group(2)]
                pos = match.end()
            if pos != len(raw) or not raw:
                raise OptionError(
                    f"--{option}: {text!r} is not a duration like 12h, 90m, 45s"
                ) from None
    if seconds < 0 or not math.isfinite(seconds):
        raise OptionError(f"--{option}: {text!r} must be a finite duration >= 0")
    return seconds


def parse_start(text: str, *, now_ms: int | None = None, tz: str = "Asia/Shanghai") -> int:
    """`--start`: RFC 3339 / ISO 8601 (no offset: the city's time zone), `now` or `now-12h`."""
    raw = text.strip()
    if raw.startswith("now"):
        wall = now_ms if now_ms is not None else int(time.time() * 1000)
        rest = raw[3:].strip()
        if not rest:
            return wall
        if rest[0] not in "+-":
            raise OptionError(f"--start: {text!r}: use now, now-12h or now+5m")
        delta = parse_duration(rest[1:], option="start")
        return wall + int(delta * 1000) * (1 if rest[0] == "+" else -1)
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(raw)
    except ValueError as exc:
        raise OptionError(
            f"--start: {text!r} is not a time like 2026-07-15T18:00+08:00 or now-12h"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=ZoneInfo(tz))
    return int(parsed.timestamp() * 1000)


def parse_speed(text: str | float) -> float:
    """`--speed 60` or `--speed max` (math.inf: publish as fast as the broker acks)."""
    if isinstance(text, int | float):
        speed = float(text)
    elif text.strip().lower() in {"max", "inf", "unlimited"}:
        return math.inf
    else:
        try:
            speed = float(text)
        except ValueError as exc:
            raise OptionError(f"--speed: {text!r} is not a number or 'max'") from exc
    if not speed > 0:
        raise OptionError(f"--speed: {text!r} must be > 0")
    return speed


class SunClock:
    """Sunrise/sunset of the city (astral), cached per local day; the same rule as rules/."""

    def __init__(self, location: LocationConfig) -> None:
        self.tz = ZoneInfo(location.timezone)
        self.observer = LocationInfo(
            location.name, location.region, location.timezone, location.latitude, location.longitude
        ).observer
        self._days: dict[dt.date, tuple[int, int, int]] = {}

    def local(self, ts_ms: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(ts_ms / 1000, self.tz)

    def day(self, ts_ms: int) -> tuple[int, int, int]:
        """(local midnight, sunrise, sunset) in ms of the local day containing `ts_ms`."""
        date = self.local(ts_ms).date()
        got = self._days.get(date)
        if got is None:
            midnight = dt.datetime.combine(date, dt.time(), self.tz)
            mid_ms = int(midnight.timestamp() * 1000)
            try:
                times = sun(self.observer, date=date, tzinfo=self.tz)
                rise = int(times["sunrise"].timestamp() * 1000)
                sett = int(times["sunset"].timestamp() * 1000)
            except ValueError:  # polar day or night: decide by the noon sun
                if elevation(self.observer, midnight + dt.timedelta(hours=12)) > 0:
                    rise, sett = mid_ms - 1, mid_ms + DAY_MS + 1
                else:
                    rise, sett = mid_ms + DAY_MS, mid_ms
            got = (mid_ms, rise, sett)
            if len(self._days) > 800:
                self._days.clear()
            self._days[date] = got
        return got

    def is_night(self, ts_ms: int, after_sunset_ms: int = 0, after_sunrise_ms: int = 0) -> bool:
        """True from sunset + after_sunset until the next sunrise + after_sunrise."""
        _, rise, sett = self.day(ts_ms)
        return ts_ms >= sett + after_sunset_ms or ts_ms < rise + after_sunrise_ms

    def local_hours(self, ts_ms: int) -> float:
        """Local time of day in hours (0 … 24)."""
        midnight = self.day(ts_ms)[0]
        return (ts_ms - midnight) / 3_600_000


class Pacer:
    """Maps stream offsets to wall time at `speed` (math.inf: never waits)."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.t0 = time.monotonic()

    def due(self, offset_s: float) -> float:
        """Seconds until the message at `offset_s` is due (<= 0: now)."""
        if math.isinf(self.speed):
            return 0.0
        return self.t0 + offset_s / self.speed - time.monotonic()

    async def wait(self, offset_s: float) -> None:
        delay = self.due(offset_s)
        # Sleeping for less than a millisecond costs more than it buys; batch those up.
        if delay > 0.001:
            await asyncio.sleep(delay)
