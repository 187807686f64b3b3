"""The event-time clock: a watermark that follows the readings' own `ts`, and the timers it fires.

Why: a replay at 500×, a gateway's backlog and a live night must raise the same alerts at the same
event times, so nothing here reads the wall clock by itself. The watermark moves forward

* with the data: to (newest reading ts − delay), a reading's ts capped at its arrival time so one
  device with a fast clock cannot drag every other device's deadlines forward;
* with the wall clock (`tick`), to (wall − delay), only while the stream is live: some reading
  arrived within `live_lag_s` of its own ts during the last `live_hold_s`. A replay of last summer is
  never live, so when it ends its devices do not all go offline.

Our own link to the broker is not the devices' link: while it is down (`link(False)`), the wall clock
does not move the watermark at all; when it comes back with the broker still holding our session,
the readings queued meanwhile arrive first, so the wall clock waits until they are in: until a
reading made after the return arrives (ts between the return and its own arrival), or nothing at all
arrived for `backlog_quiet_s`, or three times the longest pause the backlog itself showed if
that is longer (the queue was empty: the devices were silent too, a real blackout, whose offline
alerts then go out). A return without our session (the broker lost it) means readings
from the outage are gone: absence counts restart at the return rather than call everyone offline.

It never moves back. Timers are (due, target) in a heap; a target whose due time moved is re-queued
lazily when its stale entry comes up, so re-arming a deadline on every reading costs no heap push.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Protocol


class TimerTarget(Protocol):
    due: int | None  # when it wants to fire (event ms), None: nothing scheduled
    queued: int | None  # the due time it currently has an entry in the heap for

    def fire(self, at_ms: int) -> None: ...


class Timers:
    """A heap of timer targets keyed by event time."""

    def __init__(self, on_fire: Callable[[TimerTarget], None] | None = None) -> None:
        self._heap: list[tuple[int, int, TimerTarget]] = []
        self._seq = itertools.count()
        self.on_fire = on_fire  # told which target fired (the engine marks its device for saving)

    def __len__(self) -> int:
        return len(self._heap)

    def arm(self, target: TimerTarget, due: int) -> None:
        """Ask for `target.fire` at `due`. A later due than the queued one re-queues lazily."""
        target.due = due
        queued = target.queued
        if queued is None or due < queued:
            target.queued = due
            heapq.heappush(self._heap, (due, next(self._seq), target))

    def next_due(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def run_until(self, now_ms: int) -> None:
        """Fire every target due at or before `now_ms`, in due order (ties: arming order)."""
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            due, _, target = heapq.heappop(heap)
            if target.queued != due:
                continue  # superseded by an earlier entry that already ran or is queued
            target.queued = None
            wanted = target.due
            if wanted is None:
                continue
            if wanted > due:
                target.queued = wanted
                heapq.heappush(heap, (wanted, next(self._seq), target))
                continue
            target.due = None
            target.fire(wanted)
            if self.on_fire is not None:
                self.on_fire(target)


class Watermark:
    """Event-time clock. `value` is ms since the epoch, or None before the first observation."""

    def __init__(
        self,
        *,
        delay_s: float,
        live_lag_s: float,
        live_hold_s: float,
        gap_s: float,
        backlog_quiet_s: float = 5.0,
    ) -> None:
        self.delay_ms = int(delay_s * 1000)
        self.live_lag_ms = int(live_lag_s * 1000)
        self.live_hold_ms = int(live_hold_s * 1000)
        self.gap_ms = int(gap_s * 1000)
        self.quiet_ms = int(backlog_quiet_s * 1000)
        # Our link: down since (wall ms), or None while up. Up by default (replays, tests).
        self.down_since: int | None = None
        # Catching up after the link came back: when it came back (wall ms), else None.
        self.back_at: int | None = None
        self.last_rx = 0  # arrival of the newest observation while catching up
        self.pause_ms = 0  # the longest pause between arrivals while catching up
        self.value: int | None = None
        # Arrival (wall ms) of the last reading that was live; None: never live since start.
        self.last_live_rx: int | None = None
        # End of the last unobserved gap: absence counts restart here (see ClockConfig.gap_s).
        self.gap_end: int | None = None

    def saw(self, ts_ms: int, received_ms: int) -> int | None:
        """Account for one observation; returns the new watermark if it moved forward."""
        if received_ms - ts_ms <= self.live_lag_ms and (
            self.last_live_rx is None or received_ms > self.last_live_rx
        ):
            self.last_live_rx = received_ms
        candidate = min(ts_ms, received_ms) - self.delay_ms
        return self._move(candidate)

    def live(self, wall_ms: int) -> bool:
        return self.last_live_rx is not None and wall_ms - self.last_live_rx <= self.live_hold_ms

    @property
    def held(self) -> bool:
        """Whether the wall clock is held back by our own link (down, or catching up)."""
        return self.down_since is not None or self.back_at is not None

    def link(self, up: bool, wall_ms: int, *, backlog: bool = True) -> None:
        """Our link to the broker went down / came back. `backlog`: the broker kept our session,
        so what the devices sent meanwhile is queued and arrives first."""
        if not up:
            if self.down_since is None:
                self.down_since = wall_ms
            self.back_at = None
            return
        if self.down_since is None:
            return
        self.down_since = None
        if backlog:
            self.back_at = self.last_rx = wall_ms
            self.pause_ms = 0
        elif self.value is not None:
            # The readings sent while we were away are lost with the session: we did not see
            # those minutes, so no device is called silent for them (absence restarts here).
            self.gap_end = max(self.gap_end or 0, wall_ms - self.delay_ms)

    def arrived(self, ts: int | None, received_ms: int) -> None:
        """Any observation that arrived while catching up (call only while `back_at` is set)."""
        back = self.back_at
        if back is None:
            return
        if received_ms > self.last_rx:
            if self.last_rx > back:  # a pause within the backlog, not the wait for its start
                self.pause_ms = max(self.pause_ms, received_ms - self.last_rx)
            self.last_rx = received_ms
        if ts is not None and back <= ts <= received_ms:
            # Made after the link came back, and it arrived: the queue in front of it is in.
            self.back_at = None

    def wall(self, wall_ms: int) -> int | None:
        """The wall clock moves the watermark only while live and our link is up and caught up;
        returns the new value if moved."""
        if self.down_since is not None:
            return None
        if self.back_at is not None:
            # Quiet means several times longer than any pause the backlog itself showed (our own
            # stalls: a slow disk, a busy loop), and never less than backlog_quiet_s.
            quiet = max(self.quiet_ms, min(3 * self.pause_ms, 12 * self.quiet_ms))
            if wall_ms - self.last_rx < quiet:
                return None  # the backlog is still coming in
            self.back_at = None  # nothing came for a while: the queue is empty
        if not self.live(wall_ms):
            return None
        return self._move(wall_ms - self.delay_ms)

    def _move(self, candidate: int) -> int | None:
        current = self.value
        if current is not None and candidate <= current:
            return None
        if current is not None and candidate - current > self.gap_ms:
            self.gap_end = candidate
        self.value = candidate
        return candidate
