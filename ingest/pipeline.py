"""One message's way through: decode → validate → dead-letter / spool → observers.

`take()` does the work of one message synchronously and says whether it appended to the spool;
the receiver takes a whole socket read's worth of messages, then awaits `spool.durable()` once and
acknowledges them all together. So a message is acknowledged only when everything it carried is
durable in the spool (or it was dead-lettered), and the per-message cost stays small.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

from devices.messages import Observation
from devices.registry import Registry
from ingest.deadletter import DeadLetterLog
from ingest.decode import Decoder
from ingest.lineprotocol import LineFormatter
from ingest.metrics import IngestMetrics
from ingest.spool import Spool

log = logging.getLogger(__name__)


class ObservationSink(Protocol):
    """Whoever wants accepted readings (the rule engine). Must be quick and never block."""

    def observe(self, obs: Observation) -> None: ...


class Pipeline:
    def __init__(
        self,
        decoder: Decoder,
        registry: Registry,
        spool: Spool,
        deadletter: DeadLetterLog,
        metrics: IngestMetrics,
        sinks: Sequence[ObservationSink] = (),
    ) -> None:
        self.decoder = decoder
        self.registry = registry
        self.lines = LineFormatter(registry)
        self.spool = spool
        self.deadletter = deadletter
        self.metrics = metrics
        self.sinks = list(sinks)
        self._sink_errors = 0

    async def ready(self) -> None:
        """Wait while the spool is full: acks are held back and the broker keeps the rest."""
        if self.spool.full:
            self.metrics.spool_full.set(1)
            log.warning(
                "spool full (%d bytes): holding acks until the store catches up",
                self.spool.pending_bytes,
            )
            await self.spool.wait_space()
            self.metrics.spool_full.set(0)

    def take(self, topic: str, payload: bytes, now_ms: int | None = None) -> bool:
        """Process one message; True if it appended to the spool (then await durable before acking)."""
        metrics = self.metrics
        metrics.messages += 1
        if now_ms is None:
            now_ms = time.time_ns() // 1_000_000
        decoded = self.decoder.decode(topic, payload, now_ms)
        for rej in decoded.rejected:
            metrics.reject(rej.reason)
            self.deadletter.write(
                topic=topic,
                reason=rej.reason,
                detail=rej.detail,
                payload=payload if rej.index is None else None,
                item=rej.item,
                index=rej.index,
            )
        if not decoded.accepted:
            return False
        records: list[bytes] = []
        registry = self.registry
        accepted = metrics.accepted
        for obs in decoded.accepted:
            key = (obs.kind, obs.channel)
            accepted[key] = accepted.get(key, 0) + 1
            if obs.device_id not in registry:
                metrics.unregistered += 1
            line = self.lines.line(obs)
            if line is not None:
                records.append(line)
        if records:
            self.spool.append(records)
        for obs in decoded.accepted:
            for sink in self.sinks:
                try:
                    sink.observe(obs)
                except Exception:  # a rule bug must never cost a reading
                    self._sink_errors += 1
                    if self._sink_errors <= 10 or self._sink_errors % 1000 == 0:
                        log.exception("observer %r failed on %s", sink, obs.device_id)
        return bool(records)
