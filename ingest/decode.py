"""Decode and validate one MQTT message (contract §1).

topic → (kind, device, channel); bytes → UTF-8 → JSON; each reading validated on its own. Every
rejection carries a stable reason code, the metric label and the dead-letter log's `reason`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import ValidationError

from devices.errors import RejectedInput
from devices.kinds import KINDS
from devices.messages import Observation
from devices.models import DeviceEvent, DeviceStatus
from devices.topics import TopicParser, TopicParts, alert_topic

FUTURE_LIMIT_MS = 5 * 60 * 1000
KEEP_REJECTIONS = 21  # in detail per message; the rest are counted (see Decoded.more)
DEFAULT_MAX_AGE_S = 30 * 86400.0  # config ingest.max_age

# Every reason the decoder can give; metrics pre-create a counter for each so dashboards show zeros.
REASONS = (
    "payload_too_large",
    "not_utf8",
    "not_json",
    "non_finite",
    "bad_topic",
    "unknown_kind",
    "unknown_channel",
    "bad_device_id",
    "not_object",
    "empty_array",
    "missing_ts",
    "bad_ts",
    "ts_in_future",
    "ts_too_old",
    "missing_field",
    "wrong_type",
    "out_of_range",
    "bad_event",
    "store_rejected",
    "internal_error",
)


@dataclass(slots=True)
class Rejection:
    reason: str
    detail: str
    index: int | None = None  # position in an array payload
    item: Any = None  # the offending reading, when the payload was an array


@dataclass(slots=True)
class Decoded:
    parts: TopicParts | None
    accepted: list[Observation] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    ignored: bool = False  # e.g. an empty retained status: nothing to store, nothing wrong
    # Rejections past the first KEEP_REJECTIONS, counted by reason only: a gateway array of
    # 120,000 bad items must not become 120,000 objects (memory, and the loop freeing them).
    more: dict[str, int] = field(default_factory=dict)

    def reject(self, rejection: Rejection) -> None:
        if len(self.rejected) < KEEP_REJECTIONS:
            self.rejected.append(rejection)
        else:
            self.more[rejection.reason] = self.more.get(rejection.reason, 0) + 1

    @property
    def rejected_total(self) -> int:
        return len(self.rejected) + sum(self.more.values())


def _reason_from_validation(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(p) for p in err["loc"]) or "payload"
    kind = err["type"]
    msg = f"{loc}: {err['msg']}"
    if loc == "ts":
        return ("missing_ts" if kind == "missing" else "bad_ts"), msg
    if kind == "missing":
        return "missing_field", msg
    if kind == "finite_number":
        return "non_finite", msg
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        return "out_of_range", msg
    if loc in {"event", "state"}:
        return "bad_event", msg
    return "wrong_type", msg


class Decoder:
    """Turns (topic, payload bytes) into observations and rejections. Never raises on input."""

    def __init__(
        self, prefix: str, max_payload_bytes: int, max_age_s: float = DEFAULT_MAX_AGE_S
    ) -> None:
        self.topics = TopicParser(prefix)
        self.max_payload_bytes = max_payload_bytes
        self.max_age_ms = int(max_age_s * 1000)
        # The service's own alert feed ({prefix}/alerts/{rule}/{device}) matches the ingest's
        # {prefix}/+/+/+ subscription: it is our output, not a device's input.
        self._own_alerts = alert_topic(prefix, "", "").rstrip("/") + "/"

    def decode(self, topic: str, payload: bytes, now_ms: int) -> Decoded:
        if topic.startswith(self._own_alerts):
            return Decoded(None, ignored=True)
        try:
            parts = self.topics.parse(topic)
        except RejectedInput as exc:
            return Decoded(None, rejected=[Rejection(exc.reason, exc.detail)])
        out = Decoded(parts)
        if len(payload) > self.max_payload_bytes:
            out.reject(
                Rejection(
                    "payload_too_large",
                    f"{len(payload)} bytes > mqtt.max_payload_bytes {self.max_payload_bytes}",
                )
            )
            return out
        if parts.channel == "status" and not payload:
            out.ignored = True  # an empty retained message clears a last will; nothing to store
            return out
        if (
            parts.channel == "telemetry"
            and payload[:1] == b"{"
            and b"NaN" not in payload  # pydantic's parser takes NaN/Infinity in ignored fields;
            and b"Infinity" not in payload  # the contract refuses them anywhere (not JSON)
        ):
            # Fast path for the common case, one valid reading: pydantic parses the JSON itself.
            # Anything it refuses goes the slow way below, which classifies the reason exactly.
            try:
                reading = KINDS[parts.kind].reading_model.model_validate_json(payload)
            except ValidationError:
                pass
            else:
                self._accept(parts, reading, now_ms, out, None, None)
                return out
        try:
            body = orjson.loads(payload)  # orjson refuses invalid UTF-8 too
        except orjson.JSONDecodeError as exc:
            out.reject(_classify_bad_json(payload, exc))
            return out
        if parts.channel == "telemetry":
            if isinstance(body, list):
                if not body:
                    out.reject(Rejection("empty_array", "telemetry array has no readings"))
                for index, item in enumerate(body):
                    self._one(parts, item, now_ms, out, index)
            else:
                self._one(parts, body, now_ms, out, None)
        else:
            self._one(parts, body, now_ms, out, None)
        return out

    def _one(
        self, parts: TopicParts, item: Any, now_ms: int, out: Decoded, index: int | None
    ) -> None:
        in_array = index is not None
        if not isinstance(item, dict):
            out.reject(
                Rejection(
                    "not_object",
                    f"{parts.channel} payload must be a JSON object"
                    + (" (array item)" if in_array else ""),
                    index,
                    item if in_array else None,
                )
            )
            return
        channel = parts.channel
        try:
            data: Any
            if channel == "telemetry":
                data = KINDS[parts.kind].reading_model.model_validate(item)
            elif channel == "event":
                data = DeviceEvent.model_validate(item)
            else:
                data = DeviceStatus.model_validate(item)
        except ValidationError as exc:
            reason, detail = _reason_from_validation(exc)
            out.reject(Rejection(reason, detail, index, item if in_array else None))
            return
        self._accept(parts, data, now_ms, out, index, item if in_array else None)

    def _accept(
        self, parts: TopicParts, data: Any, now_ms: int, out: Decoded, index: int | None, item: Any
    ) -> None:
        ts = data.ts
        if ts is not None:
            if ts - now_ms > FUTURE_LIMIT_MS:
                out.reject(
                    Rejection(
                        "ts_in_future",
                        f"ts {ts} is {(ts - now_ms) / 1000:.0f} s ahead of the service clock",
                        index,
                        item,
                    )
                )
                return
            if ts < 0 or ts > 253_402_300_799_000:  # year 1970 … 9999: what InfluxDB can store
                out.reject(Rejection("bad_ts", f"ts {ts} out of range", index, item))
                return
            # A status is state, not a reading (nothing is stored): a retained last will from a
            # device gone for months still tells the rules it is offline.
            if now_ms - ts > self.max_age_ms and parts.channel != "status":
                out.reject(
                    Rejection(
                        "ts_too_old",
                        f"ts {ts} is {(now_ms - ts) / 86_400_000:.1f} days old, older than "
                        f"ingest.max_age ({self.max_age_ms / 86_400_000:g} days)",
                        index,
                        item,
                    )
                )
                return
        out.accepted.append(Observation(parts.kind, parts.device_id, parts.channel, data, now_ms))


def _classify_bad_json(payload: bytes, exc: Exception) -> Rejection:
    """orjson refuses bad UTF-8 and NaN/Infinity like any bad JSON; tell those apart."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        return Rejection("not_utf8", str(err))
    try:
        loose = json.loads(text)
    except (ValueError, RecursionError):
        return Rejection("not_json", str(exc))
    if _has_non_finite(loose):
        return Rejection("non_finite", "NaN or Infinity is not a number a device may send")
    return Rejection("not_json", str(exc))


def _has_non_finite(value: Any, depth: int = 0) -> bool:
    if depth > 64:
        return False
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v, depth + 1) for v in value)
    return False
