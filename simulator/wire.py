"""Just enough MQTT 3.1.1 to publish QoS 1 flat out: CONNECT, PUBLISH, PUBACK, PINGREQ.

Why not aiomqtt or paho for load: measured on this 2-core machine against a local Mosquitto, one
aiomqtt process peaks near 7,000 QoS 1 msg/s and one paho connection near 7,600 (their per-message
Python bookkeeping, not the socket, is the limit), so 30,000 would need more cores than the machine
has once the broker takes its share. Pre-encoded packets written in batches on an asyncio protocol
reach ~125,000 msg/s with every PUBACK counted. See docs/decisions/simulator.md
("Publishing: aiomqtt; load: a bare MQTT 3.1.1 publisher").
"""

from __future__ import annotations

import asyncio
import struct
import time
from array import array

CONNACK, PUBACK, PINGRESP = 0x20, 0x40, 0xD0
_RC_TEXT = {
    1: "unacceptable protocol version",
    2: "client id rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            byte |= 0x80
        out.append(byte)
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def connect_packet(
    client_id: str, *, keepalive: int = 60, username: str | None = None, password: str | None = None
) -> bytes:
    flags = 0x02  # clean session: a load client keeps no state
    payload = _utf8(client_id)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
        if password is not None:
            flags |= 0x40
            payload += _utf8(password)
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + struct.pack("!H", keepalive) + payload
    return b"\x10" + remaining_length(len(body)) + body


def publish_packet(topic: bytes, mid: int, payload: bytes) -> bytes:
    """QoS 1 PUBLISH; `topic` is the UTF-8 topic already prefixed with its 2-byte length."""
    size = len(topic) + 2 + len(payload)
    return b"\x32" + remaining_length(size) + topic + mid.to_bytes(2, "big") + payload


def topic_field(topic: str) -> bytes:
    return _utf8(topic)


class QoS1Publisher(asyncio.Protocol):
    """One connection: counts PUBACKs and their latency (send → ack) per packet id."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.connected: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.sent_at = array("d", bytes(8 * 65536))
        self.inflight = 0
        self.acked = 0
        self.latencies = array("d")
        self.wakeup: asyncio.Event = asyncio.Event()
        self.can_write: asyncio.Event = asyncio.Event()
        self.can_write.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionError("closed before CONNACK"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.wakeup.set()
        self.can_write.set()

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        i, n = 0, len(buf)
        now = time.perf_counter()
        acked = 0
        while n - i >= 2:
            kind = buf[i]
            if kind == PUBACK and n - i >= 4 and buf[i + 1] == 2:  # the hot path
                mid = (buf[i + 2] << 8) | buf[i + 3]
                self.latencies.append(now - self.sent_at[mid])
                acked += 1
                i += 4
                continue
            # Any other packet: decode the remaining length and skip it (or handle CONNACK).
            length, shift, j = 0, 0, i + 1
            while j < n:
                byte = buf[j]
                length |= (byte & 0x7F) << shift
                j += 1
                if not byte & 0x80:
                    break
                shift += 7
            else:
                break
            if j + length > n:
                break
            if kind == CONNACK and not self.connected.done():
                rc = buf[j + 1] if length >= 2 else 0
                if rc == 0:
                    self.connected.set_result(None)
                else:
                    self.connected.set_exception(
                        ConnectionError(f"broker refused: {_RC_TEXT.get(rc, rc)}")
                    )
            i = j + length
        self.buffer = buf[i:]
        if acked:
            self.acked += acked
            self.inflight -= acked
            self.wakeup.set()

    def write_batch(self, packets: list[bytes], mids: list[int]) -> None:
        now = time.perf_counter()
        sent_at = self.sent_at
        for mid in mids:
            sent_at[mid] = now
        self.inflight += len(packets)
        assert self.transport is not None
        self.transport.write(b"".join(packets))
