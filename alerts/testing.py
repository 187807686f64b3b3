"""Test support for code that uses alerts (ours and the lead's wiring tests), like httpx's MockTransport:
a clock moved by hand (pass it as `clock=`), an outlet that records what it is handed, and a builder
for `Condition`s. Nothing in production imports this module."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alerts.model import Alert, Change
from rules.signals import Condition, Severity

T0 = 1_720_000_000_000  # 2024-07-03T09:46:40Z, a summer evening in Jining (17:46 local)


@dataclass
class Clock:
    now: int = T0

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> int:
        self.now += int(seconds * 1000)
        return self.now


@dataclass
class Recorder:
    """An outlet that keeps what it was handed."""

    seen: list[tuple[Alert, Change]] = field(default_factory=list)

    def publish(self, alert: Alert, change: Change) -> None:
        self.seen.append((alert, change))

    @property
    def actions(self) -> list[str]:
        return [change.action for _, change in self.seen]


def cond(
    rule: str = "water_level",
    device: str = "wl-001",
    *,
    active: bool = True,
    at: int = T0,
    severity: Severity = "minor",
    level: int | None = 1,
    value: float | None = 11.0,
    message: str = "water 11 cm",
    kind: str = "waterlevel",
    road: str | None = None,
    **extra: Any,
) -> Condition:
    return Condition(
        rule=rule,
        device=device,
        kind=kind,
        active=active,
        severity=severity,
        at_ms=at,
        message=message,
        level=level,
        value=value,
        road=road,
        extra={k: str(v) for k, v in extra.items()},
    )
