"""Pydantic models of what devices send (contract §1).

Numbers are strict: a JSON bool is not a number and a string is not a bool, because a gateway that
sends `"on": "true"` has a bug the crew should hear about, not a reading silently coerced.
Every number is finite (NaN and Infinity are rejected) and becomes a float.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

EVENT_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
STANDARD_EVENTS = (
    "lampFailure",
    "supplyLoss",
    "leakageDetected",
    "doorOpen",
    "tiltDetected",
    "driverFailure",
    "sensorFault",
)


def _ts_to_ms(value: Any) -> int:
    """`ts` is integer ms since the epoch, or an RFC 3339 string that carries an offset."""
    if isinstance(value, bool):
        raise ValueError("ts must be integer milliseconds or an RFC 3339 string")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return rfc3339_to_ms(value)
    raise ValueError("ts must be integer milliseconds or an RFC 3339 string")


def rfc3339_to_ms(value: str) -> int:
    """An RFC 3339 time that carries an offset (`Z` or ±hh:mm) → epoch ms. ValueError if not."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"time {value!r} is not RFC 3339") from exc
    if parsed.tzinfo is None:
        raise ValueError(f"time {value!r} has no UTC offset (e.g. Z or +08:00)")
    return int(parsed.timestamp() * 1000)


TimestampMs = Annotated[int, BeforeValidator(_ts_to_ms)]


def _num(lo: float | None = None, hi: float | None = None) -> Any:
    return Field(default=None, ge=lo, le=hi, strict=True, allow_inf_nan=False)


class Reading(BaseModel):
    """Fields every telemetry reading has."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    kind: ClassVar[str] = ""

    ts: TimestampMs
    seq: int | None = Field(default=None, strict=True)

    def numeric_fields(self) -> dict[str, float]:
        """The reading's numeric fields that are present, as floats."""
        out: dict[str, float] = {}
        for name in self.__class__.number_fields:
            value = getattr(self, name)
            if value is not None:
                out[name] = float(value)
        return out

    number_fields: ClassVar[tuple[str, ...]] = ()


class LampReading(Reading):
    """Single-lamp controller reading."""

    kind: ClassVar[str] = "lamp"
    number_fields: ClassVar[tuple[str, ...]] = (
        "dim",
        "voltage",
        "current",
        "power",
        "power_factor",
        "energy",
        "temperature",
        "rssi",
    )

    on: bool = Field(strict=True)
    dim: float | None = _num(0, 100)
    voltage: float | None = _num(0, 400)
    current: float | None = _num(0, 20)
    power: float | None = _num(0, 5000)
    power_factor: float | None = _num(0, 1)
    energy: float | None = _num(0, None)
    temperature: float | None = _num(-50, 150)
    rssi: float | None = _num(-150, 0)

    @property
    def effective_dim(self) -> float:
        """Dim level in %, with the contract's default (100 when on)."""
        if self.dim is not None:
            return self.dim
        return 100.0 if self.on else 0.0


class WaterLevelReading(Reading):
    """Waterlogging-point depth sensor reading."""

    kind: ClassVar[str] = "waterlevel"
    number_fields: ClassVar[tuple[str, ...]] = ("depth_cm", "rain_mm", "battery", "rssi")

    depth_cm: float = Field(ge=0, le=500, strict=True, allow_inf_nan=False)
    rain_mm: float | None = _num(0, 500)
    battery: float | None = _num(0, 100)
    rssi: float | None = _num(-150, 0)


class DeviceEvent(BaseModel):
    """A fault the device detected itself (`event` channel)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    ts: TimestampMs
    event: str = Field(strict=True, pattern=EVENT_NAME_RE.pattern)
    state: Literal["raised", "cleared"]

    @property
    def raised(self) -> bool:
        return self.state == "raised"


class DeviceStatus(BaseModel):
    """Online / offline (`status` channel, normally the device's retained last will)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    online: bool = Field(strict=True)
    ts: TimestampMs | None = None
