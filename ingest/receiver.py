"""The MQTT edge of the ingest, on gmqtt.

Why gmqtt: on a queued backlog of 100k QoS 1 messages it drained ~75k msg/s here while acking only
when our async handler returns (`optimistic_acknowledgement=False`), against ~29k msg/s for
paho-mqtt acking automatically. Manual acks are the point: a PUBACK leaves only once the message's
readings are durable in the spool (or it was dead-lettered).

MQTT 5, fixed client id, clean_start=False and a session expiry: the broker queues readings while
the service is away. Reconnecting is ours, not gmqtt's: the lost client is stopped for good, then a
fresh one connects after an exponential backoff with jitter (see `run`); every connection change is
logged once and told to `on_link` (the rules' clock).

Acks are batched: gmqtt would run one asyncio task and write one PUBACK packet per message, which
cost more than everything else the ingest does. We take over its QoS 1 hook, gather the messages of
one socket read, process them, await one spool fsync and write their PUBACKs in one socket write.
This also gives manual acks on MQTT 3.1.1, where gmqtt itself only acks optimistically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gmqtt
from gmqtt.mqtt.constants import MQTTCommands, MQTTv50, MQTTv311
from gmqtt.mqtt.package import CommandWithMidPacket

from devices.topics import subscription
from ingest.errors import SpoolError
from ingest.metrics import IngestMetrics
from ingest.pipeline import Pipeline

if TYPE_CHECKING:
    from streetwatch.config import MqttConfig

log = logging.getLogger(__name__)
# gmqtt logs every failed reconnect attempt; we log state changes once instead.
logging.getLogger("gmqtt").setLevel(logging.ERROR)

Message = tuple[int, str, bytes]  # (packet id, topic, payload)


class MqttReceiver:
    def __init__(self, config: MqttConfig, pipeline: Pipeline, metrics: IngestMetrics) -> None:
        self.config = config
        self.pipeline = pipeline
        self.metrics = metrics
        self.topic = subscription(config.topic_prefix)
        self.connected = asyncio.Event()
        self._client: gmqtt.Client | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._pending: list[Message] = []
        self._flush_scheduled = False
        self._proto_ver = MQTTv50 if config.protocol == "5" else MQTTv311
        self._ever_connected = False
        self._stopping = False
        self._stopped = asyncio.Event()
        self._lost = asyncio.Event()  # the current client's connection ended
        # Told when our link to the broker goes down (False) or comes up (True, and whether the
        # broker kept our session, i.e. may hold a backlog): the rules' clock needs to know.
        self.on_link: Callable[[bool, bool], None] | None = None

    def _make_client(self) -> gmqtt.Client:
        cfg = self.config
        kwargs: dict[str, Any] = {}
        if cfg.protocol == "5":
            kwargs = {
                "session_expiry_interval": cfg.session_expiry_s,
                "receive_maximum": cfg.receive_maximum,
            }
        client = self._client = _OneShotClient(
            cfg.client_id,
            clean_session=False,
            optimistic_acknowledgement=False,
            **kwargs,
        )
        if cfg.username:
            client.set_auth_credentials(cfg.username, cfg.password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_qos0_message
        # gmqtt's per-message QoS 1 path, replaced by our batching one (see module docstring).
        client._package_handler._handle_qos_1_publish_packet = self._on_qos1
        return client

    async def run(self) -> None:
        """Connect, keep the connection, and when it is lost: stop that client completely, wait
        out a backoff (exponential, with jitter) and connect a fresh one. Always one client.

        gmqtt's own reconnect loop is off (`_OneShotClient`): when a long cut made us start a
        fresh client, the old one, still sleeping out its backoff, woke and connected beside it;
        the broker then handed our session back and forth and the link dropped every few seconds.
        A refusal of any kind (bad credentials too) is retried the same way, so fixing the
        broker's password file needs no restart."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        delay = cfg.reconnect_min_s
        logged = False
        while not self._stopping:
            client = self._make_client()
            self._lost = asyncio.Event()
            try:
                await asyncio.wait_for(
                    client.connect(
                        cfg.host,
                        cfg.port,
                        ssl=cfg.tls.ssl_context() or False,
                        keepalive=cfg.keepalive_s,
                        version=self._proto_ver,
                    ),
                    # The link can die between TCP connect and CONNACK; gmqtt would wait forever.
                    timeout=max(10.0, cfg.keepalive_s),
                )
            except Exception as exc:  # network error, CONNACK refusal, timeout: retry either way
                await self._retire(client)
                if self._stopping:
                    return
                if not logged:
                    log.warning(
                        "MQTT broker %s:%s not reachable (%s); retrying", cfg.host, cfg.port, exc
                    )
                    logged = True
                await self._pause(delay * (0.5 + random.random()))
                delay = min(cfg.reconnect_max_s, delay * 2)
                continue
            logged = False
            up_since = loop.time()
            await self._lost.wait()
            if self._stopping:
                return  # stop() disconnects after the in-flight batches are acknowledged
            await self._retire(client)
            # A connection that held a while starts the backoff afresh; one the broker drops at
            # once (another client taking our id, a refusing ACL) backs off further each time.
            if loop.time() - up_since > max(10.0, cfg.keepalive_s):
                delay = cfg.reconnect_min_s
            await self._pause(delay * (0.5 + random.random()))
            delay = min(cfg.reconnect_max_s, delay * 2)

    async def _retire(self, client: gmqtt.Client) -> None:
        """Stop a client for good: inactive, socket closed; it never connects again by itself."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), timeout=2)

    async def _pause(self, seconds: float) -> None:
        """Sleep out a backoff; stop() cuts it short."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), seconds)

    def _current(self, client: gmqtt.Client) -> bool:
        return client is self._client

    def _on_connect(self, client: gmqtt.Client, flags: int, rc: int, properties: Any) -> None:
        if not self._current(client):
            return  # a retired client's late callback
        client.subscribe(self.topic, qos=1)  # idempotent; a persistent session keeps it anyway
        self.metrics.mqtt_connected.set(1)
        self.metrics.mqtt_connects.inc()
        what = "reconnected to" if self._ever_connected else "connected to"
        log.info(
            "MQTT %s %s:%s as %s, subscribed %s",
            what,
            self.config.host,
            self.config.port,
            self.config.client_id,
            self.topic,
        )
        self._ever_connected = True
        self.connected.set()
        if self.on_link is not None:
            # A session the broker kept may hold readings queued while we were away.
            self.on_link(True, bool(flags))

    def _on_disconnect(self, client: gmqtt.Client, packet: Any, exc: Any = None) -> None:
        if not self._current(client):
            return  # a retired client's late callback
        if self.connected.is_set():
            if not self._stopping:
                log.warning(
                    "MQTT connection to %s:%s lost; reconnecting",
                    self.config.host,
                    self.config.port,
                )
            self.metrics.mqtt_connected.set(0)
            self.connected.clear()
            if self.on_link is not None:
                self.on_link(False, False)
        self._lost.set()

    def _on_qos0_message(
        self, client: gmqtt.Client, topic: Any, payload: bytes, qos: int, properties: Any
    ) -> int:
        # QoS 0 has nothing to acknowledge; devices should use QoS 1, but a reading is a reading.
        try:
            self.pipeline.take(_topic_text(topic), payload)
        except Exception:
            log.exception("QoS 0 message on %r could not be taken", topic)
        return 0

    def _on_qos1(self, mid: int, payload: bytes, topic: Any, properties: Any) -> None:
        self._pending.append((mid, _topic_text(topic), payload))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Everything one socket read delivered becomes one batch (one fsync, one ack write)."""
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        assert self._client is not None  # set before connecting, so before any message
        conn = self._client._connection
        task = asyncio.create_task(self._process(batch, conn), name="ingest-batch")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _process(self, batch: list[Message], conn: Any) -> None:
        pipeline = self.pipeline
        await pipeline.ready()
        wrote = False
        try:
            for i, (_, topic, payload) in enumerate(batch):
                wrote |= pipeline.take(topic, payload)
                if i % 128 == 127:
                    # One socket read can carry a thousand messages: let the alert publisher and
                    # the HTTP API run between slices, so an alert never waits for the whole read.
                    await asyncio.sleep(0)
            if wrote:
                await pipeline.spool.durable()
        except SpoolError:
            # The disk refuses: acknowledge nothing. The broker keeps these messages and
            # redelivers them after a reconnect; never ack what is not safely stored.
            log.exception("spool write failed; %d messages left unacknowledged", len(batch))
            return
        acks = b"".join(
            CommandWithMidPacket.build_package(MQTTCommands.PUBACK, mid, False, 0, self._proto_ver)
            for mid, _, _ in batch
        )
        client = self._client
        if client is not None and client._connection is conn and not conn.is_closing():
            conn._protocol.write_data(acks)
        # else: the connection that delivered them is gone; the broker redelivers them and the
        # store's point identity (device + ts) makes the second copy harmless.

    async def stop(self, timeout: float = 3.0) -> None:
        """Stop taking messages: let in-flight handlers finish (so they are spooled), disconnect."""
        self._stopping = True
        self._stopped.set()
        self._lost.set()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=timeout)
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), timeout=2)
        self.metrics.mqtt_connected.set(0)


class _OneShotClient(gmqtt.Client):
    """A gmqtt client that never reconnects by itself: `MqttReceiver.run` makes a fresh one after
    the old one is fully stopped, so two clients never hold our client id at once."""

    async def reconnect(self, delay: bool = False) -> None:
        return None


def _topic_text(topic: Any) -> str:
    if isinstance(topic, bytes | bytearray):  # gmqtt hands over raw bytes when not valid UTF-8
        return bytes(topic).decode("utf-8", "replace")
    return str(topic)
