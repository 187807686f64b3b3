"""Simulated time: parsing `--start` / `--duration` / `--speed`, sun times, and pacing.

Generation never reads the wall clock: every timestamp is `start_ms + offset_ms`, so one seed and
one set of options give one byte stream. Only `--start now…` and the live pacer look at the wall.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from zoneinfo import ZoneInfo

from devices.sun import SunTimes
from simulator.errors import OptionError

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


_CLOCK_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# What a service with its default configuration accepts (contract §1, `ingest.max_age`): readings
# older than this are dead-lettered as ts_too_old, more than FUTURE_LIMIT_S ahead as ts_in_future.
SERVICE_MAX_AGE_S = 30 * 86400.0
FUTURE_LIMIT_S = 300.0


def latest_start(clock: str, duration_s: float, *, now_ms: int, tz: str) -> int:
    """The most recent day whose `clock` (local HH:MM) + `duration_s` has ended by `now_ms`.

    A night played this way is never in the future and at most a day and a run old, well inside
    any service's `ingest.max_age`, on whatever date it is run.
    """
    match = _CLOCK_RE.match(clock.strip())
    if match is None:
        raise OptionError(f"--start: {clock!r} is not a local clock time like 18:00")
    zone = ZoneInfo(tz)
    now = dt.datetime.fromtimestamp(now_ms / 1000, zone)
    day = now.date()
    hour, minute = int(match.group(1)), int(match.group(2))
    while True:
        start = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
        start_ms = int(start.timestamp() * 1000)
        if start_ms + duration_s * 1000 <= now_ms:
            return start_ms
        day -= dt.timedelta(days=1)


def clock_of(text: str, tz: str = "Asia/Shanghai") -> str | None:
    """The local clock time (HH:MM) a start names: `18:00` itself, or a full time's, else None."""
    raw = text.strip()
    if _CLOCK_RE.match(raw):
        return raw
    if raw.startswith("now") or _DATE_RE.match(raw):
        return None
    try:
        start_ms = parse_start(raw, tz=tz)
    except OptionError:
        return None
    return dt.datetime.fromtimestamp(start_ms / 1000, ZoneInfo(tz)).strftime("%H:%M")


def parse_start(
    text: str,
    *,
    now_ms: int | None = None,
    tz: str = "Asia/Shanghai",
    clock: str = "18:00",
    duration_s: float = 0.0,
) -> int:
    """`--start`: RFC 3339 / ISO 8601 (no offset: the city's time zone), `now` or `now-12h`,
    a local clock time `18:00` (the most recent such run that has ended by now), or a date
    `2026-07-15` (that day at `clock`, the scenario's own clock time)."""
    raw = text.strip()
    if _CLOCK_RE.match(raw):
        wall = now_ms if now_ms is not None else int(time.time() * 1000)
        return latest_start(raw, duration_s, now_ms=wall, tz=tz)
    if _DATE_RE.match(raw):
        raw = f"{raw}T{clock}"
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
            f"--start: {text!r} is not a time like 2026-07-15T18:00+08:00, 2026-07-15, 18:00 "
            "or now-12h"
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


# The simulator's sun is the floor's, shared with the rules: they can never disagree about night.
SunClock = SunTimes


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
