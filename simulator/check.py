"""`--check`: compare the alerts a scenario expects with those the service raised.

The service is asked through its public API only (`GET /api/alerts`, contract §3, and each alert's
audit trail), so the check works against any deployment. Alerts about devices outside the
scenario's fleet are ignored; within it, an expected (rule, device) that never showed up and one that
showed up unexpected are both differences. The check polls until every expected alert is there or
the timeout passes, because the rule engine may still be finishing the last readings.

Only this run's alerts count. Alert times are event time (a replayed July night raises July
alerts), so the API is asked with `since` = the run's first timestamp, and an alert counts only if
its audit trail shows the service raising, re-raising or updating it (wall time `at`) after the
check's run began: a rerun against the same service never passes on an earlier run's alerts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from simulator.errors import CheckError
from simulator.scenario import ExpectedAlert

Pair = tuple[str, str]  # (rule, device)


@dataclass(slots=True)
class CheckResult:
    expected: list[Pair]
    raised: dict[Pair, dict[str, Any]]  # (rule, device) → the alert as the API returned it
    missing: list[Pair] = field(default_factory=list)
    unexpected: list[Pair] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected


def compare(
    expected: Iterable[ExpectedAlert],
    alerts: Iterable[dict[str, Any]],
    scope: set[str],
    *,
    fresh: Callable[[dict[str, Any]], bool] | None = None,
) -> CheckResult:
    """Match expected against raised alerts (any state: cleared ones were raised too).

    `fresh`: whether an alert belongs to this run (None: every alert does).
    """
    want = sorted({(e.rule, e.device) for e in expected})
    raised: dict[Pair, dict[str, Any]] = {}
    for alert in alerts:
        rule, device = alert.get("rule"), alert.get("device")
        if not isinstance(rule, str) or not isinstance(device, str) or device not in scope:
            continue
        if fresh is not None and not fresh(alert):
            continue
        raised.setdefault((rule, device), alert)
    want_set = set(want)
    return CheckResult(
        expected=want,
        raised=raised,
        missing=[p for p in want if p not in raised],
        unexpected=sorted(p for p in raised if p not in want_set),
    )


def rfc3339_utc(when_ms: int) -> str:
    return dt.datetime.fromtimestamp(when_ms / 1000, dt.UTC).isoformat(timespec="milliseconds")


def _epoch_s(text: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None


async def _get(client: httpx.AsyncClient, url: str, params: dict[str, str]) -> Any:
    try:
        response = await client.get(url, params=params, timeout=10.0)
    except httpx.HTTPError as exc:
        raise CheckError(f"GET {url}: {exc}") from exc
    if response.status_code != 200:
        raise CheckError(f"GET {url}: HTTP {response.status_code}")
    try:
        items = response.json()["items"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckError(f"GET {url}: not a list of items ({exc})") from exc
    if not isinstance(items, list):
        raise CheckError(f"GET {url}: items is not a list")
    return [a for a in items if isinstance(a, dict)]


async def fetch_alerts(
    client: httpx.AsyncClient, api: str, *, since_ms: int | None = None
) -> list[dict[str, Any]]:
    params = {"limit": "1000"}
    if since_ms is not None:
        params["since"] = rfc3339_utc(since_ms)
    result: list[dict[str, Any]] = await _get(client, api.rstrip("/") + "/api/alerts", params)
    return result


RAISING = frozenset({"raised", "reactivated", "updated"})


class RunFilter:
    """Whether an alert was raised (or re-raised, or updated) by the service since `started_s`."""

    def __init__(self, client: httpx.AsyncClient, api: str, started_s: float) -> None:
        self.client = client
        self.api = api.rstrip("/")
        self.started_s = math.floor(started_s) - 1.0  # the service may round to the second
        self.known: dict[tuple[str, str], bool] = {}

    async def prepare(self, alerts: list[dict[str, Any]], scope: set[str]) -> None:
        for alert in alerts:
            alert_id, updated = alert.get("id"), alert.get("updated_at")
            if not isinstance(alert_id, str) or alert.get("device") not in scope:
                continue
            key = (alert_id, str(updated))
            if key in self.known:
                continue
            url = f"{self.api}/api/alerts/{quote(alert_id, safe='')}/history"
            changes = await _get(self.client, url, {})
            self.known[key] = any(
                c.get("action") in RAISING and (_epoch_s(c.get("at")) or 0.0) >= self.started_s
                for c in changes
            )

    def __call__(self, alert: dict[str, Any]) -> bool:
        return self.known.get((str(alert.get("id")), str(alert.get("updated_at"))), False)


async def run_check(
    api: str,
    expected: list[ExpectedAlert],
    scope: set[str],
    *,
    timeout_s: float = 30.0,
    poll_s: float = 1.0,
    since_ms: int | None = None,
    started_s: float | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> CheckResult:
    """Poll the service until every expected alert is raised or `timeout_s` passes.

    `since_ms`: the run's first timestamp (event time): alerts not updated since are not asked
    for. `started_s`: when the run began (wall clock): alerts the service has not raised or
    updated since then are an earlier run's and do not count.
    """
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(transport=transport) as client:
        run = None if started_s is None else RunFilter(client, api, started_s)
        while True:
            alerts = await fetch_alerts(client, api, since_ms=since_ms)
            if run is not None:
                await run.prepare(alerts, scope)
            result = compare(expected, alerts, scope, fresh=run)
            if not result.missing or time.monotonic() >= deadline:
                return result
            await asyncio.sleep(poll_s)


def report_lines(result: CheckResult) -> list[str]:
    """Plain-text report: one line per (rule, device), then the verdict."""
    lines = [f"{'':2}{'rule':<24}{'device':<16}{'expected':<10}{'raised':<10}state"]
    pairs = sorted(set(result.expected) | set(result.raised))
    want = set(result.expected)
    for pair in pairs:
        alert = result.raised.get(pair)
        mark = "ok" if (pair in want) == (alert is not None) else "!!"
        state = f"{alert.get('state', '')} {alert.get('severity', '')}".strip() if alert else ""
        lines.append(
            f"{mark:<2}{pair[0]:<24}{pair[1]:<16}{'yes' if pair in want else 'no':<10}"
            f"{'yes' if alert else 'no':<10}{state}"
        )
    verdict = "PASS" if result.ok else "FAIL"
    lines.append(
        f"{verdict}: {len(result.expected) - len(result.missing)}/{len(result.expected)} expected "
        f"alerts raised, {len(result.missing)} missing, {len(result.unexpected)} unexpected"
    )
    return lines
