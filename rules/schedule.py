"""Sun times (astral) and dimming plans for the schedule rules.

astral takes ~65 µs per day computed, so sunrise/sunset are cached per local day and looked up by
the hour the timestamp falls in: on the hot path a lamp reading costs two dict lookups.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from astral import LocationInfo
from astral.sun import elevation, sun

from devices.location import LocationConfig
from rules.config import DimStep

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


class SunSchedule:
    """Sunrise/sunset for the city in `LocationConfig`, by event time (ms)."""

    def __init__(self, location: LocationConfig) -> None:
        self.tz = ZoneInfo(location.timezone)
        self.observer = LocationInfo(
            location.name, location.region, location.timezone, location.latitude, location.longitude
        ).observer
        # hour bucket -> (local midnight ms, sunrise ms, sunset ms) of the local day it lies in
        self._by_hour: dict[int, tuple[int, int, int]] = {}
        self._days: dict[dt.date, tuple[int, int, int]] = {}

    def day(self, ts_ms: int) -> tuple[int, int, int]:
        """(local midnight, sunrise, sunset) of the local day containing `ts_ms`."""
        bucket = ts_ms // HOUR_MS
        got = self._by_hour.get(bucket)
        if got is None:
            local = dt.datetime.fromtimestamp(ts_ms / 1000, self.tz)
            got = self._sun_of(local.date())
            if len(self._by_hour) > 24 * 400:  # a year of replays: start over rather than grow
                self._by_hour.clear()
                self._days.clear()
            self._by_hour[bucket] = got
        return got

    def _sun_of(self, date: dt.date) -> tuple[int, int, int]:
        got = self._days.get(date)
        if got is not None:
            return got
        midnight = dt.datetime.combine(date, dt.time(), self.tz)
        mid_ms = int(midnight.timestamp() * 1000)
        try:
            times = sun(self.observer, date=date, tzinfo=self.tz)
            rise = int(times["sunrise"].timestamp() * 1000)
            sett = int(times["sunset"].timestamp() * 1000)
        except ValueError:
            # Polar day or night: astral finds no sunrise/sunset. Decide by the noon sun.
            noon = midnight + dt.timedelta(hours=12)
            if elevation(self.observer, noon) > 0:
                rise, sett = mid_ms - 1, mid_ms + DAY_MS + 1  # never night
            else:
                rise, sett = mid_ms + DAY_MS, mid_ms  # always night
        got = (mid_ms, rise, sett)
        self._days[date] = got
        return got

    def is_night(self, ts_ms: int, sunset_offset_ms: int, sunrise_offset_ms: int) -> bool:
        """True from sunset + offset until the next sunrise + offset."""
        _, rise, sett = self.day(ts_ms)
        return ts_ms >= sett + sunset_offset_ms or ts_ms < rise + sunrise_offset_ms

    def minute_of_day(self, ts_ms: int) -> int:
        midnight = self.day(ts_ms)[0]
        return int((ts_ms - midnight) // 60_000)


class DimmingPlan:
    """Expected dim level (%) by local minute of day; 100 % outside every step."""

    def __init__(self, steps: list[DimStep]) -> None:
        self.ranges: list[tuple[int, int, float]] = [
            (_minutes(s.start), _minutes(s.end), s.dim) for s in steps
        ]

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def dim_at(self, minute: int) -> float:
        for start, end, dim in self.ranges:
            if start <= end:
                if start <= minute < end:
                    return dim
            elif minute >= start or minute < end:  # crosses midnight
                return dim
        return 100.0


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)
