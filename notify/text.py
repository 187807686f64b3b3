"""What a crew member reads on a phone: one notice per alert change, or a digest of many.

    【紧急】洸河路 L-GHL-014 路灯不亮
    事件：新告警
    道路：洸河路
    灯杆：L-GHL-014
    配电箱：C1
    坐标：35.41500, 116.58700
    地图：https://…
    …

Plain text (no markup): registry and device text (a road name, a device's message) is data, so a
`<img onerror=…>` in a road name reaches the crew as those characters and nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote
from zoneinfo import ZoneInfo

from alerts.model import Alert
from devices.catalog import (
    Language,
    kind_name,
    phrase,
    rule_name,
    severity_name,
    state_name,
)
from devices.registry import Device

# Notice events: which alert changes make a notice (acknowledged, dispatched, closed do not).
EVENTS = ("raised", "up", "reminder", "escalation", "cleared", "test")


@dataclass(frozen=True, slots=True)
class Notice:
    title: str
    body: str
    line: str  # one line for a digest
    road: str | None


@dataclass(frozen=True, slots=True)
class Place:
    """Where an alert is, from the registry (all optional)."""

    point: str | None = None
    cabinet: str | None = None
    lat: float | None = None
    lon: float | None = None

    @classmethod
    def of(cls, alert: Alert, device: Device | None) -> Place:
        extra = alert.extra or {}
        cabinet = extra.get("cabinet") or (device.cabinet if device else None)
        if alert.kind == "cabinet":
            cabinet = alert.device
        return cls(
            point=extra.get("point") or (device.point if device else None),
            cabinet=cabinet,
            lat=device.lat if device else None,
            lon=device.lon if device else None,
        )


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def fit(title: str, body: str, limit: int, keep: tuple[str, ...] = ("://",)) -> tuple[str, str]:
    """Title and body cut to `limit` UTF-8 bytes in all, for a channel that refuses longer messages:
    long lines (registry or device text: a road name, a device's message) are shortened with "…",
    lines holding any of `keep` (links, the alert id) never. Short messages come back as they are."""

    def size(t: str, b: str) -> int:
        return len(t.encode()) + 2 + len(b.encode())

    if size(title, body) <= limit:
        return title, body
    lines = body.split("\n")
    width = max([len(title), *(len(line) for line in lines)])
    while width > 8:
        width = width * 3 // 4
        t = _cut(title, width)
        b = "\n".join(line if any(k in line for k in keep) else _cut(line, width) for line in lines)
        if size(t, b) <= limit:
            return t, b
    return t, b  # as short as it gets without losing the links and the id


class Writer:
    """Renders notices in one language with the deployment's links.

    Args:
        language: zh or en.
        timezone: local time zone for "since" (the crew's clock, not UTC).
        base_url: the control-centre address (None: no links).
        map_url: a template with {lat} {lon} (None: no map link).
    """

    def __init__(
        self,
        *,
        language: Language,
        timezone: str,
        base_url: str | None,
        map_url: str | None,
    ) -> None:
        self.lang: Language = language
        self.tz = ZoneInfo(timezone)
        self.base_url = base_url.rstrip("/") if base_url else None
        self.map_url = map_url

    def local_time(self, ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).astimezone(self.tz).strftime("%Y-%m-%d %H:%M")

    def alert_url(self, alert_id: str) -> str | None:
        return f"{self.base_url}/?alert={quote(alert_id)}" if self.base_url else None

    def map_link(self, place: Place) -> str | None:
        if self.map_url is None or place.lat is None or place.lon is None:
            return None
        return self.map_url.format(lat=f"{place.lat:.6f}", lon=f"{place.lon:.6f}")

    def tag(self, alert: Alert, event: str) -> str:
        sev = severity_name(alert.severity, self.lang)
        if event == "cleared":
            return phrase("event.cleared", self.lang)
        if event in ("up", "reminder", "escalation", "test"):
            return f"{phrase('event.' + event, self.lang)}·{sev}"
        return sev

    def headline(self, alert: Alert) -> str:
        """`洸河路 L-GHL-014 路灯不亮`"""
        parts = [p for p in (alert.road, alert.device, rule_name(alert.rule, self.lang)) if p]
        return " ".join(parts)

    def notice(
        self,
        alert: Alert,
        event: str,
        place: Place,
        *,
        ack_link: str | None = None,
    ) -> Notice:
        lang = self.lang
        sep = "：" if lang == "zh" else ": "
        title = f"【{self.tag(alert, event)}】{self.headline(alert)}"
        line = f"【{self.tag(alert, event)}】{self.headline(alert)} ({alert.id[:8]})"
        if event == "cleared":
            # One line: the crew already has the details from the raise.
            at = self.local_time(
                alert.cleared_at if alert.cleared_at is not None else alert.updated_at
            )
            sep = "，" if lang == "zh" else ", "
            body = sep.join(
                [
                    f"{phrase('event.cleared', lang)}{'：' if lang == 'zh' else ': '}{self.headline(alert)}",
                    at,
                    alert.id,
                ]
            )
            return Notice(title=title, body=body, line=line, road=alert.road)
        lines = [
            f"{phrase('label.' + k, lang)}{sep}{v}" for k, v in self._facts(alert, event, place)
        ]
        if ack_link and event != "cleared" and alert.state == "active":
            lines.append(f"{phrase('label.ack_link', lang)}{sep}{ack_link}")
        return Notice(title=title, body="\n".join(lines), line=line, road=alert.road)

    def _facts(self, alert: Alert, event: str, place: Place) -> list[tuple[str, str]]:
        lang = self.lang
        facts: list[tuple[str, str]] = [("event", phrase("event." + event, lang))]
        facts.append(("road", alert.road or phrase("road.unknown", lang)))
        if alert.kind == "lamp":
            facts.append(("pole", alert.device))
        elif alert.kind == "waterlevel":
            facts.append(("device", alert.device))
            if place.point:
                facts.append(("point", place.point))
        else:
            facts.append(("device", f"{alert.device} ({kind_name(alert.kind, lang)})"))
        if place.cabinet and alert.kind != "cabinet":
            facts.append(("cabinet", place.cabinet))
        if place.lat is not None and place.lon is not None:
            facts.append(("coords", f"{place.lat:.5f}, {place.lon:.5f}"))
            link = self.map_link(place)
            if link:
                facts.append(("map", link))
        facts.append(("since", self.local_time(alert.raised_at)))
        if event == "cleared" and alert.cleared_at is not None:
            facts.append(("cleared_at", self.local_time(alert.cleared_at)))
        if alert.value is not None and math.isfinite(alert.value):
            facts.append(("value", f"{alert.value:g}"))
        if alert.level is not None:
            facts.append(("level", str(alert.level)))
        facts.append(("severity", severity_name(alert.severity, lang)))
        facts.append(("state", state_name(alert.state, lang)))
        if alert.escalation:
            facts.append(("escalation", str(alert.escalation)))
        if alert.message:
            facts.append(("detail", alert.message))
        facts.append(("alert_id", alert.id))
        url = self.alert_url(alert.id)
        if url:
            facts.append(("link", url))
        return facts

    def digest(self, lines: list[str], roads: list[str | None]) -> tuple[str, str]:
        """Title and body for many changes at once: every change named, one link."""
        lang = self.lang
        named = sorted({r or phrase("road.unknown", lang) for r in roads})
        n = len(lines)
        if len(named) == 1:
            title = phrase("digest.title_road", lang, road=named[0], n=n)
        else:
            shown = "、".join(named[:3]) if lang == "zh" else ", ".join(named[:3])
            if len(named) > 3:
                shown += " " + phrase("digest.more_roads", lang, n=len(named) - 3)
            title = phrase("digest.title_many", lang, n=n, roads=shown)
        body = [phrase("digest.intro", lang)]
        body += [f"{i}. {line}" for i, line in enumerate(lines, 1)]
        if self.base_url:
            body.append(
                f"{phrase('label.link', lang)}{'：' if lang == 'zh' else ': '}{self.base_url}/"
            )
        return title, "\n".join(body)

    def test_notice(self, crew: str) -> tuple[str, str]:
        title = f"【{phrase('event.test', self.lang)}】{crew}"
        return title, phrase("test.body", self.lang)
