"""`--check`: compare the alerts a scenario expects with those the service raised.

The service is asked through its public API only (contract §3, `GET /api/alerts`), so the check
works against any deployment. Alerts about devices outside the scenario's fleet are ignored; within
it, an expected (rule, device) that never showed up and one that showed up unexpected are both
differences. The check polls until every expected alert is there or the timeout passes, because the
rule engine may still be finishing the last readings when the stream ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

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
    expected: Iterable[ExpectedAlert], alerts: Iterable[dict[str, Any]], scope: set[str]
) -> CheckResult:
    """Match expected against raised alerts (any state: cleared ones were raised too)."""
    want = sorted({(e.rule, e.device) for e in expected})
    raised: dict[Pair, dict[str, Any]] = {}
    for alert in alerts:
        rule, device = alert.get("rule"), alert.get("device")
        if not isinstance(rule, str) or not isinstance(device, str) or device not in scope:
            continue
        raised.setdefault((rule, device), alert)
    want_set = set(want)
    return CheckResult(
        expected=want,
        raised=raised,
        missing=[p for p in want if p not in raised],
        unexpected=sorted(p for p in raised if p not in want_set),
    )


async def fetch_alerts(client: httpx.AsyncClient, api: str) -> list[dict[str, Any]]:
    url = api.rstrip("/") + "/api/alerts"
    try:
        response = await client.get(url, timeout=10.0)
    except httpx.HTTPError as exc:
        raise CheckError(f"GET {url}: {exc}") from exc
    if response.status_code != 200:
        raise CheckError(f"GET {url}: HTTP {response.status_code}")
    try:
        items = response.json()["items"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckError(f"GET {url}: not an alert list ({exc})") from exc
    if not isinstance(items, list):
        raise CheckError(f"GET {url}: items is not a list")
    return [a for a in items if isinstance(a, dict)]


async def run_check(
    api: str,
    expected: list[ExpectedAlert],
    scope: set[str],
    *,
    timeout_s: float = 30.0,
    poll_s: float = 1.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> CheckResult:
    """Poll the service until every expected alert is raised or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(transport=transport) as client:
        while True:
            result = compare(expected, await fetch_alerts(client, api), scope)
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
