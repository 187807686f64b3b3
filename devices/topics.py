"""Topic layout (contract §1): `{prefix}/{kind}/{device_id}/{channel}`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from devices.errors import RejectedInput
from devices.kinds import CHANNELS, KINDS

# Used with fullmatch(): `$` would also match before a trailing newline ("L1\n").
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True, slots=True)
class TopicParts:
    kind: str
    device_id: str
    channel: str


class TopicParser:
    """Splits topics under one prefix; the prefix may have several levels."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.strip("/")
        self._head = self.prefix + "/"
        self._cache: dict[str, TopicParts] = {}

    def parse(self, topic: str) -> TopicParts:
        cached = self._cache.get(topic)
        if cached is not None:
            return cached
        if not topic.startswith(self._head):
            raise RejectedInput("bad_topic", f"topic {topic!r} is not under {self.prefix!r}")
        rest = topic[len(self._head) :].split("/")
        if len(rest) != 3:
            raise RejectedInput("bad_topic", f"topic {topic!r} is not prefix/kind/device/channel")
        kind, device_id, channel = rest
        if kind not in KINDS:
            raise RejectedInput("unknown_kind", f"unknown device kind {kind!r}")
        if not DEVICE_ID_RE.fullmatch(device_id):
            raise RejectedInput("bad_device_id", f"device id {device_id!r} is not allowed")
        if channel not in CHANNELS:
            raise RejectedInput("unknown_channel", f"unknown channel {channel!r}")
        parts = TopicParts(kind, device_id, channel)
        if len(self._cache) < 100_000:  # a city's fleet fits; a topic flood does not grow memory
            self._cache[topic] = parts
        return parts


def device_topic(prefix: str, kind: str, device_id: str, channel: str) -> str:
    return f"{prefix.strip('/')}/{kind}/{device_id}/{channel}"


def subscription(prefix: str) -> str:
    """The one subscription the ingest needs: every kind, device and channel under the prefix."""
    return f"{prefix.strip('/')}/+/+/+"


# What one topic level cannot carry as it is (contract §3): the level separator, the wildcards,
# the escape character itself, NUL and the other control characters (C0, DEL, C1). `_refused`
# adds what brokers refuse although it is UTF-8 text.
_UNSAFE = frozenset("%/+#" + "".join(map(chr, range(0x20))) + "".join(map(chr, range(0x7F, 0xA0))))


def _refused(c: str) -> bool:
    """Characters a broker refuses in a topic (Mosquitto drops the connection): lone surrogates
    and the Unicode noncharacters U+FDD0–U+FDEF and U+xFFFE / U+xFFFF."""
    n = ord(c)
    return 0xD800 <= n <= 0xDFFF or 0xFDD0 <= n <= 0xFDEF or (n & 0xFFFE) == 0xFFFE


def topic_safe(text: str) -> str:
    """One topic level made from outside text (a cabinet, road or point name from the registry):
    percent-encoded where MQTT would read it as structure or refuse it, so `C#1` → `C%231`.
    `urllib.parse.unquote` gives the original back; everything else (Chinese text, spaces) stays."""
    if not any(c in _UNSAFE or _refused(c) for c in text):
        return text
    out: list[str] = []
    for c in text:
        if c in _UNSAFE or _refused(c):
            out.append(_pct(c.encode("utf-8", "surrogatepass")))
        else:
            out.append(c)
    return "".join(out)


def _pct(raw: bytes) -> str:
    return "".join(f"%{b:02X}" for b in raw)


def alert_topic(prefix: str, rule: str, device_id: str) -> str:
    """`{prefix}/alerts/{rule}/{device_id}`, each outside level topic-safe (a cabinet's name is
    registry text, not a device id)."""
    return f"{prefix.strip('/')}/alerts/{topic_safe(rule)}/{topic_safe(device_id)}"
