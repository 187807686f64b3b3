"""Drains the spool into the store: batches, retries with backoff, splits, dead-letters bad lines.

A batch is committed in the spool only after the store took it (HTTP 204), so a crash at any point
replays at most one batch, which the store's point identity makes harmless.
"""

from __future__ import annotations

import asyncio
import logging
import random

from ingest.deadletter import DeadLetterLog
from ingest.errors import (
    AuthError,
    BatchTooLargeError,
    RejectedBatchError,
    RetryableStoreError,
    ServerLimitError,
    StoreError,
)
from ingest.metrics import IngestMetrics
from ingest.spool import Spool
from ingest.stores.base import PointStore

log = logging.getLogger(__name__)


class Writer:
    def __init__(
        self,
        spool: Spool,
        store: PointStore,
        deadletter: DeadLetterLog,
        metrics: IngestMetrics,
        *,
        batch_lines: int,
        batch_interval_s: float,
        retry_min_s: float,
        retry_max_s: float,
        retry_after_max_s: float = 60.0,
    ) -> None:
        self.spool = spool
        self.store = store
        self.deadletter = deadletter
        self.metrics = metrics
        self.batch_lines = batch_lines
        self.batch_interval_s = batch_interval_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.retry_after_max_s = retry_after_max_s
        self._failing = False
        self.reason: str | None = None  # why the writer is not writing, for /healthz
        self._restart_delay = retry_min_s
        self.idle = asyncio.Event()  # set while nothing is waiting to be written (tests, shutdown)

    @property
    def failing(self) -> bool:
        """True from a failed store write until the next one succeeds."""
        return self._failing

    async def run(self) -> None:
        """Drain forever. If the loop dies of an error nobody foresaw (a full disk while writing
        the checkpoint, a corrupt store), start it again with backoff: the spool still holds
        everything not committed, and /healthz says why until a write succeeds."""
        while True:
            try:
                await self._drain()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.metrics.writer_restarts += 1
                self.metrics.store_up.set(0)
                self._failing = True
                self.reason = f"writer restarted after an error: {exc!r}"[:500]
                delay = self._restart_delay
                log.exception("store writer died; restarting in about %.1f s", delay)
                self.spool.rewind()  # what it had read is not committed: read it again
                await asyncio.sleep(delay * (0.5 + random.random()))
                self._restart_delay = min(self.retry_max_s, delay * 2)
            else:  # pragma: no cover - _drain never returns
                return

    async def _drain(self) -> None:
        while True:
            batch = self.spool.read_available(self.batch_lines)
            if batch is None:
                self.idle.set()
                batch = await self.spool.read_batch(self.batch_lines, self.batch_interval_s)
            self.idle.clear()
            await self._write_all(batch.records)
            self.spool.commit(batch)
            self.metrics.points_written += len(batch.records)
            self._restart_delay = self.retry_min_s
            if self.reason is not None:
                self.reason = None
                self._failing = False

    async def _write_all(self, points: list[bytes]) -> None:
        """Write until the store has every point (or dead-lettered the ones it refuses)."""
        delay = self.retry_min_s
        while True:
            try:
                await self.store.write(points)
                if self._failing:
                    log.info("store is taking writes again")
                    self._failing = False
                    self.reason = None
                self.metrics.store_up.set(1)
                return
            except BatchTooLargeError:
                self.metrics.write_error("too_large")
                if len(points) == 1:
                    self._dead_letter(points[0], "point alone is larger than the server accepts")
                    return
                await self._split(points)
                return
            except RejectedBatchError as exc:
                self.metrics.write_error("rejected")
                if len(points) == 1:
                    self._dead_letter(points[0], str(exc))
                    return
                # Bisect to find the offending lines; rewriting good points is idempotent.
                await self._split(points)
                return
            except (RetryableStoreError, AuthError, ServerLimitError, StoreError) as exc:
                self.metrics.store_up.set(0)
                self.metrics.write_error(_error_class(exc))
                wait = delay * (0.5 + random.random())  # jitter: many services must not sync up
                if isinstance(exc, RetryableStoreError) and exc.retry_after is not None:
                    # The server's word, within reason: a proxy's "Retry-After: 86400" must
                    # not park the city's readings for a day.
                    wait = min(max(exc.retry_after, 0.1), self.retry_after_max_s)
                if isinstance(exc, AuthError | ServerLimitError):
                    wait = max(wait, self.retry_max_s / 2)
                reason = f"store write failed: {exc}"[:500]
                if isinstance(exc, ServerLimitError):
                    reason = f"the store refuses more points (a server limit; data kept): {exc}"[
                        :500
                    ]
                if not self._failing or reason != self.reason:
                    log.warning("%s; keeping data, retrying", reason)
                    self._failing = True
                self.reason = reason
                await asyncio.sleep(wait)
                delay = min(self.retry_max_s, delay * 2)

    async def _split(self, points: list[bytes]) -> None:
        half = len(points) // 2
        await self._write_all(points[:half])
        await self._write_all(points[half:])

    def _dead_letter(self, line: bytes, message: str) -> None:
        self.metrics.reject("store_rejected")
        self.deadletter.write(
            topic="",
            reason="store_rejected",
            detail=f"store refused the point: {message}",
            item={"line": line.decode("utf-8", "replace")},
            keep=True,  # the spool has let go of it: this record is the point's only copy
        )


def _error_class(exc: StoreError) -> str:
    if isinstance(exc, AuthError):
        return "auth"
    if isinstance(exc, ServerLimitError):
        return "server_limit"
    return "retry"
