"""Broken messages a real device or gateway could send, one per ingest rejection reason.

Each is what a plausible bug looks like (a gateway sending GBK, a firmware printing NaN, a clock
set to the wrong year), so the dead-letter log in a test reads like the field's. The reasons are the
ingest decoder's stable codes; tests check each builder against `ingest.decode.Decoder`.
"""

from __future__ import annotations

import orjson

from devices.topics import device_topic

# Every reason in ingest.decode.REASONS that a device can cause (bad_topic needs a foreign prefix,
# store_rejected the database, internal_error a bug of ours: none is the device's doing).
DEVICE_REASONS: tuple[str, ...] = (
    "not_json",
    "not_utf8",
    "non_finite",
    "missing_ts",
    "bad_ts",
    "ts_in_future",
    "ts_too_old",
    "missing_field",
    "wrong_type",
    "out_of_range",
    "bad_device_id",
    "unknown_kind",
    "unknown_channel",
    "payload_too_large",
    "not_object",
    "empty_array",
    "bad_event",
)
# Reasons one reading inside a gateway's array can be refused for, leaving its neighbours accepted
# (NaN or broken JSON would spoil the whole payload, so they are not among them).
ARRAY_REASONS: tuple[str, ...] = (
    "missing_ts",
    "bad_ts",
    "ts_in_future",
    "missing_field",
    "wrong_type",
    "out_of_range",
    "not_object",
)
# Reasons a `status` payload (a will set up wrong, a firmware's own idea of "online") is refused for.
STATUS_REASONS: tuple[str, ...] = (
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "bad_ts",
)
# Far enough ahead to be "in the future" for any service clock for decades, yet a valid year.
_FUTURE_MS = 50 * 365 * 86_400_000


def _reading(kind: str, ts_ms: int, seq: int) -> dict[str, object]:
    if kind == "waterlevel":
        return {"ts": ts_ms, "seq": seq, "depth_cm": 0.0, "rain_mm": 0.0, "battery": 80.0}
    return {"ts": ts_ms, "seq": seq, "on": True, "dim": 100, "voltage": 221.3, "power": 150.2}


def build(
    reason: str,
    *,
    prefix: str,
    kind: str,
    device_id: str,
    ts_ms: int,
    seq: int,
    max_payload_bytes: int = 262_144,
) -> tuple[str, bytes]:
    """(topic, payload) of one message the ingest must reject with `reason`."""
    topic = device_topic(prefix, kind, device_id, "telemetry")
    good = _reading(kind, ts_ms, seq)
    required = "depth_cm" if kind == "waterlevel" else "on"
    if reason == "not_json":  # the modem cut the packet short
        return topic, orjson.dumps(good)[:-9]
    if reason == "not_utf8":  # a gateway configured for GBK adds the road name
        text = orjson.dumps({**good, "road": "洸河路"}).decode()
        return topic, text.encode("gbk")
    if reason == "non_finite":  # firmware printf of a failed ADC read
        field = "depth_cm" if kind == "waterlevel" else "voltage"
        return topic, orjson.dumps(good).replace(
            f'"{field}":'.encode(), f'"{field}":NaN,"_was":'.encode()
        )
    if reason == "missing_ts":
        return topic, orjson.dumps({k: v for k, v in good.items() if k != "ts"})
    if reason == "bad_ts":  # local time without an offset
        return topic, orjson.dumps({**good, "ts": "2026-07-15 20:00:00"})
    if reason == "ts_in_future":  # RTC lost its battery and came back in the wrong decade
        return topic, orjson.dumps({**good, "ts": ts_ms + _FUTURE_MS})
    if reason == "ts_too_old":  # firmware sending seconds where milliseconds belong: 1970
        return topic, orjson.dumps({**good, "ts": ts_ms // 1000})
    if reason == "missing_field":
        return topic, orjson.dumps({k: v for k, v in good.items() if k != required})
    if reason == "wrong_type":  # a gateway that stringifies everything
        value: object = "12.5" if kind == "waterlevel" else "true"
        return topic, orjson.dumps({**good, required: value})
    if reason == "out_of_range":  # a sign error in the firmware
        field, bad = ("depth_cm", -3.0) if kind == "waterlevel" else ("power_factor", 1.7)
        return topic, orjson.dumps({**good, field: bad})
    if reason == "bad_device_id":  # an installer typed the pole's label as the id
        return device_topic(prefix, kind, "路灯 " + device_id, "telemetry"), orjson.dumps(good)
    if reason == "unknown_kind":
        return device_topic(prefix, "streetlight", device_id, "telemetry"), orjson.dumps(good)
    if reason == "unknown_channel":
        return device_topic(prefix, kind, device_id, "heartbeat"), orjson.dumps(good)
    if reason == "payload_too_large":  # a gateway dumping a week of backlog in one message
        one = orjson.dumps(good)
        count = max_payload_bytes // (len(one) + 1) + 2
        return topic, b"[" + b",".join([one] * count) + b"]"
    if reason == "not_object":
        return topic, b'"ok"'
    if reason == "empty_array":  # a gateway flushing an empty backlog
        return topic, b"[]"
    if reason == "bad_event":
        return (
            device_topic(prefix, kind, device_id, "event"),
            orjson.dumps({"ts": ts_ms, "event": "lampFailure", "state": "active"}),
        )
    raise ValueError(f"no malformed builder for reason {reason!r}")


def bad_item(reason: str, good: dict[str, object], kind: str, ts_ms: int) -> object:
    """A broken version of the reading `good` (taken at `ts_ms`), for an array: the ingest refuses
    it for `reason`."""
    required = "depth_cm" if kind == "waterlevel" else "on"
    if reason == "missing_ts":
        return {k: v for k, v in good.items() if k != "ts"}
    if reason == "bad_ts":
        return {**good, "ts": "2026-07-15 20:00:00"}
    if reason == "ts_in_future":
        return {**good, "ts": ts_ms + _FUTURE_MS}
    if reason == "missing_field":
        return {k: v for k, v in good.items() if k != required}
    if reason == "wrong_type":
        return {**good, required: "12.5" if kind == "waterlevel" else "true"}
    if reason == "out_of_range":
        field, bad = ("depth_cm", -3.0) if kind == "waterlevel" else ("power_factor", 1.7)
        return {**good, field: bad}
    if reason == "not_object":
        return "ok"
    raise ValueError(f"no array item builder for reason {reason!r}")


def bad_status(reason: str, ts_ms: int) -> bytes:
    """A `status` payload the ingest refuses for `reason`."""
    if reason == "not_json":  # a will configured as plain text
        return b"offline"
    if reason == "not_object":
        return b'"offline"'
    if reason == "missing_field":
        return orjson.dumps({"ts": ts_ms, "state": "offline"})
    if reason == "wrong_type":  # firmware that writes booleans as strings
        return orjson.dumps({"online": "false", "ts": ts_ms})
    if reason == "bad_ts":
        return orjson.dumps({"online": True, "ts": "yesterday"})
    raise ValueError(f"no status builder for reason {reason!r}")
