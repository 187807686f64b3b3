"""What the rule engine tells the alert lifecycle: the seam between `rules/` and `alerts/`.

The engine never imports the alert store; it hands `Condition`s to a `ConditionSink`. One Condition
says, at an event time, that the condition of (rule, device) is active (raise, or update level/value)
or no longer active (clear). The lifecycle turns these into alerts: one open alert per (rule, device).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

Severity = Literal["critical", "major", "minor", "warning"]
SEVERITIES: tuple[Severity, ...] = ("critical", "major", "minor", "warning")


@dataclass(frozen=True, slots=True)
class Condition:
    rule: str
    device: str  # a device id, or a cabinet id for cabinet_outage
    kind: str  # device kind ("lamp", "waterlevel") or "cabinet"
    active: bool  # True: raise or update; False: clear
    severity: Severity
    at_ms: int  # event time (the reading's ts / the watermark), ms since the epoch
    message: str
    level: int | None = None
    value: float | None = None
    road: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # Wall ms the engine learned of it, set only when that was well after `at_ms` (the readings
    # that decided it arrived late, e.g. a gateway's backlog): the alert is "reported late".
    reported_at: int | None = None


class ConditionSink(Protocol):
    def on_condition(self, condition: Condition) -> None:
        """Take a condition change. Must not block: the engine runs on the ingest's hot path."""
