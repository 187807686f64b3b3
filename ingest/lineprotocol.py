"""Observation → InfluxDB line protocol (contract §2), and back (for the SQLite store).

The spool holds exactly the lines InfluxDB will get: formatting happens once, at ingest, with the
series key (measurement + registry tags) of each device cached, so the hot path pays only for the
fields. Numbers are always floats so `220` and `220.5` never collide as field types; booleans stay
booleans. Timestamps are milliseconds (written with precision=ms).
"""

from __future__ import annotations

import math
from typing import Any

from devices.kinds import EVENT_MEASUREMENT, KINDS
from devices.messages import Observation
from devices.models import DeviceEvent, Reading
from devices.registry import Registry

Point = tuple[str, dict[str, str], dict[str, Any], int]


# --- line protocol -------------------------------------------------------------------------------

_MEASUREMENT_ESC = str.maketrans({",": r"\,", " ": r"\ ", "\n": " ", "\r": " ", "\\": "\\\\"})
_TAG_SPECIAL = {",": r"\,", " ": r"\ ", "=": r"\=", "\n": r"\ ", "\r": r"\ ", "\t": r"\ "}
_TAG_ESC = str.maketrans(_TAG_SPECIAL)
# A backslash right before a separator, or at the end, would escape the separator in InfluxDB's
# parser (1.x refuses a tag that ends in one). It becomes the full-width reverse solidus, which
# reads the same to a person and cannot escape anything.
_FULLWIDTH_BACKSLASH = "\uff3c"
_STR_FIELD_ESC = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": "\\n"})


def escape_measurement(name: str) -> str:
    return name.translate(_MEASUREMENT_ESC)


def escape_tag(text: str) -> str:
    """Escape a tag key or value so it can never end the tag, add a tag or start a new line.

    Line protocol cannot carry a newline or tab in a tag: they become (escaped) spaces. Other
    backslashes are kept as they are (InfluxDB 1.x keeps a backslash that escapes nothing).
    """
    if "\\" in text:
        chars = list(text)
        for i, ch in enumerate(chars):
            if ch == "\\" and (i + 1 == len(chars) or chars[i + 1] in _TAG_SPECIAL):
                chars[i] = _FULLWIDTH_BACKSLASH
        text = "".join(chars)
    return text.translate(_TAG_ESC)


def _field_value(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError("non-finite field value")
        return repr(number)
    return '"' + str(value).translate(_STR_FIELD_ESC) + '"'


def to_line(point: Point) -> str:
    """One line of InfluxDB line protocol with a millisecond timestamp (write with precision=ms)."""
    measurement, tags, fields, ts = point
    body = ",".join(f"{escape_tag(k)}={_field_value(v)}" for k, v in fields.items())
    return f"{series_key(measurement, tags)} {body} {int(ts)}"


def series_key(measurement: str, tags: dict[str, str]) -> str:
    parts = [escape_measurement(measurement)]
    for key in sorted(tags):  # sorted tags: InfluxDB's own series-key order
        value = tags[key]
        if value:
            parts.append(f",{escape_tag(key)}={escape_tag(value)}")
    return "".join(parts)


class LineFormatter:
    """Turns observations into lines; caches each device's series key (its tags rarely change)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._keys: dict[tuple[str, str], str] = {}

    def _key(self, kind: str, device_id: str) -> str:
        cache_key = (kind, device_id)
        key = self._keys.get(cache_key)
        if key is None:
            key = series_key(KINDS[kind].measurement, self.registry.tags(kind, device_id))
            if len(self._keys) < 200_000:
                self._keys[cache_key] = key
        return key

    def line(self, obs: Observation) -> bytes | None:
        """The line an observation stores, or None (status changes feed the rules only)."""
        data = obs.data
        if obs.channel == "telemetry" and isinstance(data, Reading):
            # Validated numbers are floats already, so repr() writes them as floats.
            values = data.__dict__
            fields = [
                f"{name}={values[name]!r}"
                for name in data.number_fields
                if values[name] is not None
            ]
            on = values.get("on")
            if on is not None:
                fields.append("on=true" if on else "on=false")
            return f"{self._key(obs.kind, obs.device_id)} {','.join(fields)} {data.ts}".encode()
        if obs.channel == "event" and isinstance(data, DeviceEvent):
            tags = {"device": obs.device_id, "kind": obs.kind, "event": data.event}
            raised = "true" if data.raised else "false"
            return f"{series_key(EVENT_MEASUREMENT, tags)} raised={raised} {data.ts}".encode()
        return None


def _split_unescaped(text: str, sep: str, quotes: bool = False) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    i = 0
    in_string = False
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if quotes and ch == '"':
            in_string = not in_string
        if ch == sep and not in_string:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def _unescape(text: str) -> str:
    return text.replace("\\,", ",").replace("\\ ", " ").replace("\\=", "=")


def _parse_field(text: str) -> Any:
    if text in ("true", "t", "T", "True", "TRUE"):
        return True
    if text in ("false", "f", "F", "False", "FALSE"):
        return False
    if text.startswith('"'):
        return text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if text.endswith(("i", "u")):
        return int(text[:-1])
    return float(text)


def parse_line(line: str) -> Point:
    """Parse a line this module wrote (used by the SQLite store); raises ValueError if malformed."""
    line = line.strip()
    key, *rest = _split_unescaped(line, " ")
    field_text, _, ts = " ".join(rest).rpartition(" ")
    if not rest or not field_text:
        raise ValueError(f"not a line of line protocol: {line[:200]!r}")
    key_parts = _split_unescaped(key, ",")
    measurement = _unescape(key_parts[0])
    tags: dict[str, str] = {}
    for part in key_parts[1:]:
        k, _, v = part.partition("=") if "\\=" not in part else _partition_unescaped(part)
        tags[_unescape(k)] = _unescape(v)
    fields: dict[str, Any] = {}
    for part in _split_unescaped(field_text, ",", quotes=True):
        k, _, v = _partition_unescaped(part)
        fields[_unescape(k)] = _parse_field(v)
    return (measurement, tags, fields, int(ts))


def _partition_unescaped(text: str) -> tuple[str, str, str]:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "=":
            return text[:i], "=", text[i + 1 :]
        i += 1
    raise ValueError(f"no '=' in {text!r}")
