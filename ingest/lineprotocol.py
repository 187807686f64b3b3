"""Observation → storage point, and the InfluxDB line protocol (contract §2).

A point is kept as a small tuple `(measurement, tags, fields, ts_ms)`; that is what the spool holds
(as JSON) and what both stores take. Numbers are always floats so `220` and `220.5` never collide as
field types; booleans stay booleans.
"""

from __future__ import annotations

import math
from typing import Any

from devices.kinds import EVENT_MEASUREMENT, KINDS
from devices.messages import Observation
from devices.models import DeviceEvent, Reading
from devices.registry import Registry

Point = tuple[str, dict[str, str], dict[str, Any], int]


def to_point(obs: Observation, registry: Registry) -> Point | None:
    """The point an observation stores, or None (status changes feed rules only)."""
    data = obs.data
    if obs.channel == "telemetry" and isinstance(data, Reading):
        spec = KINDS[obs.kind]
        fields: dict[str, Any] = data.numeric_fields()
        on = getattr(data, "on", None)
        if on is not None:
            fields["on"] = on
        return (spec.measurement, registry.tags(obs.kind, obs.device_id), fields, data.ts)
    if obs.channel == "event" and isinstance(data, DeviceEvent):
        tags = {"device": obs.device_id, "kind": obs.kind, "event": data.event}
        return (EVENT_MEASUREMENT, tags, {"raised": data.raised}, data.ts)
    return None


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
    parts = [escape_measurement(measurement)]
    for key in sorted(tags):  # sorted tags: InfluxDB's own series-key order, cheaper to index
        value = tags[key]
        if value:
            parts.append(f",{escape_tag(key)}={escape_tag(value)}")
    body = ",".join(f"{escape_tag(k)}={_field_value(v)}" for k, v in fields.items())
    return f"{''.join(parts)} {body} {int(ts)}"
