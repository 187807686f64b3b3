"""The event-time clock: a watermark that follows the readings' own `ts`, and the timers it fires.

Why: a replay at 500×, a gateway's backlog and a live night must raise the same alerts at the same
event times, so nothing here reads the wall clock by itself. The watermark moves forward

* with the data: to (newest reading ts − delay), a reading's ts capped at its arrival time so one
  device with a fast clock cannot drag every other device's deadlines forward;
* with the wall clock (`tick`), to (wall − delay), only while the stream is live: some reading
  arrived within `live_lag_s` of its own ts during the last `live_hold_s`. A replay of last summer is
  never live, so when it ends its devices do not all go offline.

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
        self, *, delay_s: float, live_lag_s: float, live_hold_s: float, gap_s: float
    ) -> None:
        self.delay_ms = int(delay_s * 1000)
        self.live_lag_ms = int(live_lag_s * 1000)
        self.live_hold_ms = int(live_hold_s * 1000)
        self.gap_ms = int(gap_s * 1000)
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

    def wall(self, wall_ms: int) -> int | None:
        """The wall clock moves the watermark only while live; returns the new value if moved."""
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
