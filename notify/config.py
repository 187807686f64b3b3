"""Crew notices: config section `notify` (assembled into Settings by streetwatch.config)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rules.signals import Severity


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CrewConfig(_Model):
    """One maintenance crew: where its notices go and which alerts it takes.

    A crew takes an alert when every list given matches it; an empty list matches anything.
    """

    # Shown in notices and written as `who` in the audit trail when the crew acks from a link.
    name: str = Field(min_length=1, max_length=64)
    # apprise URLs: dingtalk://, wecombot://, feishu://, mailto://, json://, …
    urls: list[str] = Field(min_length=1)
    roads: list[str] = []
    cabinets: list[str] = []
    kinds: list[str] = []  # lamp, waterlevel, cabinet
    rules: list[str] = []
    min_severity: Severity = "warning"


class NotifyConfig(_Model):
    enabled: bool = True
    # zh (default) or en: notices, the ack page, and the rule names and standard messages of alerts.
    language: Literal["zh", "en"] = "zh"
    # The control-centre address links in notices point to (null: notices carry no links).
    base_url: str | None = None
    # Signs one-tap ack links (null: notices carry no ack link). Keep it secret.
    link_secret: str | None = None
    link_ttl_s: int = Field(24 * 3600, ge=60)
    # Per crew channel; beyond it, changes are merged into one digest (nothing is dropped).
    max_per_minute: int = Field(6, ge=1)
    # When the last message of the minute is left, wait this long to gather changes into it.
    digest_wait_s: float = Field(5.0, ge=0)
    # A channel that fails is retried with capped exponential backoff and jitter …
    retry_min_s: float = Field(5.0, gt=0)
    retry_max_s: float = Field(60.0, gt=0)
    # … until a notice is this old; then it is given up and an alert about the channel is raised.
    give_up_after_s: float = Field(24 * 3600.0, gt=0)
    # Map link built from a device's WGS-84 coordinates ({lat} {lon}); null: no map link.
    map_url: str | None = (
        "https://uri.amap.com/marker?position={lon},{lat}&coordinate=wgs84&callnative=0"
    )
    crews: list[CrewConfig] = []
    # apprise URLs for alerts that no crew takes.
    fallback: list[str] = []
    # apprise URLs that escalations (a time limit passed) also go to, e.g. the shift supervisor.
    escalate_to: list[str] = []
    # Sent and given-up notices are kept this long in the outbox, then purged.
    keep_days: float = Field(14.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> NotifyConfig:
        names = [c.name for c in self.crews]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"crews: the name {name!r} is used twice")
        if self.retry_max_s < self.retry_min_s:
            raise ValueError("retry_max_s must be at least retry_min_s")
        if self.base_url is not None and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        if self.map_url is not None:
            try:
                self.map_url.format(lat=0.0, lon=0.0)
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(f"map_url: placeholders are {{lat}} and {{lon}} ({exc})") from None
        return self
