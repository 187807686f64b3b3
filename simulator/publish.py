"""Where a stream goes: a broker (aiomqtt, QoS 1, acks counted) or a JSONL file (dry run).

Devices are spread over a few MQTT connections by device id, so one device's messages always share
a connection and keep their order (a status before the readings that follow it). Each connection
keeps up to `window` publishes in flight; PUBACK latency is measured per message.

With hundreds of devices over a few connections there is no per-device MQTT will: the stream itself
publishes a device's retained `{"online": false}` when it dies (see stream.py), as the broker would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Protocol

import aiomqtt

from simulator.clock import Pacer
from simulator.errors import PublishError
from simulator.stream import Message

log = logging.getLogger("simulator.publish")


@dataclass(slots=True)
class SendStats:
    """Counters of a run; ack latencies in seconds (QoS 1 PUBACK), for percentiles."""

    sent: int = 0
    acked: int = 0
    failed: int = 0
    bytes: int = 0
    latencies: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    last_offset_s: float = 0.0

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        return self.acked / self.elapsed if self.elapsed > 0 else 0.0


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0 … 100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Sink(Protocol):
    """Takes messages; `send` may wait (back-pressure), `close` waits for what is in flight."""

    stats: SendStats

    async def send(self, message: Message) -> None: ...

    async def close(self) -> None: ...


class JsonlSink:
    """Writes the stream as JSONL (dry run)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.stats = SendStats()

    async def send(self, message: Message) -> None:
        self.write(message)

    def write(self, message: Message) -> None:
        self.out.write(message.to_jsonl())
        self.stats.sent += 1
        self.stats.acked += 1
        self.stats.bytes += len(message.payload)
        self.stats.last_offset_s = message.offset_s

    async def close(self) -> None:
        self.out.flush()
        self.stats.finished = time.monotonic()


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    protocol: str = "3.1.1"  # devices speak 3.1.1; the demo's amqtt speaks nothing else
    client_id: str | None = None  # prefix of the connections' ids
    connections: int = 4
    window: int = 100  # publishes in flight per connection
    keepalive: int = 60
    connect_timeout: float = 10.0


def _protocol(name: str) -> aiomqtt.ProtocolVersion:
    if name in {"5", "5.0", "v5"}:
        return aiomqtt.ProtocolVersion.V5
    if name in {"3.1.1", "311", "v311", "3"}:
        return aiomqtt.ProtocolVersion.V311
    raise PublishError(f"MQTT protocol {name!r}: use 3.1.1 or 5")


def _quiet_logger() -> logging.Logger:
    # aiomqtt warns on every publish once more than a few are pending: pipelining is the point here.
    logger = logging.getLogger("simulator.aiomqtt")
    logger.setLevel(logging.ERROR)
    return logger


def device_of(topic: str) -> str:
    """The device id level of `{prefix}/{kind}/{device_id}/{channel}` (prefix may be deep)."""
    parts = topic.rsplit("/", 2)
    return parts[-2] if len(parts) == 3 else topic


