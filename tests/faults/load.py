"""A QoS 1 lamp-reading load that keeps a ledger: every reading has an identity (device, ts).

Why not the simulator's load mode: it counts PUBACKs but neither reconnects nor remembers what it
sent, and the fault suite must prove that every reading the broker acknowledged reached InfluxDB
exactly once, across broker restarts. So this publisher speaks just enough MQTT 3.1.1 itself:
reading k belongs to device `F{k % devices}` with `ts = t0 + k // devices` (ms), so identities are
unique and the ledger is two integers. A reading is *published* once the broker sent its PUBACK; a
reading in flight when a connection drops is sent again (same identity) on the next connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field

_PAYLOAD = b'{"ts":%d,"seq":%d,"on":true,"dim":100,"voltage":221.4,"power":151.2,"rssi":-71}'


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def connect_packet(client_id: str, username: str | None, password: str | None) -> bytes:
    flags, payload = 0x02, _utf8(client_id)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
        if password is not None:
            flags |= 0x40
            payload += _utf8(password)
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + struct.pack("!H", 30) + payload
    return b"\x10" + _remaining_length(len(body)) + body


def publish_packet(topic: str, mid: int, payload: bytes) -> bytes:
    t = _utf8(topic)
    return (
        b"\x32"
        + _remaining_length(len(t) + 2 + len(payload))
        + t
        + struct.pack("!H", mid)
        + payload
    )


@dataclass
class LoadStats:
    generated: int = 0  # readings handed to a connection (identities 0 … generated-1)
    acked: int = 0  # distinct readings the broker acknowledged
    resent: int = 0  # sends repeated after a dropped connection
    connects: int = 0
    errors: list[str] = field(default_factory=list)


class Ledger:
    """Which identities exist: k in [0, generated) → (device index k % devices, t0 + k // devices)."""

    def __init__(self, devices: int, t0_ms: int, prefix: str) -> None:
        self.devices = devices
        self.t0_ms = t0_ms
        self.prefix = prefix

    def device(self, k: int) -> str:
        return f"F{k % self.devices:04d}"

    def ts(self, k: int) -> int:
        return self.t0_ms + k // self.devices

    def packet(self, k: int, mid: int) -> bytes:
        topic = f"{self.prefix}/lamp/{self.device(k)}/telemetry"
        return publish_packet(topic, mid, _PAYLOAD % (self.ts(k), k))


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = b""
        self.connack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.acks: list[int] = []
        self.ack_event = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 2:
            mult, n, i = 1, 0, 1
            while True:
                if i >= len(self.buf):
                    return
                b = self.buf[i]
                n += (b & 0x7F) * mult
                mult *= 128
                i += 1
                if not b & 0x80:
                    break
            if len(self.buf) < i + n:
                return
            kind, body = self.buf[0] & 0xF0, self.buf[i : i + n]
            self.buf = self.buf[i + n :]
            if kind == 0x20 and not self.connack.done():
                self.connack.set_result(body[1])
            elif kind == 0x40:
                self.acks.append(struct.unpack("!H", body[:2])[0])
                self.ack_event.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        if not self.connack.done():
            self.connack.set_exception(ConnectionError("closed before CONNACK"))
        self.ack_event.set()


class LedgerLoad:
    """`connections` connections share `rate` msg/s; runs in its own thread with its own loop.

    `start()` / `stop(drain_timeout)`; `stats` is readable at any time (ints, read under the GIL).
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        rate: float,
        devices: int = 200,
        connections: int = 4,
        window: int = 400,
        prefix: str = "city/jining",
        t0_ms: int | None = None,
        username: str | None = None,
        password: str | None = None,
        client_id: str = "faults-load",
    ) -> None:
        self.host, self.port = host, port
        self.rate = rate
        self.connections = connections
        self.window = window
        self.username, self.password = username, password
        self.client_id = client_id
        self.ledger = Ledger(devices, t0_ms or (time.time_ns() // 1_000_000 - 60_000), prefix)
        self.stats = LoadStats()
        self.acked_map = bytearray()  # acked_map[k] == 1: the broker acknowledged reading k
        self._queues: list[deque[int]] = [deque() for _ in range(connections)]
        self._stop_generating = threading.Event()
        self._stop_all = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LedgerLoad:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        return self

    def stop(self, drain_timeout: float = 120.0) -> LoadStats:
        """Stop generating; wait until every generated reading is acknowledged (or the timeout)."""
        self._stop_generating.set()
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline and self.stats.acked < self.stats.generated:
            time.sleep(0.1)
        self._stop_all.set()
        if self._thread is not None:
            self._thread.join(15)
        return self.stats

    async def _main(self) -> None:
        await asyncio.gather(
            self._generate(), *(self._connection(i) for i in range(self.connections))
        )

    async def _generate(self) -> None:
        t_last = time.monotonic()
        credit = 0.0
        while not self._stop_generating.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            credit = min(credit + (now - t_last) * self.rate, self.rate)  # at most 1 s of catch-up
            t_last = now
            n = int(credit)
            credit -= n
            for _ in range(n):
                k = self.stats.generated
                self.acked_map.append(0)
                self._queues[k % self.connections].append(k)
                self.stats.generated += 1

    async def _connection(self, index: int) -> None:
        queue = self._queues[index]
        loop = asyncio.get_running_loop()
        backoff = 0.2
        while not self._stop_all.is_set():
            try:
                _, conn = await asyncio.wait_for(
                    loop.create_connection(_Conn, self.host, self.port), 5
                )
                assert conn.transport is not None
                conn.transport.write(
                    connect_packet(f"{self.client_id}-{index}", self.username, self.password)
                )
                rc = await asyncio.wait_for(conn.connack, 5)
                if rc != 0:
                    raise ConnectionError(f"CONNACK refused: {rc}")
            except (OSError, TimeoutError, ConnectionError) as exc:
                if len(self.stats.errors) < 50:
                    self.stats.errors.append(f"connect: {exc!r}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.2
            self.stats.connects += 1
            await self._pump(conn, queue)
            with contextlib.suppress(Exception):
                assert conn.transport is not None
                conn.transport.close()

    def _acked(self, k: int | None) -> None:
        if k is not None and not self.acked_map[k]:
            self.acked_map[k] = 1
            self.stats.acked += 1

    async def _pump(self, conn: _Conn, queue: deque[int]) -> None:
        inflight: dict[int, int] = {}  # mid -> identity
        next_mid = 1
        transport = conn.transport
        assert transport is not None
        last_ping = time.monotonic()
        try:
            while not self._stop_all.is_set() and not conn.lost.done():
                for mid in conn.acks:
                    self._acked(inflight.pop(mid, None))
                conn.acks.clear()
                out: list[bytes] = []
                while queue and len(inflight) < self.window:
                    k = queue.popleft()
                    while next_mid in inflight or next_mid == 0:
                        next_mid = next_mid % 65535 + 1
                    inflight[next_mid] = k
                    out.append(self.ledger.packet(k, next_mid))
                    next_mid = next_mid % 65535 + 1
                if out:
                    transport.write(b"".join(out))
                if time.monotonic() - last_ping > 10:
                    transport.write(b"\xc0\x00")  # PINGREQ keeps an idle connection alive
                    last_ping = time.monotonic()
                conn.ack_event.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(conn.ack_event.wait(), 0.01)
        finally:
            for mid in conn.acks:  # acks that arrived with the close
                self._acked(inflight.pop(mid, None))
            conn.acks.clear()
            if inflight:
                # Not acknowledged: send again, first, on the next connection (same identity).
                self.stats.resent += len(inflight)
                queue.extendleft(sorted(inflight.values(), reverse=True))
