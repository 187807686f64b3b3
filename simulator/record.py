"""`streetwatch record`: capture live device traffic from a broker into replayable JSONL.

Offsets are seconds since the recording started (the first message may come later than 0: spacing,
not content, is what replay needs). Retained messages delivered on subscribe keep `retain: true`.
The service's own alert topics (`{prefix}/alerts/…`) are skipped by default: replaying them would
publish alerts nobody raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import IO

import aiomqtt

from devices.topics import subscription
from simulator.errors import PublishError
from simulator.publish import BrokerOptions, _protocol, _quiet_logger
from simulator.stream import Message


async def record(
    options: BrokerOptions,
    out: IO[bytes],
    *,
    prefix: str,
    topics: list[str] | None = None,
    duration_s: float | None = None,
    count: int | None = None,
    stop: asyncio.Event | None = None,
    include_alerts: bool = False,
    ready: asyncio.Event | None = None,
) -> int:
    """Write every message under `topics` (default: the devices' `{prefix}/+/+/+`) to `out`.

    Stops after `duration_s`, `count` messages, or when `stop` is set. Returns the count written.
    """
    filters = topics or [subscription(prefix)]
    alerts_head = prefix.strip("/") + "/alerts/"
    written = 0
    try:
        async with aiomqtt.Client(
            options.host,
            options.port,
            username=options.username,
            password=options.password,
            identifier=options.client_id,
            protocol=_protocol(options.protocol),
            timeout=options.connect_timeout,
            logger=_quiet_logger(),
        ) as client:
            for topic in filters:
                await client.subscribe(topic, qos=1)
            t0 = time.monotonic()
            if ready is not None:
                ready.set()
            deadline = None if duration_s is None else t0 + duration_s
            messages = client.messages.__aiter__()
            while count is None or written < count:
                if stop is not None and stop.is_set():
                    break
                timeout = 0.25
                if deadline is not None:
                    timeout = min(timeout, deadline - time.monotonic())
                    if timeout <= 0:
                        break
                try:
                    msg = await asyncio.wait_for(messages.__anext__(), timeout)
                except TimeoutError:
                    continue
                topic = str(msg.topic)
                if not include_alerts and topic.startswith(alerts_head):
                    continue
                payload = msg.payload
                if isinstance(payload, str):
                    data = payload.encode()
                elif isinstance(payload, bytes | bytearray):
                    data = bytes(payload)
                else:
                    data = b"" if payload is None else str(payload).encode()
                offset_ms = round((time.monotonic() - t0) * 1000)
                out.write(Message(offset_ms, topic, data, bool(msg.retain)).to_jsonl())
                written += 1
                if written % 100 == 0:
                    out.flush()
    except aiomqtt.MqttError as exc:
        raise PublishError(
            f"recording from mqtt://{options.host}:{options.port} failed: {exc}"
        ) from exc
    finally:
        with contextlib.suppress(ValueError):
            out.flush()
    return written
