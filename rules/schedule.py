"""Sun times (devices.sun, astral) and dimming plans for the schedule rules."""

from __future__ import annotations

from devices.sun import SunTimes
from rules.config import DimStep

# The rules' sun clock is the floor's, shared with the simulator.
SunSchedule = SunTimes


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
