"""Which crews take an alert, and over which channels.

A crew takes an alert when every list it gives matches (road, cabinet, device kind, rule) and the
alert is at least its `min_severity`; several crews may take one alert. What no crew takes goes to
`notify.fallback`; escalations also go to `notify.escalate_to`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from alerts.model import Alert
from devices.registry import Registry
from notify.config import CrewConfig, NotifyConfig
from notify.text import Place

FALLBACK = "(fallback)"
ESCALATION = "(escalate_to)"
RANK = {"warning": 0, "minor": 1, "major": 2, "critical": 3}


def channel_id(url: str) -> str:
    """A stable name for a URL that never shows its secrets: `json-3fa2c1d0`."""
    scheme = urlsplit(url).scheme or "url"
    return f"{scheme}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"


@dataclass(frozen=True, slots=True)
class Target:
    crew: str
    channel: str
    url: str


def matches(crew: CrewConfig, alert: Alert, place: Place) -> bool:
    if crew.roads and alert.road not in crew.roads:
        return False
    if crew.cabinets and place.cabinet not in crew.cabinets:
        return False
    if crew.kinds and alert.kind not in crew.kinds:
        return False
    if crew.rules and alert.rule not in crew.rules:
        return False
    return RANK.get(alert.severity, 0) >= RANK[crew.min_severity]


class Router:
    def __init__(self, config: NotifyConfig) -> None:
        self.config = config
        self.crews = config.crews
        self.by_crew: dict[str, list[Target]] = {
            c.name: [Target(c.name, channel_id(u), u) for u in c.urls] for c in config.crews
        }
        self.fallback = [Target(FALLBACK, channel_id(u), u) for u in config.fallback]
        self.escalation = [Target(ESCALATION, channel_id(u), u) for u in config.escalate_to]

    def all_targets(self) -> list[Target]:
        out = [t for ts in self.by_crew.values() for t in ts] + self.fallback + self.escalation
        seen: set[tuple[str, str]] = set()
        unique = []
        for t in out:
            if (t.crew, t.channel) not in seen:
                seen.add((t.crew, t.channel))
                unique.append(t)
        return unique

    def crews_for(self, alert: Alert, place: Place) -> list[CrewConfig]:
        return [c for c in self.crews if matches(c, alert, place)]

    def targets(self, alert: Alert, place: Place, event: str) -> list[Target]:
        crews = self.crews_for(alert, place)
        out = [t for c in crews for t in self.by_crew[c.name]] if crews else list(self.fallback)
        if event == "escalation":
            out += self.escalation
        return out


def coverage(config: NotifyConfig, registry: Registry) -> tuple[list[str], list[str]]:
    """Roads and cabinets of the registry that no crew covers (at any severity), as
    (roads, cabinets). A road is covered when some crew takes an alert of some device on it."""
    roads: set[str] = set()
    cabinets: set[str] = set()
    for device in registry:
        if device.road and not _covered(config.crews, road=device.road, kind=device.kind):
            roads.add(device.road)
        if device.cabinet and not _covered(
            config.crews, road=device.road, cabinet=device.cabinet, kind=device.kind
        ):
            cabinets.add(device.cabinet)
    return sorted(roads), sorted(cabinets)


def _covered(
    crews: Iterable[CrewConfig], *, road: str | None, kind: str, cabinet: str | None = None
) -> bool:
    for crew in crews:
        if crew.roads and road not in crew.roads:
            continue
        if cabinet is not None and crew.cabinets and cabinet not in crew.cabinets:
            continue
        if cabinet is None and crew.cabinets:
            # A crew tied to cabinets covers a road only through them; judged per cabinet.
            continue
        if crew.kinds and kind not in crew.kinds:
            continue
        return True
    return False
