"""Sun times (devices.sun, astral) and dimming plans for the schedule rules."""

from __future__ import annotations

from devices.dimming import DimmingPlan
from devices.sun import SunTimes

# The rules' sun clock is the floor's, shared with the simulator.
SunSchedule = SunTimes

__all__ = ["DimmingPlan", "SunSchedule"]
