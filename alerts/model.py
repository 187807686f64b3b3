"""The alert object (contract §3) and the record of one change to it.

An `Alert` is immutable: every transition makes a new one (`dataclasses.replace`), so an alert handed
to an outlet or an SSE subscriber can never change under it. Times are integer milliseconds since the
epoch inside the service and RFC 3339 (UTC, `Z`) on the wire.

Two clocks meet here. `raised_at`, `cleared_at` (when the condition cleared it) and the condition's
own times are *event time* (the readings' `ts`), so a replay raises the same alerts at the same times.
Human actions and the SLA clocks use the *wall clock*: a crew can only respond once the control centre
has seen the alert, so response and resolution limits run from `opened_at`, the wall time the lifecycle
first saw the condition. `updated_at` is the later of the two and never goes backwards.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

from devices.catalog import default_language, rule_name
from devices.models import rfc3339_to_ms
from rules.signals import Severity

State = Literal["active", "acknowledged", "dispatched", "cleared", "closed"]
STATES: tuple[State, ...] = ("active", "acknowledged", "dispatched", "cleared", "closed")
OPEN_STATES: frozenset[str] = frozenset({"active", "acknowledged", "dispatched", "cleared"})
# The condition is still there: the states in which the resolution clock runs.
UNRESOLVED_STATES: frozenset[str] = frozenset({"active", "acknowledged", "dispatched"})

Action = Literal[
    "raised",  # a condition opened the alert
    "updated",  # a repeat changed level, severity, value or message
    "cleared",  # the condition went away
    "reactivated",  # the condition came back before the alert was closed
    "acknowledged",
    "dispatched",  # a crew (assignee) was sent; again with another assignee: reassigned
    "resolved",  # a person marked it fixed (state cleared)
    "closed",
    "reminded",  # part of a time limit has passed
    "overdue",  # a time limit passed: marked for the negative list, first escalation
    "escalated",  # a further full limit period passed
]
Limit = Literal["response", "resolution"]
LIMITS: tuple[Limit, ...] = ("response", "resolution")

RULES_WHO = "rules"  # who, in the audit trail, for changes the rule engine caused
SLA_WHO = "sla"  # who for reminders, escalations and overdue marks


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def rfc3339(ms: int) -> str:
    """`1720000000123` → `"2024-07-03T09:46:40.123Z"` (exact: no float rounding)."""
    seconds, millis = divmod(ms, 1000)
    stamp = datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def parse_time(text: str) -> int:
    """RFC 3339 with an offset (or `Z`), or integer epoch milliseconds → epoch ms. ValueError if not."""
    text = text.strip()
    digits = text.removeprefix("-")
    if digits.isascii() and digits.isdigit():  # not "²" or "１２": int() refuses or reads those
        if len(digits) > 18:  # past SQLite's 64-bit integers (and int()'s 4300-digit limit)
            raise ValueError(f"time {text[:24]}… is out of range (epoch ms)")
        return int(text)
    return rfc3339_to_ms(text[:64])


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    rule: str
    device: str
    kind: str
    severity: Severity
    state: State
    message: str
    raised_at: int
    updated_at: int
    cleared_at: int | None = None
    level: int | None = None
    value: float | None = None
    road: str | None = None
    assignee: str | None = None
    # ---- beyond the contract (extra fields are allowed) ----
    opened_at: int = 0  # wall ms when first seen: the SLA clocks start here
    condition_active: bool = True  # what the rule engine last said
    condition_at: int = 0  # event time of the last condition taken (older ones are ignored)
    resume_state: State | None = (
        None  # where a re-activation returns (kept when the condition cleared it)
    )
    cleared_by: str | None = None
    acknowledged_at: int | None = None
    acknowledged_by: str | None = None
    dispatched_at: int | None = None
    closed_at: int | None = None
    closed_by: str | None = None
    # wall ms the time limits of the current severity count from (None: opened_at); a rise to a
    # stricter severity counts from the rise. Due times are worked out again from it at start, so
    # the limits of the config in force apply to alerts opened before.
    limits_from: int | None = None
    response_due: int | None = None
    resolution_due: int | None = None
    reminded: frozenset[str] = frozenset()
    escalation: int = 0
    overdue: frozenset[str] = frozenset()  # limits that passed; kept after closing (negative list)
    extra: Mapping[str, str] = field(default_factory=dict)
    # Wall ms the service learned of the condition, when that was well after it began (the
    # readings arrived late, e.g. a gateway's backlog): JSON `reported_late` and `reported_at`.
    reported_at: int | None = None

    @property
    def is_open(self) -> bool:
        return self.state != "closed"

    def to_json(self) -> dict[str, Any]:
        """The contract's alert object; optional fields are left out when empty, extras follow."""
        out: dict[str, Any] = {
            "id": self.id,
            "rule": self.rule,
            "device": self.device,
            "kind": self.kind,
            "severity": self.severity,
            "state": self.state,
            "message": self.message,
            "rule_name": rule_name(self.rule, default_language()),  # in words (devices/catalog)
            "raised_at": rfc3339(self.raised_at),
            "updated_at": rfc3339(self.updated_at),
        }
        if self.cleared_at is not None:
            out["cleared_at"] = rfc3339(self.cleared_at)
        if self.level is not None:
            out["level"] = self.level
        if self.value is not None and math.isfinite(self.value):  # JSON has no NaN/Infinity
            out["value"] = self.value
        if self.road is not None:
            out["road"] = self.road
        if self.assignee is not None:
            out["assignee"] = self.assignee
        out["overdue"] = bool(self.overdue)
        out["overdue_limits"] = sorted(self.overdue)
        out["escalation"] = self.escalation
        out["condition_active"] = self.condition_active
        # Resolved by a person (forced) while the rules still see the condition.
        out["condition_still_present"] = self.state == "cleared" and self.condition_active
        for name in (
            "response_due",
            "resolution_due",
            "acknowledged_at",
            "dispatched_at",
            "closed_at",
        ):
            value = getattr(self, name)
            if value is not None:
                out[name] = rfc3339(value)
        if self.acknowledged_by is not None:
            out["acknowledged_by"] = self.acknowledged_by
        if self.extra:
            out["extra"] = dict(self.extra)
        if self.reported_at is not None:
            out["reported_late"] = True
            out["reported_at"] = rfc3339(self.reported_at)
        return out

    def to_record(self) -> dict[str, Any]:
        """Everything, for the store (times as ms, sets as sorted lists)."""
        record: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            record[name] = value
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Alert:
        known = {k: v for k, v in record.items() if k in cls.__dataclass_fields__}
        for name in ("reminded", "overdue"):
            known[name] = frozenset(known.get(name) or ())
        known["extra"] = dict(known.get("extra") or {})
        return cls(**known)


@dataclass(frozen=True, slots=True)
class Change:
    """One transition of one alert: an audit-trail row, and what outlets are handed."""

    alert_id: str
    action: Action
    at: int  # wall ms when it was recorded
    who: str
    state_from: State | None
    state_to: State
    note: str | None = None
    event_at: int | None = None  # the condition's event time, for changes the rule engine caused
    detail: Mapping[str, Any] = field(default_factory=dict)
    seq: int = 0  # audit-trail sequence number, set by the store (increases, never reused)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq,
            "alert_id": self.alert_id,
            "action": self.action,
            "at": rfc3339(self.at),
            "who": self.who,
            "state_from": self.state_from,
            "state_to": self.state_to,
        }
        if self.note is not None:
            out["note"] = self.note
        if self.event_at is not None:
            out["event_at"] = rfc3339(self.event_at)
        if self.detail:
            out["detail"] = dict(self.detail)
        return out


def as_state(text: str) -> State:
    if text not in STATES:
        raise ValueError(f"unknown state {text!r}")
    return cast(State, text)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A transition computed but not yet stored: the new alert and the change that made it."""

    alert: Alert
    change: Change
