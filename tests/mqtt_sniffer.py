"""A TCP proxy between the service and a real broker that records every MQTT packet the client
sends (type, packet id, when), and can stop forwarding the broker's side (a stuck reader).

It parses only fixed headers and packet ids, so it sees what goes on the wire whatever the MQTT
client library does inside: the tests judge acks by the bytes that left, not by our own code.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from tests.servers import free_port

PUBLISH, PUBACK = 3, 4


@dataclass
class Packet:
    at: float
    type: int
    mid: int | None


@dataclass
class SniffingProxy:
    target_port: int
    port: int = 0
    sent: list[Packet] = field(default_factory=list)  # client → broker
    received: list[Packet] = field(default_factory=list)  # broker → client
    _server: asyncio.AbstractServer | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> SniffingProxy:
        self.port = self.port or free_port()
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        return self

    def pubacks(self) -> list[Packet]:
        return [p for p in self.sent if p.type == PUBACK]

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        t1 = asyncio.create_task(self._pipe(reader, up_writer, self.sent))
        t2 = asyncio.create_task(self._pipe(up_reader, writer, self.received))
        self._tasks |= {t1, t2}
        await asyncio.wait({t1, t2}, return_when=asyncio.FIRST_COMPLETED)
        for t in (t1, t2):
            t.cancel()
        for w in (writer, up_writer):
            with contextlib.suppress(Exception):
                w.close()

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, log: list[Packet]
    ) -> None:
        buf = b""
        while True:
            chunk = await src.read(65536)
            if not chunk:
                return
            buf += chunk
            buf = _parse(buf, log)
            dst.write(chunk)
            await dst.drain()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _parse(buf: bytes, log: list[Packet]) -> bytes:
    """Record each whole packet in buf; return the unparsed rest."""
    while len(buf) >= 2:
        length = 0
        mult = 1
        i = 1
        while True:
            if i >= len(buf):
                return buf
            byte = buf[i]
            length += (byte & 0x7F) * mult
            mult *= 128
            i += 1
            if not byte & 0x80:
                break
        if len(buf) < i + length:
            return buf
        ptype = buf[0] >> 4
        body = buf[i : i + length]
        mid = None
        if ptype == PUBACK:
            mid = int.from_bytes(body[:2], "big")
        elif ptype == PUBLISH and (buf[0] >> 1) & 3:
            tlen = int.from_bytes(body[:2], "big")
            mid = int.from_bytes(body[2 + tlen : 4 + tlen], "big")
        log.append(Packet(time.monotonic(), ptype, mid))
        buf = buf[i + length :]
    return buf
