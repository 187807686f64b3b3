"""Dimming plans: the dim level (%) a lamp is set to by local time of day.

One implementation for the rules (what power to expect) and the simulator (what a lamp does), so the
two can never disagree about a plan. A plan is a list of steps `HH:MM-HH:MM=DIM`; a step may cross
midnight; outside every step the level is 100 %. Minutes are local minutes of the day (0 … 1439),
as `devices.sun.SunTimes.minute_of_day` gives them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

_HHMM_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$|^24:00$")


class StepLike(Protocol):
    """A step as the rules' config holds it: `start`/`end` "HH:MM" and `dim` in %."""

    @property
    def start(self) -> str: ...

    @property
    def end(self) -> str: ...

    @property
    def dim(self) -> float: ...


def hhmm_minutes(text: str) -> int:
    """`"04:30"` → 270. ValueError for anything that is not a time of day (`24:00` is the end)."""
    raw = text.strip()
    if not _HHMM_RE.match(raw):
        raise ValueError(f"{text!r} is not a time of day HH:MM")
    hours, minutes = raw.split(":")
    return int(hours) * 60 + int(minutes)


class DimmingPlan:
    """Expected dim level (%) by local minute of day; 100 % outside every step."""

    __slots__ = ("ranges",)

    def __init__(self, steps: Iterable[StepLike] = ()) -> None:
        self.ranges: list[tuple[int, int, float]] = []
        for step in steps:
            self.ranges.append(_step(step.start, step.end, float(step.dim)))

    @classmethod
    def parse(cls, text: str) -> DimmingPlan:
        """`"00:00-04:30=50;22:00-00:00=80"` → a plan; `""` → no dimming. ValueError if bad."""
        plan = cls()
        for part in filter(None, (p.strip() for p in text.split(";"))):
            window, eq, dim = part.partition("=")
            start, dash, end = window.partition("-")
            if not eq or not dash:
                raise ValueError(f"{part!r}: use HH:MM-HH:MM=DIM, e.g. 00:00-04:30=50")
            try:
                level = float(dim)
            except ValueError:
                raise ValueError(f"{part!r}: dim {dim!r} is not a number") from None
            plan.ranges.append(_step(start, end, level))
        return plan

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DimmingPlan) and self.ranges == other.ranges

    def __hash__(self) -> int:
        return hash(tuple(self.ranges))

    def __repr__(self) -> str:
        return f"DimmingPlan({self.ranges!r})"

    def dim_at(self, minute: int) -> float:
        for start, end, dim in self.ranges:
            if start <= end:
                if start <= minute < end:
                    return dim
            elif minute >= start or minute < end:  # crosses midnight
                return dim
        return 100.0


def _step(start: str, end: str, dim: float) -> tuple[int, int, float]:
    if not 0.0 <= dim <= 100.0:  # also refuses NaN
        raise ValueError(f"dim {dim:g} must be within 0 … 100 %")
    return hhmm_minutes(start), hhmm_minutes(end) % 1440, dim
