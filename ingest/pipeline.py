"""One message's way through: decode → validate → dead-letter / spool → observers.

`prepare()` does the work of one message synchronously and returns the lines it wants spooled;
the receiver gathers a whole socket read's worth of messages, appends their lines at once, awaits
`spool.durable()` once and acknowledges them all together. So a message is acknowledged only when
everything it carried is durable in the spool (or it was dead-lettered), a spool failure is retried
with the same lines, and the per-message cost stays small.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from devices.messages import Observation
from devices.registry import Registry
from ingest.deadletter import DeadLetterLog
from ingest.decode import Decoded, Decoder
from ingest.lineprotocol import LineFormatter
from ingest.metrics import IngestMetrics
from ingest.spool import Spool

log = logging.getLogger(__name__)

# Up to this many rejected readings of one message are dead-lettered one by one; beyond, one record.
DEAD_LETTER_ITEMS = 20


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
        self.new_devices = metrics.new_devices
        self._full_waiters = 0

    async def ready(self) -> None:
        """Wait while the spool is full: acks are held back and the broker keeps the rest."""
        if self.spool.full:
            if not self._full_waiters:
                self.metrics.spool_full.set(1)
                log.warning(
                    "spool full (%d bytes): holding acks until the store catches up",
                    self.spool.pending_bytes,
                )
            self._full_waiters += 1
            try:
                await self.spool.wait_space()
            finally:
                self._full_waiters -= 1
                if not self._full_waiters:
                    self.metrics.spool_full.set(0)

    def internal_error(self, topic: str, payload: bytes, exc: BaseException) -> None:
        """A message our own code failed on: kept in the dead-letter log, counted, acknowledged."""
        self.metrics.reject("internal_error")
        self.deadletter.write(
            topic=topic,
            reason="internal_error",
            detail=repr(exc)[:500],
            payload=payload,
            keep=True,  # acknowledged: this record is the message's only copy
        )

    def prepare(self, topic: str, payload: bytes, now_ms: int | None = None) -> list[bytes]:
        """Decode, dead-letter what is bad, tell the observers; return the lines to spool.

        The caller appends the lines of a whole batch at once, so a spool failure can be retried
        with the very same lines (no second dead-letter record, no second observation)."""
        if now_ms is None:
            now_ms = time.time_ns() // 1_000_000
        return self.accept(topic, payload, self.decoder.decode(topic, payload, now_ms))

    def accept(self, topic: str, payload: bytes, decoded: Decoded) -> list[bytes]:
        """The second half of `prepare` (the decoding may have run in a worker thread)."""
        metrics = self.metrics
        metrics.messages += 1
        if decoded.rejected:
            self._dead_letter(topic, payload, decoded)
        if not decoded.accepted:
            return []
        records: list[bytes] = []
        registry = self.registry
        accepted = metrics.accepted
        for obs in decoded.accepted:
            key = (obs.kind, obs.channel)
            accepted[key] = accepted.get(key, 0) + 1
            if obs.device_id not in registry:
                metrics.unregistered += 1
                self.new_devices.seen(obs.device_id)
            line = self.lines.line(obs)
            if line is not None:
                records.append(line)
        for obs in decoded.accepted:
            for sink in self.sinks:
                try:
                    sink.observe(obs)
                except Exception:  # a rule bug must never cost a reading
                    self._sink_errors += 1
                    if self._sink_errors <= 10 or self._sink_errors % 1000 == 0:
                        log.exception("observer %r failed on %s", sink, obs.device_id)
        return records

    def _dead_letter(self, topic: str, payload: bytes, decoded: Decoded) -> None:
        metrics = self.metrics
        rejected = decoded.rejected
        for rej in rejected:
            metrics.reject(rej.reason)
        for reason, n in decoded.more.items():
            metrics.rejected[reason] = metrics.rejected.get(reason, 0) + n
        total = decoded.rejected_total
        if total <= DEAD_LETTER_ITEMS:
            for rej in rejected:
                self.deadletter.write(
                    topic=topic,
                    reason=rej.reason,
                    detail=rej.detail,
                    payload=payload if rej.index is None else None,
                    item=rej.item,
                    index=rej.index,
                )
            return
        # One gateway message with thousands of bad items: one record with the count and the
        # first reasons, not thousands that would rotate everyone else's records away.
        counts = Counter(rej.reason for rej in rejected)
        counts.update(decoded.more)
        self.deadletter.write(
            topic=topic,
            reason=rejected[0].reason,
            detail=f"{total} readings of this message rejected",
            payload=payload,
            item={
                "rejected": total,
                "by_reason": dict(counts.most_common()),
                "first": [
                    {"index": r.index, "reason": r.reason, "detail": r.detail}
                    for r in rejected[:DEAD_LETTER_ITEMS]
                ],
            },
        )
