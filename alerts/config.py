"""Alert lifecycle settings (config section `alerts`, owned by this package).

Durations are written as `90s`, `30m`, `24h`, `7d` (or a plain number of seconds); `null` switches a
limit off. Assembled into `streetwatch.config.Settings` as `settings.alerts`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> Any:
    """`"1h30m"` → 5400.0 seconds; numbers pass through; anything else is left for pydantic to refuse."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "null", "none", "off"):
            return None
        try:
            return float(text)
        except ValueError:
            pass
        parts = _DURATION_RE.findall(text)
        if parts and "".join(_DURATION_RE.sub("", text).split()) == "":
            return sum(float(n) * _UNIT_S[u] for n, u in parts)
        raise ValueError(f"not a duration: {value!r} (write e.g. 90s, 30m, 24h, 7d)")
    return value


def _positive(value: float | None) -> float | None:
    if value is not None and value <= 0:
        raise ValueError("a duration must be > 0 (null switches the limit off)")
    return value


# A limit in seconds, or None (off). `off`/`null` strings also switch it off (handy from the environment).
OptionalDuration = Annotated[
    float | None, BeforeValidator(parse_duration), AfterValidator(_positive)
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeverityLimits(_Section):
    """How long a case of one severity may wait for a response (ack/dispatch) and a resolution."""

    response: OptionalDuration = None
    resolution: OptionalDuration = None


_DEFAULT_LIMITS: dict[str, dict[str, float | None]] = {
    # City repair norms: 30-minute arrival, 24-hour repair for critical cases.
    "critical": {"response": 30 * 60, "resolution": 24 * 3600},
    "major": {"response": 2 * 3600, "resolution": 48 * 3600},
    "minor": {"response": 8 * 3600, "resolution": 72 * 3600},
    "warning": {"response": 24 * 3600, "resolution": 7 * 86400},
}


class SlaConfig(_Section):
    enabled: bool = True
    # How often the scheduler looks for reminders and passed limits.
    check_interval_s: float = Field(30.0, ge=0.1)
    # A reminder goes out once this fraction of a limit has passed (0.5: half-way).
    remind_at: float = Field(0.5, gt=0, lt=1)
    # Each further full limit period past due escalates one level more, up to this many.
    max_escalations: int = Field(3, ge=1)
    critical: SeverityLimits = SeverityLimits(**_DEFAULT_LIMITS["critical"])
    major: SeverityLimits = SeverityLimits(**_DEFAULT_LIMITS["major"])
    minor: SeverityLimits = SeverityLimits(**_DEFAULT_LIMITS["minor"])
    warning: SeverityLimits = SeverityLimits(**_DEFAULT_LIMITS["warning"])

    @model_validator(mode="before")
    @classmethod
    def _keep_unset_limits(cls, data: Any) -> Any:
        # Setting only `critical.response` must not switch `critical.resolution` off.
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for severity, defaults in _DEFAULT_LIMITS.items():
            given = out.get(severity)
            if isinstance(given, dict):
                out[severity] = {**defaults, **given}
        return out

    def limits(self, severity: str) -> SeverityLimits:
        """The limits of a severity (an unknown severity has none)."""
        found = getattr(self, severity, None)
        return found if isinstance(found, SeverityLimits) else SeverityLimits()


class AlertsMqttConfig(_Section):
    """The alert publisher; broker, credentials and TLS come from the `mqtt` section."""

    enabled: bool = True
    # Appended to mqtt.client_id: the publisher must not share the ingest's session.
    client_id_suffix: str = Field("-alerts", min_length=1)
    # Changes waiting for the broker. When full, only the latest state per topic is kept.
    queue_max: int = Field(100_000, ge=10)
    # Publishes in flight at once (awaiting PUBACK).
    window: int = Field(100, ge=1, le=10_000)
    # A batch not acknowledged within this time counts as a lost connection (reconnect, resend).
    publish_timeout_s: float = Field(10.0, gt=0)


class AlertsConfig(_Section):
    enabled: bool = True
    # SQLite file of alerts and their audit trail; relative paths are under storage.data_dir.
    db_file: str = Field("alerts.sqlite", min_length=1)
    # GET /api/alerts: items returned when `limit` is not given, and the most it may ask for.
    default_limit: int = Field(100, ge=1)
    max_limit: int = Field(1000, ge=1)
    # Changes buffered per in-memory subscriber (SSE); a slower one loses the oldest and is told.
    subscriber_queue: int = Field(1000, ge=1)
    # Live streams (GET /api/alerts/stream) open at once; one more is answered 429.
    max_stream_clients: int = Field(100, ge=1)
    # Closed alerts (and their audit trail) older than this many days are purged by a daily job;
    # null keeps them for ever.
    retention_days: float | None = Field(400, gt=0)
    sla: SlaConfig = SlaConfig()
    mqtt: AlertsMqttConfig = AlertsMqttConfig()
