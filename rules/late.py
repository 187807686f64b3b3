"""Readings of one device that arrive after newer ones: judged on their own, not dropped.

Why: a gateway whose uplink was down uploads each point's backlog when it comes back, and may send
a point's current reading before its backlog. Those backlog readings are older than what the
device's rules already judged; put back into its live rule state they would move it back in time.
Dropped, a flood between 01:00 and 03:00 behind a gateway raised nothing at all.

Which ones: each device remembers its latest gap, two judged readings more than two report
intervals apart. An older reading whose ts falls inside that gap was never judged: it is a late one.
An older reading outside it was judged already (a QoS 1 redelivery after a reconnect) and is
dropped as before, so a redelivered batch never raises anything twice.

Each run of late readings is judged by itself: a fresh set of the device's own rules
(threshold, levels, rate, stuck, battery, events) on a timer heap of its own, on the device's own
event time. What they raise or clear goes to the same sink at the readings' event times, marked
reported late (`Condition.reported_at`). The alert store keeps one alert per (rule, device) and
never lets an older condition move a newer one back, so a late run cannot undo what the live
readings decided. Absence and group members (dark lamps, offline, a cabinet's supply events) are
left out: a late reading older than the newest says nothing about silence now, and a cabinet is
decided on the onsets it saw in order. A lamp's other fault events (driverFailure, …) are its own
and are judged.

A run collects its readings and judges them in ts order when it ends (a gateway may upload its
arrays newest first), which is when no late reading of the device came for `backlog_quiet_s`
(wall clock). Its timers then run up to the end of the gap (the judged reading right after it),
and a condition still raised is cleared as of that reading (it showed how things stood), unless
the device's live rule holds the same condition raised. A run is not saved: a restart before it
ends forgets its readings as far as the rules go (ingest has stored them all the same).
"""

from __future__ import annotations

from typing import Any

from rules.clock import Timers
from rules.latch import ACTIVE, IDLE, DeviceInfo, Env
from rules.signals import ConditionSink


class LateRun:
    """One device's late readings, judged by a private copy of its rules."""

    __slots__ = (
        "dropped",
        "env",
        "events",
        "group_events",
        "last_event",
        "last_rx",
        "last_tel",
        "pending",
        "tel",
        "timers",
        "until",
    )

    MAX_PENDING = 50_000  # readings held for sorting; past it, what is held is judged at once

    def __init__(self, sink: ConditionSink, outer: Env, until: int, rx: int) -> None:
        self.timers = Timers()
        self.env = Env(sink, self.timers, outer.sun)
        self.env.late_ms = outer.late_ms
        self.env.clock = outer.clock
        self.tel: list[Any] = []  # evaluators, filled by the engine
        self.events: list[Any] = []
        self.until = until  # the end of the device's gap: the judged reading right after it
        self.last_tel = -1
        self.last_event: dict[str, int] = {}
        self.group_events: frozenset[str] = frozenset()  # left to the group (e.g. supplyLoss)
        self.last_rx = rx
        # Held until the run ends, then judged in ts order: a gateway may upload its arrays
        # newest first. (ts, arrival order, channel, data, rx)
        self.pending: list[tuple[int, int, str, Any, int]] = []
        self.dropped = 0  # not newer than the run's last of the same channel (duplicates)

    def add(self, channel: str, data: Any, ts: int, rx: int) -> None:
        self.last_rx = rx
        self.pending.append((ts, len(self.pending), channel, data, rx))
        if len(self.pending) >= self.MAX_PENDING:
            self.judge_pending()

    def judge_pending(self) -> None:
        pending, self.pending = self.pending, []
        pending.sort(key=lambda item: (item[0], item[1]))
        for ts, _, channel, data, rx in pending:
            taken = (
                self.telemetry(data, ts, rx) if channel == "telemetry" else self.event(data, ts, rx)
            )
            if not taken:
                self.dropped += 1

    def telemetry(self, data: Any, ts: int, rx: int) -> bool:
        """Judge one late reading; False if it is not newer than the run's last (dropped)."""
        if ts <= self.last_tel:
            return False
        self.last_tel = ts
        self._at(ts, rx)
        for evaluator in self.tel:
            evaluator.reading(data, ts)
        return True

    def event(self, data: Any, ts: int, rx: int) -> bool:
        if data.event in self.group_events:
            return True  # a cabinet's supply event: counted by the group in order, or not at all
        if ts <= self.last_event.get(data.event, -1):
            return False
        self.last_event[data.event] = ts
        self._at(ts, rx)
        for evaluator in self.events:
            evaluator.reading(data, ts)
        return True

    def _at(self, ts: int, rx: int) -> None:
        self.env.rx = rx
        self.timers.run_until(ts)  # the device's own event time

    def finish(self, dev: DeviceInfo) -> None:
        """The run is over: judge what it holds in ts order; what is still raised then is cleared
        as of `until`, unless the live rule holds it."""
        self.judge_pending()
        self.timers.run_until(self.until)
        live = {e.rule_id: e for e in (*dev.tel_rules, *dev.event_rules)}
        for evaluator in (*self.tel, *self.events):
            if evaluator.phase != ACTIVE:
                continue
            held = live.get(evaluator.rule_id)
            if held is not None and held.phase != IDLE:
                continue  # the live rule holds it (or is about to): it decides the clear
            evaluator.phase = IDLE
            evaluator.emit(False, max(self.until, evaluator.raised_at))
