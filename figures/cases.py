"""Case figures for a day: how the alerts raised that day were handled against their time limits.

Both clocks a case is judged by are the wall clock's (`opened_at`: when the control centre first
saw it; acknowledged/dispatched/closed: when people acted), so a replayed night is judged fairly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from alerts.model import Alert
from alerts.sla import SlaPolicy


def _responded_at(a: Alert) -> int | None:
    times = [t for t in (a.acknowledged_at, a.dispatched_at) if t is not None]
    return min(times) if times else None


def _mean_minutes(values: Sequence[int]) -> float | None:
    return round(sum(values) / len(values) / 60_000, 1) if values else None


def case_figures(alerts: Sequence[Alert], policy: SlaPolicy, now_ms: int) -> dict[str, Any]:
    opened = len(alerts)
    acked_in_time = closed_in_time = still_open = overdue = closed = 0
    tta: list[int] = []
    ttr: list[int] = []
    for a in alerts:
        start = a.opened_at or a.raised_at
        responded = _responded_at(a)
        response_limit = policy.limit_ms(a.severity, "response")
        resolution_limit = policy.limit_ms(a.severity, "resolution")
        if responded is not None:
            tta.append(max(0, responded - start))
            if response_limit is None or responded - start <= response_limit:
                acked_in_time += 1
        if a.state == "closed" and a.closed_at is not None:
            closed += 1
            ttr.append(max(0, a.closed_at - start))
            if resolution_limit is None or a.closed_at - start <= resolution_limit:
                closed_in_time += 1
        else:
            still_open += 1
        # Late against either limit, whether or not the SLA sweep has marked it yet.
        late = bool(a.overdue)
        if response_limit is not None:
            late = late or (responded if responded is not None else now_ms) - start > response_limit
        if resolution_limit is not None:
            done = a.closed_at if a.state == "closed" and a.closed_at is not None else now_ms
            late = late or done - start > resolution_limit
        overdue += late
    return {
        "opened": opened,
        "acked_in_time": acked_in_time,
        "closed_in_time": closed_in_time,
        "closed": closed,
        "still_open": still_open,
        "overdue": overdue,
        "mtta_min": _mean_minutes(tta),
        "mttr_min": _mean_minutes(ttr),
        "closure_rate": round(100.0 * closed / opened, 1) if opened else None,
    }


def grouped(
    alerts: Sequence[Alert], key: Callable[[Alert], str], policy: SlaPolicy, now_ms: int, name: str
) -> list[dict[str, Any]]:
    groups: dict[str, list[Alert]] = {}
    for a in alerts:
        groups.setdefault(key(a), []).append(a)
    return [{name: k, **case_figures(v, policy, now_ms)} for k, v in sorted(groups.items())]


def day_cases(alerts: Sequence[Alert], policy: SlaPolicy, now_ms: int) -> dict[str, Any]:
    return {
        "overall": case_figures(alerts, policy, now_ms),
        "by_rule": grouped(alerts, lambda a: a.rule, policy, now_ms, "rule"),
        "by_road": grouped(alerts, lambda a: a.road or "", policy, now_ms, "road"),
    }
