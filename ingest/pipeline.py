"""One message's way through: decode → validate → dead-letter / spool → observers → durable.

`handle()` returns only when everything the message carried is durable in the spool (or was
dead-lettered): the receiver acknowledges the message to the broker after that, never before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

import orjson

from devices.messages import Observation
from devices.registry import Registry
from ingest.deadletter import DeadLetterLog
from ingest.decode import Decoder
from ingest.metrics import IngestMetrics
from ingest.points import to_point
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
        self.spool = spool
        self.deadletter = deadletter
        self.metrics = metrics
        self.sinks = list(sinks)
        self._sink_errors = 0

    async def handle(self, topic: str, payload: bytes) -> None:
        metrics = self.metrics
        metrics.messages.inc()
        decoded = self.decoder.decode(topic, payload, time.time_ns() // 1_000_000)
        for rej in decoded.rejected:
            metrics.rejected(rej.reason).inc()
            self.deadletter.write(
                topic=topic,
                reason=rej.reason,
                detail=rej.detail,
                payload=payload if rej.index is None else None,
                item=rej.item,
                index=rej.index,
            )
        if not decoded.accepted:
            return
        records: list[bytes] = []
        registry = self.registry
        for obs in decoded.accepted:
            metrics.accepted(obs.kind, obs.channel).inc()
            if obs.device_id not in registry:
                metrics.unregistered.inc()
            point = to_point(obs, registry)
            if point is not None:
                records.append(orjson.dumps(point))
        if records:
            if self.spool.full:
                metrics.spool_full.set(1)
                await self.spool.wait_space()  # hold the ack: the broker keeps the rest
                metrics.spool_full.set(0)
            self.spool.append(records)
        for obs in decoded.accepted:
            for sink in self.sinks:
                try:
                    sink.observe(obs)
                except Exception:  # a rule bug must never cost a reading
                    self._sink_errors += 1
                    if self._sink_errors <= 10 or self._sink_errors % 1000 == 0:
                        log.exception("observer %r failed on %s", sink, obs.device_id)
        if records:
            await self.spool.durable()
