"""The MQTT outlet: every alert change, QoS 1 and retained, on `{prefix}/alerts/{rule}/{device}`.

The alert JSON is the payload; when the alert closes, an empty retained message removes it, so a
subscriber that connects later sees exactly the open alerts.

Publishing never blocks the rules: `publish` appends to an in-memory queue and returns. A background
task (aiomqtt, its own client id `{mqtt.client_id}-alerts`) sends up to `window` messages at a time and
waits for their PUBACKs. When the broker is away the queue grows; the task reconnects with exponential
backoff and jitter, then flushes in order. If the queue reaches `queue_max`, it is compacted to the
latest state per topic — which is all a retained topic keeps anyway.

Crash safety rides on the store's audit sequence (an outbox): after each acknowledged batch the outlet
moves its cursor forward (`on_flushed`); at start the service re-queues the latest state of every alert
changed after the cursor. A change committed just before a crash is published after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiomqtt
import orjson

from alerts.config import AlertsMqttConfig
from alerts.model import Alert, Change
from devices.topics import alert_topic

if TYPE_CHECKING:
    from streetwatch.config import MqttConfig

log = logging.getLogger("streetwatch.alerts.mqtt")

CURSOR = "mqtt"  # the outlet's cursor name in the store


@dataclass(frozen=True, slots=True)
class _Item:
    topic: str
    payload: bytes
    seq: int


def alert_payload(alert: Alert) -> bytes:
    """The retained payload: the alert JSON, or empty (removes the retained message) once closed."""
    return b"" if not alert.is_open else orjson.dumps(alert.to_json())


class MqttOutlet:
    """Args:
    mqtt: the `mqtt` settings section (host, port, credentials, TLS, prefix, client id).
    config: the `alerts.mqtt` section (queue size, window, timeouts).
    on_flushed: called with the highest audit seq acknowledged by the broker (the cursor).
    """

    def __init__(
        self,
        mqtt: MqttConfig,
        config: AlertsMqttConfig,
        *,
        on_flushed: Callable[[int], None] | None = None,
    ) -> None:
        self.mqtt = mqtt
        self.config = config
        self.prefix = mqtt.topic_prefix
        self.client_id = f"{mqtt.client_id}{config.client_id_suffix}"
        self._on_flushed = on_flushed
        self._queue: deque[_Item] = deque()
        self._lock = threading.Lock()  # publish() may come from another thread (TestClient)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # counters, read by the metrics collector
        self.connected = False
        self.connects = 0
        self.published = 0
        self.compactions = 0
        self.dropped = 0
        self.failed = 0  # alert changes that could not be published at all (logged, skipped)
        # After the broker dropped us mid-window, send one change at a time for that many, so a
        # change the broker itself refuses by disconnecting is found and skipped (`_send`).
        self._careful = 0
        self._head_drops = 0  # connections lost while the queue's head was the one in flight

    # ---- the outlet side (never blocks) ---------------------------------------------------------

    def publish(self, alert: Alert, change: Change) -> None:
        self.enqueue(alert, change.seq)

    def enqueue(self, alert: Alert, seq: int = 0) -> None:
        item = _Item(alert_topic(self.prefix, alert.rule, alert.device), alert_payload(alert), seq)
        with self._lock:
            if len(self._queue) >= self.config.queue_max:
                self._compact()
            self._queue.append(item)
        self._notify()

    def recover(self, alerts: Iterable[tuple[Alert, int]]) -> None:
        """Queue alerts changed since the cursor (the service calls this before starting)."""
        for alert, seq in alerts:
            self.enqueue(alert, seq)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _compact(self) -> None:
        """Keep the latest item per topic, in the order of those latest items (lock held)."""
        latest: dict[str, _Item] = {}
        for item in reversed(self._queue):
            latest.setdefault(item.topic, item)
        kept = list(reversed(latest.values()))
        self.compactions += 1
        # More distinct topics than queue_max (not a city's fleet): the oldest go; the cursor
        # still brings them back after a restart.
        excess = len(kept) - self.config.queue_max + 1
        if excess > 0:
            self.dropped += excess
            kept = kept[excess:]
        self.dropped += len(self._queue) - len(latest)
        self._queue = deque(kept)
        log.warning("alert MQTT queue full: compacted to %d (latest per topic)", len(kept))

    def _notify(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            wake.set()
        else:
            loop.call_soon_threadsafe(wake.set)

    # ---- the publisher task ---------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._stopping = False
        if self._queue:
            self._wake.set()
        self._task = asyncio.create_task(self._run(), name="alerts-mqtt-publisher")

    async def aclose(self, timeout: float = 3.0) -> None:
        """Flush what is queued (if the broker is there) for up to `timeout` s, then stop.
        Anything left is published after the next start (cursor)."""
        self._stopping = True
        self._notify()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            pass
        except Exception:
            log.exception("alert MQTT publisher failed")
        finally:
            if not task.done():
                task.cancel()  # also when our caller cancels us: never leave the task behind
        if not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _client(self) -> aiomqtt.Client:
        v5 = self.mqtt.protocol == "5"
        return aiomqtt.Client(
            self.mqtt.host,
            self.mqtt.port,
            username=self.mqtt.username,
            password=self.mqtt.password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            # Nothing to resume: what is unacknowledged is still in our queue and is sent again.
            clean_session=None if v5 else True,
            keepalive=self.mqtt.keepalive_s,
            timeout=self.config.publish_timeout_s,
            tls_context=self.mqtt.tls.ssl_context(),
            tls_insecure=True if self.mqtt.tls.enabled and self.mqtt.tls.insecure else None,
        )

    async def _run(self) -> None:
        assert self._wake is not None
        backoff = self.mqtt.reconnect_min_s
        outage_logged = False
        while not (self._stopping and not self._queue):
            try:
                async with self._client() as client:
                    self.connected = True
                    self.connects += 1
                    backoff = self.mqtt.reconnect_min_s
                    if outage_logged:
                        log.info("alert publisher reconnected; %d changes queued", len(self._queue))
                    outage_logged = False
                    await self._drain(client)
                    return  # stopping and drained
            except Exception as exc:
                self.connected = False
                if self._stopping:
                    return  # broker away at shutdown: the cursor covers what is left
                if not isinstance(exc, aiomqtt.MqttError | OSError | TimeoutError):
                    # A bug of ours or the client's must not end the feed: log it, go on.
                    log.exception("alert publisher failed; reconnecting")
                elif not outage_logged:
                    log.warning("alert publisher: broker unavailable (%s); queueing", exc)
                    outage_logged = True
                delay = backoff * (0.5 + random.random() / 2)
                backoff = min(self.mqtt.reconnect_max_s, backoff * 2)
                self._wake.clear()
                # Sleep out the backoff, but wake early when asked to stop.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait_stop(), delay)
            finally:
                self.connected = False

    async def _wait_stop(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            self._wake.clear()
            await self._wake.wait()

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Send until stopping with an empty queue. Raises on a lost connection."""
        assert self._wake is not None
        while True:
            window = 1 if self._careful else self.config.window
            with self._lock:
                batch = [self._queue.popleft() for _ in range(min(window, len(self._queue)))]
            if not batch:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                sent = await self._send(client, batch)
            except BaseException as exc:
                if isinstance(exc, aiomqtt.MqttError | TimeoutError) and self._poisoned(batch):
                    raise
                with self._lock:
                    self._queue.extendleft(reversed(batch))  # back in front, same order
                raise
            if self._careful:
                self._careful -= 1
                self._head_drops = 0
            self.published += sent
            top = max(item.seq for item in batch)
            if top and self._on_flushed is not None:
                try:
                    self._on_flushed(top)
                except Exception:
                    log.exception("alert publisher: could not store its cursor")

    POISON_DROPS = 5  # connections lost in a row on one lone change before it is skipped

    def _poisoned(self, batch: list[_Item]) -> bool:
        """The broker dropped the connection while `batch` was in flight. True if the batch was
        one change that did this `POISON_DROPS` times in a row: it is counted, logged and not
        sent again (a broker that disconnects on it would otherwise stop the feed for good)."""
        if len(batch) > 1 or not self._careful:
            self._careful = max(self._careful, len(batch))
            self._head_drops = 0
            return False
        self._head_drops += 1
        if self._head_drops < self.POISON_DROPS:
            return False
        self._head_drops = 0
        self._careful -= 1
        self.failed += 1
        log.error(
            "alert change on %r: the broker dropped the connection %d times on it; skipped",
            batch[0].topic,
            self.POISON_DROPS,
        )
        return True

    async def _send(self, client: aiomqtt.Client, batch: list[_Item]) -> int:
        """Publish a window and wait for its PUBACKs; returns how many the broker took.

        A lost connection raises (the whole window is sent again after reconnecting). An item the
        client refuses by itself (a topic it cannot carry, a payload too large) is logged, counted
        in `failed` and skipped: one bad alert must never stop the feed for every later one."""
        # One connection keeps the order; waiting for the PUBACKs of a window at once keeps it fast.
        tasks = [
            asyncio.ensure_future(client.publish(item.topic, item.payload, qos=1, retain=True))
            for item in batch
        ]
        _done, pending = await asyncio.wait(tasks, timeout=self.config.publish_timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            raise TimeoutError(f"{len(pending)} alert publishes not acknowledged in time")
        link_error: BaseException | None = None
        sent = 0
        for item, task in zip(batch, tasks, strict=True):
            exc = task.exception()  # every one retrieved
            if exc is None:
                sent += 1
            elif isinstance(exc, aiomqtt.MqttError | OSError | TimeoutError):
                link_error = link_error or exc
            else:
                self.failed += 1
                log.error("alert change on %r cannot be published, skipped: %r", item.topic, exc)
        if link_error is not None:
            raise link_error
        return sent
