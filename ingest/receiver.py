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
cost more than everything else the ingest does. We take over its QoS 1 hook (through
`ingest/mqtt_seam.py`, checked at start), gather the messages of one socket read, process them,
await one spool fsync and write their PUBACKs in one socket write. This also gives manual acks on
MQTT 3.1.1, where gmqtt itself only acks optimistically. QoS 0 messages take the same batches,
without a PUBACK.

Memory stays bounded: while the spool is full or more than `mqtt.max_inflight_bytes` of payload
waits unacknowledged, the socket is not read and the broker keeps the backlog. A batch the spool
refuses (disk full, fsync error) is retried with backoff and acknowledged only once durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311

from devices.topics import subscription
from ingest import mqtt_seam
from ingest.metrics import IngestMetrics
from ingest.pipeline import Pipeline

if TYPE_CHECKING:
    from streetwatch.config import MqttConfig

log = logging.getLogger(__name__)
# gmqtt logs every failed reconnect attempt; we log state changes once instead.
logging.getLogger("gmqtt").setLevel(logging.ERROR)

Message = tuple[int | None, str, bytes]  # (packet id, None for QoS 0; topic; payload)

# Payloads larger than this are decoded in a worker thread: a 256 KiB gateway array takes longer
# than the 50 ms the event loop may spend on one message (alerts and the API wait meanwhile).
DECODE_IN_THREAD_BYTES = 16 * 1024


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
        self._held_bytes = 0  # payload bytes received and not yet acknowledged (or dropped)
        self._paused: Any = None  # the connection whose socket reading is paused, if any
        self._keepalive_handle: asyncio.TimerHandle | None = None
        self._space_watch: asyncio.Task[None] | None = None
        self._spool_failing = False
        # While the spool refuses writes one batch probes it (with backoff); the others wait
        # here and go the moment it succeeds, so acks resume together when space returns.
        self._spool_ok = asyncio.Event()
        self._spool_ok.set()
        self._probing = False
        self.acks_held = 0  # messages whose batch the spool refused, waiting to be durable
        self._stopped = asyncio.Event()
        self._order = asyncio.Lock()  # FIFO: batches reach the rules in arrival order
        # Big payloads are decoded here, one at a time (under `_order`), not in asyncio's shared
        # pool, where they waited behind figures and alert queries with the whole ingest.
        self._decode_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-decode")
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
        client.on_message = self._on_message
        # gmqtt's per-message QoS 1 path, replaced by our batching one (see module docstring);
        # `check_seam()` refuses to start on a gmqtt where this would not hold.
        mqtt_seam.install(client, self._on_qos1)
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
                await self._backoff(delay * (0.5 + random.random()))
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
            await self._backoff(delay * (0.5 + random.random()))
            delay = min(cfg.reconnect_max_s, delay * 2)

    async def _retire(self, client: gmqtt.Client) -> None:
        """Stop a client for good: inactive, socket closed; it never connects again by itself."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), timeout=2)

    async def _backoff(self, seconds: float) -> None:
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

    async def check_seam(self) -> None:
        """Refuse to start (MqttSeamError) on a gmqtt that would ack before the spool's fsync."""
        await mqtt_seam.self_test()

    def _on_message(
        self, client: gmqtt.Client, topic: Any, payload: bytes, qos: int, properties: Any
    ) -> int:
        if qos:  # only if gmqtt bypassed our hook, which check_seam() rules out at start
            log.error("gmqtt delivered a QoS %d message outside the batching hook", qos)
        # QoS 0 has nothing to acknowledge, but a reading is a reading: it takes the same way
        # (spool limit, fsync, writer) as QoS 1, so it reaches the store within the batch interval.
        self._enqueue(None, topic, payload)
        return 0

    def _on_qos1(self, mid: int, payload: bytes, topic: Any, properties: Any) -> None:
        self._enqueue(mid, topic, payload)

    def _enqueue(self, mid: int | None, topic: Any, payload: bytes) -> None:
        self._pending.append((mid, _topic_text(topic), payload))
        self._held_bytes += len(payload)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        if self._held_bytes > self.config.max_inflight_bytes or self.pipeline.spool.full:
            self._pause()

    def _flush(self) -> None:
        """Everything one socket read delivered becomes one batch (one fsync, one ack write)."""
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        conn = mqtt_seam.connection(self._client)
        task = asyncio.create_task(self._process(batch, conn), name="ingest-batch")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _process(self, batch: list[Message], conn: Any) -> None:
        held = sum(len(payload) for _, _, payload in batch)
        try:
            # Batches are judged one after another, in the order the broker sent them: `_prepare`
            # yields (every 128 messages, big payloads in a thread), and two batches interleaving
            # there fed the rules a device's readings out of order (false offline, cabinet
            # outages formed from alerts hours apart). The spool append that follows runs before
            # the next await, so the spool keeps that order too.
            async with self._order:
                await self.pipeline.ready()
                records = await self._prepare(batch)
            if records and not await self._spool(records, len(batch)):
                return  # stopping: unacknowledged, the broker redelivers after the restart
            mids = [mid for mid, _, _ in batch if mid is not None]
            acks = b"".join(mqtt_seam.puback(mid, self._proto_ver) for mid in mids)
            if (
                acks
                and conn is not None
                and mqtt_seam.connection(self._client) is conn
                and mqtt_seam.is_open(conn)
            ):
                try:
                    mqtt_seam.write(conn, acks)
                    self.metrics.acks += len(mids)
                except Exception:  # the link is going: the broker redelivers them
                    log.exception("could not write %d PUBACKs", len(batch))
            # else: the connection that delivered them is gone; the broker redelivers them and
            # the store's point identity (device + ts) makes the second copy harmless.
        finally:
            self._held_bytes -= held
            self._maybe_resume()

    async def _prepare(self, batch: list[Message]) -> list[bytes]:
        pipeline = self.pipeline
        records: list[bytes] = []
        for i, (_, topic, payload) in enumerate(batch):
            try:
                if len(payload) > DECODE_IN_THREAD_BYTES:
                    now_ms = time.time_ns() // 1_000_000
                    decoded = await asyncio.get_running_loop().run_in_executor(
                        self._decode_pool, pipeline.decoder.decode, topic, payload, now_ms
                    )
                    records += pipeline.accept(topic, payload, decoded)
                else:
                    records += pipeline.prepare(topic, payload)
            except Exception as exc:
                # Our bug, not the device's: the message is kept in the dead-letter log with the
                # error, and the rest of the batch (and the receive window) goes on.
                log.exception("message on %r could not be processed", topic)
                pipeline.internal_error(topic, payload, exc)
            if i % 128 == 127:
                # One socket read can carry a thousand messages: let the alert publisher and
                # the HTTP API run between slices, so an alert never waits for the whole read.
                await asyncio.sleep(0)
        return records

    async def _spool(self, records: list[bytes], messages: int) -> bool:
        """Append and fsync; on any failure retry the same lines until the spool takes them
        (never ack what is not safely stored). False if stopping meanwhile.

        One failing batch at a time probes the disk, with backoff; every other refused batch
        waits for that probe and retries at once when it succeeds. Each batch sleeping out its
        own backoff (up to 30 s) held acks long after space returned, while /healthz already
        said ok and the spool looked drained."""
        spool = self.pipeline.spool
        delay = 0.5
        held = False
        probing = False
        try:
            while True:
                if not probing and not self._spool_ok.is_set():
                    if not held:  # held back behind the probe: counted like a refused batch
                        held = True
                        self.acks_held += messages
                    if not await self._wait_spool_ok():
                        return False
                try:
                    spool.append(records)
                    await spool.durable()
                except Exception as exc:
                    self.metrics.spool_errors += 1
                    if not self._spool_failing:
                        log.error("spool write failed (%s); holding acks and retrying", exc)
                        self._spool_failing = True
                    self._spool_ok.clear()
                    if not held:
                        held = True
                        self.acks_held += messages
                    if self._stopping:
                        return False
                    if not probing and self._probing:
                        continue  # another batch probes: wait for it
                    probing = self._probing = True
                    await self._backoff(delay * (0.5 + random.random()))
                    if self._stopping:
                        return False
                    delay = min(5.0, delay * 2)
                    continue
                if self._spool_failing:
                    log.warning("spool takes writes again; held acks go out")
                    self._spool_failing = False
                self._spool_ok.set()
                return True
        finally:
            if probing:
                self._probing = False
                if not self._spool_ok.is_set():
                    # Stopping mid-probe: let the waiters see `_stopping` and leave too.
                    self._spool_ok.set()
            if held:
                self.acks_held -= messages

    async def _wait_spool_ok(self) -> bool:
        """Wait for the probing batch's success; False if stopping meanwhile."""
        ok = asyncio.ensure_future(self._spool_ok.wait())
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({ok, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ok.cancel()
            stopped.cancel()
        return not self._stopping

    # ---- socket flow control -----------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """True while the broker socket is not read (spool full or too many bytes held)."""
        return self._paused is not None

    def _pause(self) -> None:
        """Stop reading the socket: the broker keeps the backlog, our memory stays bounded (MQTT
        3.1.1 has no receive window, and MQTT 5's window counts messages, not bytes)."""
        conn = mqtt_seam.connection(self._client)
        if conn is None or not mqtt_seam.is_open(conn):
            return
        # Every time, not once: asyncio's stream reader under gmqtt resumes the transport by
        # itself when its own buffer drains, which would undo an earlier pause.
        mqtt_seam.pause_reading(conn)
        if self._paused is conn:
            return
        self._paused = conn
        self.metrics.socket_paused.set(1)
        self._keepalive_tick()

    def _keepalive_tick(self) -> None:
        conn = self._paused
        if conn is None:
            return
        mqtt_seam.touch(conn)  # we read nothing on purpose: gmqtt must not call the link dead
        self._keepalive_handle = asyncio.get_running_loop().call_later(
            max(1.0, self.config.keepalive_s / 4), self._keepalive_tick
        )

    def _maybe_resume(self) -> None:
        conn = self._paused
        if conn is None:
            return
        if self._held_bytes > self.config.max_inflight_bytes // 2:
            return  # the batches holding those bytes call again as they finish
        if self.pipeline.spool.full:
            # The last batch may have refilled the spool as it landed, and then no batch is left
            # to call again: only the writer's progress can end this pause, so wait for it.
            if self._space_watch is None or self._space_watch.done():
                self._space_watch = asyncio.create_task(
                    self._resume_on_space(), name="ingest-resume-on-space"
                )
            return
        self._paused = None
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
            self._keepalive_handle = None
        self.metrics.socket_paused.set(0)
        if mqtt_seam.is_open(conn):
            mqtt_seam.resume_reading(conn)

    async def _resume_on_space(self) -> None:
        await self.pipeline.spool.wait_space()
        self._maybe_resume()

    async def stop(self, timeout: float = 3.0) -> None:
        """Stop taking messages: let in-flight handlers finish (so they are spooled), disconnect."""
        self._stopping = True
        self._stopped.set()
        if self._space_watch is not None:
            self._space_watch.cancel()
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
