"""`--replay FILE`: publish a recording (or a dry run) with its spacing scaled by `--speed`.

`--shift-to-now` moves every reading's `ts` so the replay lands in the present: the recording's
start maps to the replay's start, pulled back as much as the speed-up needs so that no timestamp is
ever ahead of the wall clock when it is sent (the ingest rejects readings > 5 min in the future).
Payloads that do not parse (the malformed ones) are sent unchanged.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from simulator.errors import RecordingError
from simulator.stream import Message


def read_recording(path: str | Path) -> Iterator[Message]:
    """Messages of a JSONL file in file order; offsets must not go backwards."""
    file = Path(path)
    if not file.exists():
        raise RecordingError(f"recording {file} does not exist")
    last = 0
    with file.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            message = Message.from_jsonl(line, where=f"{file}:{number}")
            if message.offset_ms < last:
                raise RecordingError(f"{file}:{number}: offset goes backwards")
            last = message.offset_ms
            yield message


def _ts_of(payload: bytes) -> int | None:
    """The newest reading's ts in a payload (one reading or a gateway's array)."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    items = body if isinstance(body, list) else [body]
    found = [_to_ms(item.get("ts")) for item in items if isinstance(item, dict)]
    times = [ts for ts in found if ts is not None]
    return max(times) if times else None


def _to_ms(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is not None:
            return int(parsed.timestamp() * 1000)
    return None


def _shift_value(value: Any, delta_ms: int) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value + delta_ms
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        if parsed.tzinfo is None:
            return value
        return (parsed + dt.timedelta(milliseconds=delta_ms)).isoformat(timespec="milliseconds")
    return value


def shift_payload(payload: bytes, delta_ms: int) -> bytes:
    """The payload with every reading's `ts` moved by `delta_ms`; unparseable: unchanged."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload
    items = body if isinstance(body, list) else [body]
    changed = False
    for item in items:
        if isinstance(item, dict) and "ts" in item:
            item["ts"] = _shift_value(item["ts"], delta_ms)
            changed = True
    return orjson.dumps(body) if changed else payload


def recording_base_ms(messages: list[Message]) -> int | None:
    """The recording's time at offset 0, from its readings only (`telemetry` messages).

    A retained status delivered on subscribe can be hours old, and a gateway's backlog is late by
    design: the newest (ts − offset) among the readings is the live clock of the recording, so no
    shifted reading ever lands ahead of its send time.
    """
    best: int | None = None
    for message in messages:
        if not message.topic.endswith("/telemetry"):
            continue
        ts = _ts_of(message.payload)
        if ts is not None and (best is None or ts - message.offset_ms > best):
            best = ts - message.offset_ms
    return best


def shift_delta_ms(base_ms: int, duration_ms: int, now_ms: int, speed: float) -> int:
    """How far to move timestamps so the replay, started at `now_ms`, is never in the future.

    At speed s a message at offset o goes out at now + o/s carrying base + o + delta; with
    delta = now − base − duration × (1 − 1/s) (s > 1) the last one carries exactly its send time.
    """
    pull_back = 0.0
    if speed > 1:
        pull_back = duration_ms * (1 - (0.0 if math.isinf(speed) else 1 / speed))
    return int(now_ms - base_ms - pull_back)


def shifted(messages: list[Message], delta_ms: int) -> Iterator[Message]:
    for m in messages:
        yield Message(m.offset_ms, m.topic, shift_payload(m.payload, delta_ms), m.retain)
