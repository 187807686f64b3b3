"""Settings of the control-centre figures (config sections `figures` and `reports`)."""

from __future__ import annotations

import datetime as dt
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from devices.registry import ROAD_CLASSES


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _default_targets() -> dict[str, float]:
    # CJJ 45-2015: lighting rate ≥ 98 % on expressways, main and secondary roads, ≥ 96 % on branches.
    return {"expressway": 98.0, "main": 98.0, "secondary": 98.0, "branch": 96.0}


class FiguresConfig(_Section):
    enabled: bool = True
    # Lighting-rate target (%) per road class; a road class not listed has no target.
    targets: dict[str, float] = Field(default_factory=_default_targets)
    # A reading holds (and a device counts as online) for this many report intervals.
    hold_intervals: float = Field(3.0, gt=0)
    # Most points one /api/series answer carries (the step is widened to stay under it).
    max_points: int = Field(2000, ge=10, le=100_000)
    # Lamp-time before this instant is not counted in the lighting rate (e.g. when the system was
    # commissioned: nobody watched the lamps before it, so that time is neither lit nor dark).
    not_before: dt.datetime | None = None

    @field_validator("not_before")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone offset, e.g. 2026-07-01T00:00:00+08:00")
        return value

    @field_validator("targets")
    @classmethod
    def _classes(cls, value: dict[str, float]) -> dict[str, float]:
        for name, target in value.items():
            if name not in ROAD_CLASSES:
                raise ValueError(f"{name!r} is not a road class ({', '.join(ROAD_CLASSES)})")
            if not 0 <= target <= 100:
                raise ValueError(f"{name}: a target is a percentage (0-100)")
        return value


class ReportsConfig(_Section):
    enabled: bool = True
    # Local time (location.timezone) the daily report for the night before is made, HH:MM.
    daily_at: str = "08:00"
    # apprise URLs the daily report goes to; empty: stored and served only.
    send_to: list[str] = []
    # How many of the longest-offline devices the report lists.
    offline_top: int = Field(10, ge=0, le=1000)

    @field_validator("daily_at")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        m = re.fullmatch(r"(\d{1,2}):(\d{2})", value.strip())
        if not m or int(m[1]) > 23 or int(m[2]) > 59:
            raise ValueError(f"not a time of day HH:MM: {value!r}")
        return f"{int(m[1]):02d}:{m[2]}"
