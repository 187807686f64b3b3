"""One worker per crew channel: sends its queued notices in order, never waiting on another channel.

- At most `max_per_minute` messages a minute on the channel. While more than one is left in the
  minute, notices go one by one; the last message of the minute waits `digest_wait_s` to gather what
  else is queued and carries it all as one digest (every change named, one link). Nothing is dropped.
- A digest carries as many changes as fit in one message of the channel (`message_bytes`: a WeCom
  bot takes 2048 bytes); the rest go into the next message. A single notice longer than that has
  its long registry or device text cut (links and the alert id kept whole).
- A failed send is retried after capped exponential backoff with jitter (`retry_min_s` doubling up
  to `retry_max_s`), for hours; a notice older than `give_up_after_s` is given up, and the channel
  is reported down (an alert about the channel itself) until a send works again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable

from notify.config import NotifyConfig
from notify.outbox import Outbox, Row
from notify.routing import Target
from notify.sender import Sender
from notify.text import Writer, fit

log = logging.getLogger("streetwatch.notify")

DIGEST_MAX = 200  # changes per digest; more go into the next message
IDLE_POLL_S = 30.0  # a backstop: workers are woken on every queued notice


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class ChannelWorker:
    def __init__(
        self,
        target: Target,
        outbox: Outbox,
        config: NotifyConfig,
        sender: Sender,
        writer: Writer,
        *,
        on_down: Callable[[Target, str, float], None],
        on_up: Callable[[Target], None],
        message_bytes: int = 32768,
    ) -> None:
        self.target = target
        self.message_bytes = message_bytes
        self.outbox = outbox
        self.config = config
        self.sender = sender
        self.writer = writer
        self.on_down = on_down
        self.on_up = on_up
        self._wake = asyncio.Event()
        self._sent_at: deque[float] = deque()  # monotonic times of messages in the last minute
        self.failures = 0  # consecutive
        self.down = False
        # Counters for /metrics.
        self.sent = 0  # notices delivered (a digest counts each change it carries)
        self.messages = 0  # messages delivered
        self.digests = 0
        self.failed = 0  # failed attempts
        self.given_up = 0
        self.last_error: str | None = None

    def wake(self) -> None:
        self._wake.set()

    async def _sleep(self, seconds: float, wakeable: bool) -> None:
        if seconds <= 0:
            return
        if not wakeable:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _room(self, now: float) -> int:
        while self._sent_at and now - self._sent_at[0] >= 60.0:
            self._sent_at.popleft()
        return self.config.max_per_minute - len(self._sent_at)

    def _recall_minute(self) -> None:
        """The messages of the last minute before a restart count against this one: a service
        restarted (or crash-looping) within the minute must not start a fresh minute's worth."""
        now_ms, now = wall_ms(), time.monotonic()
        for at in self.outbox.sent_since(self.target.crew, self.target.channel, now_ms - 60_000):
            self._sent_at.append(now - max(0, now_ms - at) / 1000)

    async def run(self) -> None:
        try:
            self._recall_minute()
        except Exception:
            log.exception("notice worker %s/%s", self.target.crew, self.target.channel)
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The worker must outlive any one bad notice or database hiccup.
                log.exception("notice worker %s/%s", self.target.crew, self.target.channel)
                await asyncio.sleep(5.0)

    async def step(self) -> None:
        self._wake.clear()
        rows = self.outbox.queued(self.target.crew, self.target.channel, DIGEST_MAX)
        if not rows:
            await self._sleep(IDLE_POLL_S, wakeable=True)
            return
        now_ms = wall_ms()
        # Given up only while the channel is failing: notices that waited out a long stop of the
        # service itself are still tried (and delivered, if the channel works).
        limit_ms = self.config.give_up_after_s * 1000
        stale = [r for r in rows if now_ms - r.created_at > limit_ms] if self.failures else []
        if stale:
            self._give_up(stale)
            return
        room = self._room(time.monotonic())
        if room <= 0:
            await self._sleep(60.0 - (time.monotonic() - self._sent_at[0]), wakeable=False)
            return
        if room == 1 and self.config.digest_wait_s > 0 and self.config.max_per_minute > 1:
            # The last message of this minute: let the storm gather into it.
            await asyncio.sleep(self.config.digest_wait_s)
            rows = self.outbox.queued(self.target.crew, self.target.channel, DIGEST_MAX)
            if not rows:
                return
        batch = self._fit(rows) if room == 1 and len(rows) > 1 else rows[:1]
        if len(batch) == 1:
            # One notice too long for the channel would be refused on every retry and hold up
            # every notice behind it: its long registry or device text is cut instead.
            one = batch[0]
            title, body = fit(one.title, one.body, self.message_bytes, ("://", one.alert_id))
        else:
            title, body = self._digest(batch)
        sending = asyncio.ensure_future(self.sender.send(self.target.url, title, body))
        try:
            error = await asyncio.shield(sending)
        except asyncio.CancelledError:
            # Stopping while the message is on its way: wait for the receiver's answer (apprise's
            # own timeouts bound it) and record it, or the next start sends it again.
            while not sending.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(sending)
            if not sending.cancelled() and sending.exception() is None:
                self._record(batch, sending.result())
            raise
        if self._record(batch, error):
            return
        delay = min(
            self.config.retry_max_s, self.config.retry_min_s * 2 ** min(self.failures - 1, 30)
        )
        delay = random.uniform(delay / 2, delay)  # jitter: channels that died together spread out
        log.warning(
            "notice to %s/%s failed (%s); retry in %.0f s",
            self.target.crew,
            self.target.channel,
            error,
            delay,
        )
        await self._sleep(delay, wakeable=False)

    def _record(self, batch: list[Row], error: str | None) -> bool:
        """Mark the batch sent (True) or its attempt failed (False)."""
        ids = [r.id for r in batch]
        if error is None:
            self.outbox.mark_sent(ids, wall_ms())
            self._sent_at.append(time.monotonic())
            self.sent += len(batch)
            self.messages += 1
            self.digests += len(batch) > 1
            self.failures = 0
            if self.down:
                self.down = False
                self.on_up(self.target)
            return True
        self.failed += 1
        self.failures += 1
        self.last_error = error
        self.outbox.mark_failed(ids, error)
        return False

    def _digest(self, rows: list[Row]) -> tuple[str, str]:
        return self.writer.digest([r.line for r in rows], [r.road for r in rows])

    def _fit(self, rows: list[Row]) -> list[Row]:
        """The first changes of `rows` whose digest fits in one message of the channel (at least
        one): a receiver refuses a longer message on every retry, or cuts it."""

        def size(n: int) -> int:
            title, body = self._digest(rows[:n])
            return len(title.encode()) + 2 + len(body.encode())

        lo, hi = 1, len(rows)  # size grows with n: the largest n that fits
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if size(mid) <= self.message_bytes:
                lo = mid
            else:
                hi = mid - 1
        return rows[:lo]

    def _give_up(self, rows: list[Row]) -> None:
        error = self.last_error or "not delivered in time"
        self.outbox.give_up([r.id for r in rows], error)
        self.given_up += len(rows)
        log.error(
            "gave up %d notices to %s/%s after %.0f s: %s",
            len(rows),
            self.target.crew,
            self.target.channel,
            self.config.give_up_after_s,
            error,
        )
        if not self.down:
            self.down = True
            self.on_down(self.target, error, self.config.give_up_after_s / 3600)
