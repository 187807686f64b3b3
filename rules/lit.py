"""Is a lamp lit, and is it night? lamp_dark's judgement of one reading, in one place.

The rule (`ScheduleCheck`) and the lighting rate (`figures.lighting`) both ask it, so the figure
the bureau is judged by can never disagree with the alerts its crews get.
"""

from __future__ import annotations

from typing import Any

from devices.sun import SunTimes
from rules.config import RuleBase, ScheduleRule
from rules.schedule import DimmingPlan


def resolve_rule(rule: RuleBase, road_class: str | None, device_id: str) -> RuleBase:
    """The rule as it applies to one device: its road class's and its own overrides merged on."""
    by_class = rule.by_road_class.get(road_class, {}) if road_class else {}
    by_device = rule.by_device.get(device_id, {})
    return rule.merged(by_class, by_device)


class LitJudge:
    """A schedule rule's view of one lamp: night by the rule's offsets, lit by its dark ratio."""

    __slots__ = ("dark_ratio", "plan", "rated", "rise_ms", "set_ms", "sun")

    def __init__(self, spec: ScheduleRule, rated_w: Any, sun: SunTimes) -> None:
        self.sun = sun
        self.set_ms = int(spec.sunset_offset_s * 1000)
        self.rise_ms = int(spec.sunrise_offset_s * 1000)
        self.dark_ratio = spec.dark_ratio
        self.rated: float | None = float(rated_w) if rated_w else None
        self.plan = DimmingPlan(spec.dimming)

    def is_night(self, ts: int) -> bool:
        return self.sun.is_night(ts, self.set_ms, self.rise_ms)

    def lit(self, on: bool, power: float | None, ts: int) -> bool:
        """On, and (when power and rated power are known) drawing at least dark_ratio × rated ×
        the dimming plan's level: a lamp whose relay is on but whose light source is dead is dark."""
        if not on:
            return False
        if power is not None and self.rated is not None:
            dim = self.plan.dim_at(self.sun.minute_of_day(ts)) if self.plan else 100.0
            return power >= self.dark_ratio * self.rated * dim / 100.0
        return True
