"""Time limits per severity: reminders, escalation and overdue marks (the city's negative list).

Each severity has a response limit (someone acknowledges or dispatches) and a resolution limit (the
condition is gone or a person resolved it). Both clocks start at `opened_at`, the wall time the
lifecycle first saw the alert. `evaluate` is pure: the scheduler job calls `AlertStore.sweep_sla`,
which runs it over the open alerts with the store's clock, so tests move time by hand.

- reminder: once `remind_at` of a limit has passed (default half-way), one `reminded` change;
- overdue: when a limit passes, one `overdue` change: the limit is added to `alert.overdue` (kept
  for good, even after closing) and escalation goes to 1;
- escalated: each further full limit period adds a level, up to `max_escalations`.

A severity change moves the due times: up to a stricter severity, the new limit counts from the change
(it cannot be overdue the moment the water rises); down to a laxer one, the laxer limit counts from the
start (the case does not get more time than a case raised at that severity).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from alerts.config import SlaConfig
from alerts.model import (
    LIMITS,
    SLA_WHO,
    UNRESOLVED_STATES,
    Action,
    Alert,
    Change,
    Limit,
    Outcome,
)

_ORDER = {"critical": 0, "major": 1, "minor": 2, "warning": 3}


def format_duration(ms: int) -> str:
    seconds = ms // 1000
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """Limits in ms per (severity, limit); None: no limit."""

    limits: Mapping[str, Mapping[Limit, int | None]]
    remind_at: float = 0.5
    max_escalations: int = 3

    @classmethod
    def from_config(cls, config: SlaConfig) -> SlaPolicy:
        limits: dict[str, dict[Limit, int | None]] = {}
        for severity in _ORDER:
            spec = config.limits(severity)
            limits[severity] = {
                "response": None if spec.response is None else int(spec.response * 1000),
                "resolution": None if spec.resolution is None else int(spec.resolution * 1000),
            }
        return cls(limits, config.remind_at, config.max_escalations)

    @classmethod
    def none(cls) -> SlaPolicy:
        return cls({})

    def limit_ms(self, severity: str, limit: Limit) -> int | None:
        return self.limits.get(severity, {}).get(limit)

    def dues(self, severity: str, start: int) -> tuple[int | None, int | None]:
        response = self.limit_ms(severity, "response")
        resolution = self.limit_ms(severity, "resolution")
        return (
            None if response is None else start + response,
            None if resolution is None else start + resolution,
        )

    @staticmethod
    def stricter(severity: str, than: str) -> bool:
        return _ORDER.get(severity, 9) < _ORDER.get(than, 9)

    def refit(self, alert: Alert) -> Alert:
        """`alert` with the due times of the limits in force (after a config change and a restart):
        counted from `limits_from` (or `opened_at`); a limit that is off (null) has no due time.
        A reminder already sent for a due time that moved is forgotten, so the new one is sent."""
        start = alert.limits_from if alert.limits_from is not None else alert.opened_at
        dues: dict[str, int | None] = {}
        for limit in LIMITS:
            span = self.limit_ms(alert.severity, limit)
            dues[limit] = None if span is None else start + span
        if (alert.response_due, alert.resolution_due) == (dues["response"], dues["resolution"]):
            return alert
        old: dict[str, int | None] = {
            "response": alert.response_due,
            "resolution": alert.resolution_due,
        }
        kept = {limit for limit in alert.reminded if dues.get(limit) == old.get(limit)}
        return replace(
            alert,
            response_due=dues["response"],
            resolution_due=dues["resolution"],
            reminded=frozenset(kept),
        )

    def retarget(self, alert: Alert, severity: str, now: int) -> tuple[int | None, int | None]:
        """Due times after `alert` changes to `severity` at wall time `now` (see module doc)."""
        stricter = _ORDER.get(severity, 9) < _ORDER.get(alert.severity, 9)
        out: list[int | None] = []
        for limit, current in zip(LIMITS, (alert.response_due, alert.resolution_due), strict=True):
            span = self.limit_ms(severity, limit)
            if span is None:
                out.append(None)
            elif stricter:
                out.append(now + span if current is None else min(current, now + span))
            else:
                from_start = alert.opened_at + span
                out.append(from_start if current is None else max(current, from_start))
        return out[0], out[1]


def _pending(alert: Alert, policy: SlaPolicy) -> list[tuple[Limit, int]]:
    """The limits whose clocks still run, with their due times. A limit the policy in force has
    switched off (null) is no limit at all, whatever due time the alert still carries."""
    out: list[tuple[Limit, int]] = []
    # Nobody responded yet; a condition that went away by itself needs no response.
    if (
        alert.state == "active"
        and alert.acknowledged_at is None
        and alert.response_due is not None
        and policy.limit_ms(alert.severity, "response") is not None
    ):
        out.append(("response", alert.response_due))
    if (
        alert.state in UNRESOLVED_STATES
        and alert.resolution_due is not None
        and policy.limit_ms(alert.severity, "resolution") is not None
    ):
        out.append(("resolution", alert.resolution_due))
    return out


def evaluate(alert: Alert, now: int, policy: SlaPolicy) -> Outcome | None:
    """The next SLA change of `alert` at wall time `now`, or None. One change per call and alert."""
    pending = _pending(alert, policy)
    if not pending:
        return None
    passed: list[Limit] = []
    level = alert.escalation
    for limit, due in pending:
        if now >= due:
            span = max(1, policy.limit_ms(alert.severity, limit) or 1)
            passed.append(limit)
            level = max(level, min(policy.max_escalations, 1 + (now - due) // span))
    newly = [limit for limit in passed if limit not in alert.overdue]
    if newly or level > alert.escalation:
        limit = newly[0] if newly else passed[0]
        limit_span = policy.limit_ms(alert.severity, limit)
        limit_text = format_duration(limit_span) if limit_span is not None else "?"
        action: Action = "overdue" if newly else "escalated"
        note = f"{limit} limit ({limit_text}, {alert.severity}) passed; escalation {level}"
        new = replace(
            alert,
            overdue=alert.overdue | set(newly),
            escalation=int(level),
            updated_at=max(alert.updated_at, now),
        )
        change = Change(
            alert.id,
            action,
            now,
            SLA_WHO,
            alert.state,
            alert.state,
            note=note,
            detail={"limit": limit, "escalation": int(level), "overdue": sorted(new.overdue)},
        )
        return Outcome(new, change)
    for limit, due in pending:
        remind_span = policy.limit_ms(alert.severity, limit)
        # A limit already passed gets no reminder: the overdue mark said more.
        if remind_span is None or limit in alert.reminded or now >= due:
            continue
        if now >= due - int(remind_span * (1 - policy.remind_at)):
            new = replace(alert, reminded=alert.reminded | {limit})
            note = f"{limit} limit ({format_duration(remind_span)}) due in {format_duration(due - now)}"
            change = Change(
                alert.id,
                "reminded",
                now,
                SLA_WHO,
                alert.state,
                alert.state,
                note=note,
                detail={"limit": limit, "due_in_s": (due - now) // 1000},
            )
            return Outcome(new, change)
    return None


__all__ = ["SlaPolicy", "evaluate", "format_duration"]
