"""The alert state machine: pure functions from (alert, input) to the next alert and its change.

    condition raises ──▶ active ──ack──▶ acknowledged ──dispatch──▶ dispatched
                           │  ╲──────────dispatch────────────────────▲  │ (dispatch again: reassign)
                           ▼             ▼                              ▼
                 condition gone / resolve ──────────────────────▶ cleared ──close──▶ closed
                           ▲                                            │
                           └──────── condition returns (re-activate) ◀──┘

- One open alert per (rule, device): a repeat updates it (severity, level, value, message, road);
  an identical repeat (a redelivery) is no change at all.
- A cleared alert stays open (visible) until someone closes it, whether or not anybody acknowledged it.
- The condition returning before close re-activates the same alert. When the condition had cleared it,
  the alert goes back where it was (a crew already on the way stays dispatched: flapping must not
  undo their work). When a person had resolved it, it goes back to `active`: the fix did not hold and
  needs fresh eyes.
- A condition older (event time) than the last one taken is ignored: a late one never moves it back.

Nothing here does I/O; `store.AlertStore` applies the outcomes, records them and hands them out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from alerts.errors import ConditionStillPresent, InvalidTransition
from alerts.model import RULES_WHO, UNRESOLVED_STATES, Alert, Change, Outcome, State
from alerts.sla import SlaPolicy
from rules.signals import Condition


def on_condition(
    current: Alert | None,
    condition: Condition,
    *,
    now: int,
    policy: SlaPolicy,
    new_id: Callable[[], str],
    road: str | None = None,
) -> Outcome | None:
    """Apply one condition to the open alert of its (rule, device), if any. None: nothing changes."""
    road = condition.road or road
    at = condition.at_ms
    if current is None or not current.is_open:
        if not condition.active:
            return None  # nothing open to clear (a duplicate clear, or one after closing)
        response_due, resolution_due = policy.dues(condition.severity, now)
        alert = Alert(
            id=new_id(),
            rule=condition.rule,
            device=condition.device,
            kind=condition.kind,
            severity=condition.severity,
            state="active",
            message=condition.message,
            raised_at=at,
            updated_at=at,
            level=condition.level,
            value=condition.value,
            road=road,
            opened_at=now,
            condition_active=True,
            condition_at=at,
            response_due=response_due,
            resolution_due=resolution_due,
            extra=dict(condition.extra),
            reported_at=condition.reported_at,
        )
        return Outcome(alert, _change(alert, "raised", now, None, condition))
    if at < current.condition_at:
        return None
    updated_at = max(current.updated_at, at)
    if not condition.active:
        if current.state in UNRESOLVED_STATES:
            alert = replace(
                current,
                state="cleared",
                cleared_at=at,
                cleared_by=RULES_WHO,
                resume_state=current.state,
                condition_active=False,
                condition_at=at,
                value=condition.value if condition.value is not None else current.value,
                message=condition.message or current.message,
                updated_at=updated_at,
            )
            return Outcome(alert, _change(alert, "cleared", now, current.state, condition))
        if current.condition_active:
            # A person resolved it while the condition was still there; now it is really gone.
            alert = replace(current, condition_active=False, condition_at=at, updated_at=updated_at)
            return Outcome(alert, _change(alert, "cleared", now, current.state, condition))
        return None
    fields: dict[str, Any] = {
        "kind": condition.kind,
        "severity": condition.severity,
        "message": condition.message,
        "level": condition.level,
        "value": condition.value,
        "road": road if road is not None else current.road,
        "extra": dict(condition.extra) if condition.extra else current.extra,
    }
    changed: dict[str, Any] = {k: v for k, v in fields.items() if getattr(current, k) != v}
    if "severity" in changed:
        response_due, resolution_due = policy.retarget(current, condition.severity, now)
        reminded = {
            limit
            for limit, old, new in (
                ("response", current.response_due, response_due),
                ("resolution", current.resolution_due, resolution_due),
            )
            if limit in current.reminded and old == new
        }
        # Up: the stricter limits count from the rise; down: the laxer ones from the start.
        stricter = policy.stricter(condition.severity, current.severity)
        changed["limits_from"] = now if stricter else None
        changed |= {
            "response_due": response_due,
            "resolution_due": resolution_due,
            "reminded": frozenset(reminded),
        }
    if current.state == "cleared":
        back: State = "active"
        if current.cleared_by == RULES_WHO and current.resume_state is not None:
            back = current.resume_state
        alert = replace(
            current,
            **changed,
            state=back,
            cleared_at=None,
            cleared_by=None,
            resume_state=None,
            condition_active=True,
            condition_at=at,
            updated_at=updated_at,
            reported_at=condition.reported_at or current.reported_at,
        )
        return Outcome(alert, _change(alert, "reactivated", now, "cleared", condition))
    if not changed:
        return None  # a redelivery or a repeat that says nothing new
    alert = replace(current, **changed, condition_at=at, updated_at=updated_at)
    detail = {k: _plain(v) for k, v in changed.items() if k in ("severity", "level", "value")}
    return Outcome(alert, _change(alert, "updated", now, current.state, condition, detail))


def acknowledge(alert: Alert, *, who: str, note: str | None, now: int) -> Outcome:
    if alert.state != "active":
        raise _refuse(alert, "ack", "only an active alert can be acknowledged")
    new = replace(
        alert,
        state="acknowledged",
        acknowledged_at=now,
        acknowledged_by=who,
        updated_at=max(alert.updated_at, now),
    )
    return Outcome(new, Change(alert.id, "acknowledged", now, who, alert.state, new.state, note))


def dispatch(alert: Alert, *, who: str, assignee: str, note: str | None, now: int) -> Outcome:
    """Send a crew. Dispatching also answers the response limit; dispatching again reassigns."""
    if alert.state not in UNRESOLVED_STATES:
        raise _refuse(
            alert, "dispatch", "only an active, acknowledged or dispatched alert can be dispatched"
        )
    if not assignee.strip():
        raise ValueError("dispatch needs an assignee (the crew or person sent)")
    new = replace(
        alert,
        state="dispatched",
        assignee=assignee,
        dispatched_at=now,
        acknowledged_at=alert.acknowledged_at if alert.acknowledged_at is not None else now,
        acknowledged_by=alert.acknowledged_by if alert.acknowledged_by is not None else who,
        updated_at=max(alert.updated_at, now),
    )
    detail = {"assignee": assignee}
    if alert.assignee is not None and alert.state == "dispatched":
        detail["previous_assignee"] = alert.assignee
    return Outcome(
        new, Change(alert.id, "dispatched", now, who, alert.state, new.state, note, detail=detail)
    )


def resolve(alert: Alert, *, who: str, note: str | None, now: int, force: bool = False) -> Outcome:
    """A person says it is fixed. While the rule engine still sees the condition this is refused
    (ConditionStillPresent) unless `force` is given with a note saying why; a forced resolve is
    marked in the audit trail, and the alert keeps saying that the condition is still present."""
    if alert.state not in UNRESOLVED_STATES:
        raise _refuse(
            alert, "resolve", "only an active, acknowledged or dispatched alert can be resolved"
        )
    if alert.condition_active and not force:
        raise ConditionStillPresent(
            alert.id,
            "resolve",
            alert.state,
            f"cannot resolve alert {alert.id}: its condition is still present (the rules still"
            " see it); resolve with force: true and a note saying why to override",
        )
    if force and alert.condition_active and not (note and note.strip()):
        raise ValueError("a forced resolve needs a note saying why")
    detail = {"forced": True} if alert.condition_active else {}
    new = replace(
        alert,
        state="cleared",
        cleared_at=now,
        cleared_by=who,
        resume_state=None,
        updated_at=max(alert.updated_at, now),
    )
    return Outcome(
        new, Change(alert.id, "resolved", now, who, alert.state, new.state, note, detail=detail)
    )


def close(alert: Alert, *, who: str, note: str | None, now: int) -> Outcome:
    if alert.state != "cleared":
        raise _refuse(
            alert, "close", "only a cleared alert can be closed (resolve it first if it is fixed)"
        )
    new = replace(
        alert, state="closed", closed_at=now, closed_by=who, updated_at=max(alert.updated_at, now)
    )
    return Outcome(new, Change(alert.id, "closed", now, who, alert.state, new.state, note))


def _refuse(alert: Alert, action: str, why: str) -> InvalidTransition:
    return InvalidTransition(
        alert.id,
        action,
        alert.state,
        f"cannot {action} alert {alert.id}: it is {alert.state}; {why}",
    )


def _plain(value: object) -> object:
    return value if isinstance(value, str | int | float | type(None)) else str(value)


def _change(
    alert: Alert,
    action: str,
    now: int,
    state_from: State | None,
    condition: Condition,
    detail: dict[str, object] | None = None,
) -> Change:
    return Change(
        alert.id,
        action,  # type: ignore[arg-type]
        now,
        RULES_WHO,
        state_from,
        alert.state,
        note=condition.message or None,
        event_at=condition.at_ms,
        detail=detail or {},
    )