class _Connection:
    def __init__(self, options: BrokerOptions, index: int, stats: SendStats) -> None:
        self.options = options
        self.index = index
        self.stats = stats
        base = options.client_id or f"streetwatch-sim-{os.getpid()}"
        self.client_id = f"{base}-{index}"
        self.client: aiomqtt.Client | None = None
        self.window = asyncio.Semaphore(options.window)
        self.pending: set[asyncio.Task[None]] = set()
        self.closing: set[asyncio.Future[None]] = set()
        self.lock = asyncio.Lock()

    async def connect(self, *, retry: bool) -> aiomqtt.Client:
        async with self.lock:
            if self.client is not None:
                return self.client
            delay = 0.5
            while True:
                client = aiomqtt.Client(
                    self.options.host,
                    self.options.port,
                    username=self.options.username,
                    password=self.options.password,
                    identifier=self.client_id,
                    protocol=_protocol(self.options.protocol),
                    keepalive=self.options.keepalive,
                    timeout=self.options.connect_timeout,
                    max_inflight_messages=self.options.window,
                    logger=_quiet_logger(),
                )
                client.pending_calls_threshold = self.options.window * 2 + 10
                try:
                    await client.__aenter__()
                except aiomqtt.MqttError as exc:
                    if not retry:
                        raise PublishError(
                            f"cannot connect to mqtt://{self.options.host}:{self.options.port}: {exc}"
                        ) from exc
                    log.warning("broker not reachable (%s); retrying in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                self.client = client
                return client

    async def publish(self, message: Message, *, retry: bool) -> None:
        client = self.client or await self.connect(retry=retry)
        await self.window.acquire()
        sent_at = time.perf_counter()
        task = asyncio.ensure_future(
            client.publish(message.topic, message.payload, qos=1, retain=message.retain)
        )
        self.pending.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self.pending.discard(t)
            self.window.release()
            if t.cancelled() or t.exception() is not None:
                self.stats.failed += 1
                if self.client is client:
                    self.client = None  # reconnect on the next publish
                    closing = asyncio.ensure_future(_close_quietly(client))
                    self.closing.add(closing)
                    closing.add_done_callback(self.closing.discard)
            else:
                self.stats.acked += 1
                self.stats.latencies.append(time.perf_counter() - sent_at)

        task.add_done_callback(done)

    async def drain(self) -> None:
        while self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)

    async def close(self) -> None:
        await self.drain()
        if self.client is not None:
            await _close_quietly(self.client)
            self.client = None


async def _close_quietly(client: aiomqtt.Client) -> None:
    with contextlib.suppress(Exception):
        await client.__aexit__(None, None, None)


class MqttSink:
    """Publishes over `options.connections` aiomqtt connections, QoS 1, PUBACKs counted.

    Args:
        options: broker address and connection settings.
        reconnect: keep retrying a lost broker (the demo) instead of failing the run.
    """

    def __init__(self, options: BrokerOptions, *, reconnect: bool = False) -> None:
        self.options = options
        self.reconnect = reconnect
        self.stats = SendStats()
        self.connections = [
            _Connection(options, k, self.stats) for k in range(max(1, options.connections))
        ]

    async def open(self) -> MqttSink:
        """Connect every connection up front, so a wrong address fails before the run starts."""
        for conn in self.connections:
            await conn.connect(retry=self.reconnect)
        return self

    async def send(self, message: Message) -> None:
        conn = self.connections[
            zlib.crc32(device_of(message.topic).encode()) % len(self.connections)
        ]
        self.stats.sent += 1
        self.stats.bytes += len(message.payload)
        self.stats.last_offset_s = message.offset_s
        await conn.publish(message, retry=self.reconnect)

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.connections))
        self.stats.finished = time.monotonic()


async def play(
    messages: Iterable[Message] | AsyncIterator[Message],
    sink: Sink,
    *,
    speed: float,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[SendStats], None] | None = None,
) -> SendStats:
    """Send `messages` to `sink` with their offsets' spacing divided by `speed` (inf: flat out)."""
    pacer = Pacer(speed)
    sink.stats.started = time.monotonic()
    last_report = 0.0
    count = 0

    async def each() -> AsyncIterator[Message]:
        if isinstance(messages, AsyncIterator):
            async for m in messages:
                yield m
        else:
            for m in messages:
                yield m

    async for message in each():
        if stop is not None and stop.is_set():
            break
        delay = pacer.due(message.offset_s)
        if delay > 0.001:
            if stop is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    break
        await sink.send(message)
        count += 1
        if count % 256 == 0:
            await asyncio.sleep(0)  # flat out, a generator never yields: let acks in
        if on_progress is not None:
            now = time.monotonic()
            if now - last_report > 0.2:
                last_report = now
                on_progress(sink.stats)
    await sink.close()
    if on_progress is not None:
        on_progress(sink.stats)
    return sink.stats
