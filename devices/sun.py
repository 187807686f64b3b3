"""When the sun sets and rises over the city (astral), by event time in ms.

One implementation for the rules (is a lamp expected on?) and the simulator (when do lamps switch?),
so the two can never disagree about night. astral takes ~65 µs per day computed, so each local day
is computed once and looked up by the hour a timestamp falls in: two dict lookups per reading.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from astral import LocationInfo
from astral.sun import elevation, sun

from devices.location import LocationConfig

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


class SunTimes:
    """Sunrise/sunset for the city in `LocationConfig`."""

    def __init__(self, location: LocationConfig) -> None:
        self.tz = ZoneInfo(location.timezone)
        self.observer = LocationInfo(
            location.name, location.region, location.timezone, location.latitude, location.longitude
        ).observer
        # hour bucket -> (local midnight ms, sunrise ms, sunset ms) of the local day it lies in
        self._by_hour: dict[int, tuple[int, int, int]] = {}
        self._days: dict[dt.date, tuple[int, int, int]] = {}

    def local(self, ts_ms: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(ts_ms / 1000, self.tz)

    def day(self, ts_ms: int) -> tuple[int, int, int]:
        """(local midnight, sunrise, sunset) of the local day containing `ts_ms`."""
        bucket = ts_ms // HOUR_MS
        got = self._by_hour.get(bucket)
        if got is None:
            got = self._sun_of(self.local(ts_ms).date())
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
            if elevation(self.observer, midnight + dt.timedelta(hours=12)) > 0:
                rise, sett = mid_ms - 1, mid_ms + DAY_MS + 1  # never night
            else:
                rise, sett = mid_ms + DAY_MS, mid_ms  # always night
        got = (mid_ms, rise, sett)
        self._days[date] = got
        return got

    def is_night(self, ts_ms: int, sunset_offset_ms: int = 0, sunrise_offset_ms: int = 0) -> bool:
        """True from sunset + sunset_offset until the next sunrise + sunrise_offset."""
        _, rise, sett = self.day(ts_ms)
        return ts_ms >= sett + sunset_offset_ms or ts_ms < rise + sunrise_offset_ms

    def minute_of_day(self, ts_ms: int) -> int:
        """Local minute of the day (0 … 1439)."""
        return int((ts_ms - self.day(ts_ms)[0]) // 60_000)

    def local_hours(self, ts_ms: int) -> float:
        """Local time of day in hours (0 … 24)."""
        return (ts_ms - self.day(ts_ms)[0]) / HOUR_MS
