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
reported late (`Condition.reported_at`). A run speaks for a (rule, device) only while the device's
live rule does not: if the live rule holds it (raised, held or suppressed) when the run judges,
the live alert covers that stretch and the run stays silent for it (a second raise, or a clear of
an alert the live rule holds open, would be a duplicate or a false clear). Where the live rule has
already told the sink something newer, what the run tells is older than that: it is a past
episode of its own, always marked reported late, and the alert store never lets it move the newer
alert back. Absence and group members (dark lamps, offline, a cabinet's supply events) are
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

from dataclasses import replace
from typing import Any

from rules.clock import Timers
from rules.latch import ACTIVE, HELD, IDLE, SUPPRESSED, DeviceInfo, Env
from rules.signals import Condition, ConditionSink

_HOLDS = (ACTIVE, HELD, SUPPRESSED)  # a live rule in these phases has told the sink, or will


class _RunEnv(Env):
    """The run's Env: passes on only what the run may say beside the device's live rules."""

    def __init__(self, sink: ConditionSink, timers: Timers, outer: Env, dev: DeviceInfo) -> None:
        super().__init__(sink, timers, outer.sun, outer.language)
        self.dev = dev
        self.told: set[str] = set()  # rules whose raise this run told the sink (not yet cleared)

    def emit(self, condition: Condition) -> None:
        rule = condition.rule
        live = next(
            (e for e in (*self.dev.tel_rules, *self.dev.event_rules) if e.rule_id == rule), None
        )
        if condition.active:
            if rule not in self.told:
                if live is not None and live.phase in _HOLDS:
                    return  # the live rule holds it: its alert covers this stretch
                self.told.add(rule)
        elif rule in self.told:
            self.told.discard(rule)
        else:
            return  # the run never told this raise: nothing of its own to clear
        if live is not None and condition.at_ms < live.last_at:
            # Older than what the live rule already told for this (rule, device): a past episode,
            # learned of now, whatever the watermark says.
            condition = replace(condition, reported_at=self.rx)
        super().emit(condition)


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

    def __init__(
        self, sink: ConditionSink, outer: Env, dev: DeviceInfo, until: int, rx: int
    ) -> None:
        self.timers = Timers()
        self.env = _RunEnv(sink, self.timers, outer, dev)
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
            evaluator.phase = IDLE
            if evaluator.rule_id not in self.env.told:
                continue  # never told (the live rule held it): nothing to clear
            held = live.get(evaluator.rule_id)
            if held is not None and held.phase in _HOLDS:
                # Raised live since (only when a long run was judged in parts): the live raise
                # took the run's alert over, and the live rule decides the clear.
                self.env.told.discard(evaluator.rule_id)
                continue
            evaluator.emit(False, max(self.until, evaluator.raised_at))
