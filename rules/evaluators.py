"""One evaluator per rule kind: turns a device's readings into verdicts for its `Latch`.

Each is bound to one (rule, device) with the rule already resolved for that device (road-class and
device overrides applied), so the hot path reads plain attributes and does no lookups.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from devices.kinds import KINDS
from rules.clock import Timers
from rules.config import (
    AbsenceRule,
    BandRule,
    EventRule,
    LevelsRule,
    RateRule,
    RuleBase,
    ScheduleRule,
    StuckRule,
    ThresholdRule,
)
from rules.latch import (
    ACTIVE,
    BAD,
    GOOD,
    HELD,
    IDLE,
    KEEP,
    SEVERITY_RANK,
    SKIP,
    SUPPRESSED,
    DeviceInfo,
    Env,
    Latch,
)
from rules.lit import LitJudge
from rules.signals import Condition, Severity

# How the crew reads a field name.
FIELD_LABELS = {
    "depth_cm": "water depth",
    "rain_mm": "rain",
    "battery": "battery",
    "rssi": "signal",
    "power_factor": "power factor",
    "voltage": "supply voltage",
    "power": "power",
    "current": "current",
    "temperature": "controller temperature",
    "dim": "dim level",
}


def _label(field: str) -> str:
    return FIELD_LABELS.get(field, field)


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "?"
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{text} {unit}" if unit else text


def _matches(data: Any, when: tuple[tuple[str, Any], ...]) -> bool:
    return all(getattr(data, name, None) == wanted for name, wanted in when)


class Evaluator(Latch):
    """Base: a latch that judges readings. `reading` is the hot path."""

    __slots__ = ()
    channel = "telemetry"

    def reading(self, data: Any, ts: int) -> None:  # pragma: no cover - every kind overrides
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """Evaluator-specific state beyond the latch's (saved with it)."""
        return {}

    def load(self, data: dict[str, Any]) -> None:
        """Restore what `state` returned."""

    def busy(self) -> bool:
        return self.phase != IDLE or self.last_at != 0 or bool(self.state())


class ThresholdCheck(Evaluator):
    __slots__ = ("above", "below", "clear_above", "clear_below", "field", "unit", "when")

    def __init__(self, rule_id: str, spec: ThresholdRule, dev: DeviceInfo, env: Env) -> None:
        super().__init__(rule_id, spec, dev, env)
        self.field = spec.field
        self.unit = spec.unit
        self.above = spec.above
        self.below = spec.below
        self.clear_above = spec.above if spec.clear_above is None else spec.clear_above
        self.clear_below = spec.below if spec.clear_below is None else spec.clear_below
        self.when = tuple(spec.when.items())

    def reading(self, data: Any, ts: int) -> None:
        value = getattr(data, self.field, None)
        if value is None:
            return
        if self.when and not _matches(data, self.when):
            self.judge(SKIP, ts, None)
            return
        above = self.above
        below = self.below
        if (above is not None and value > above) or (below is not None and value < below):
            verdict = BAD
        elif (self.clear_above is None or value <= self.clear_above) and (
            self.clear_below is None or value >= self.clear_below
        ):
            verdict = GOOD
        else:
            verdict = KEEP
        self.judge(verdict, ts, float(value))

    def describe(self, active: bool) -> str:
        value = _fmt(self.value, self.unit)
        if not active:
            return f"{self.dev.subject}: {_label(self.field)} back to normal ({value})"
        limits = []
        if self.below is not None:
            limits.append(f"below {_fmt(self.below, self.unit)}")
        if self.above is not None:
            limits.append(f"above {_fmt(self.above, self.unit)}")
        return f"{self.dev.subject}: {_label(self.field)} {value}, limit {' / '.join(limits)}"


class BandCheck(Evaluator):
    """Value vs an expected value from the registry, scaled by a reading field in %."""

    __slots__ = (
        "base",
        "clear_high",
        "clear_low",
        "expected",
        "field",
        "high",
        "low",
        "min_expected",
        "scale_fallback",
        "scale_field",
        "unit",
        "when",
    )

    def __init__(
        self, rule_id: str, spec: BandRule, dev: DeviceInfo, env: Env, base: float
    ) -> None:
        super().__init__(rule_id, spec, dev, env)
        self.field = spec.field
        self.unit = spec.unit
        self.base = base
        self.scale_field = spec.scale_field
        # LampReading.effective_dim knows the contract's default (dim absent = 100 when on).
        self.scale_fallback = f"effective_{spec.scale_field}" if spec.scale_field else None
        self.low = spec.low
        self.high = spec.high
        self.clear_low = spec.low if spec.clear_low is None else spec.clear_low
        self.clear_high = spec.high if spec.clear_high is None else spec.clear_high
        self.min_expected = spec.min_expected
        self.when = tuple(spec.when.items())
        self.expected = 0.0

    def reading(self, data: Any, ts: int) -> None:
        value = getattr(data, self.field, None)
        if value is None:
            return
        if self.when and not _matches(data, self.when):
            self.judge(SKIP, ts, None)
            return
        expected = self.base
        if self.scale_field is not None:
            scale = getattr(data, self.scale_field, None)
            if scale is None and self.scale_fallback is not None:
                scale = getattr(data, self.scale_fallback, None)
            if scale is not None:
                expected = expected * scale / 100.0
        if expected < self.min_expected or expected <= 0:
            self.judge(SKIP, ts, None)
            return
        self.expected = expected
        ratio = value / expected
        if ratio < self.low or ratio > self.high:
            verdict = BAD
        elif self.clear_low <= ratio <= self.clear_high:
            verdict = GOOD
        else:
            verdict = KEEP
        self.judge(verdict, ts, float(value))

    def describe(self, active: bool) -> str:
        value = _fmt(self.value, self.unit)
        expected = _fmt(self.expected, self.unit)
        if not active:
            return f"{self.dev.subject}: {_label(self.field)} back in band ({value}, expected {expected})"
        return (
            f"{self.dev.subject}: {_label(self.field)} {value}, expected {expected} "
            f"(allowed {self.low:g}–{self.high:g}×)"
        )


class ScheduleCheck(Evaluator):
    """Lamp on/off must follow sunset/sunrise (and its road's dimming plan)."""

    __slots__ = ("during_night", "expect_on", "judge_lit")

    def __init__(self, rule_id: str, spec: ScheduleRule, dev: DeviceInfo, env: Env) -> None:
        super().__init__(rule_id, spec, dev, env)
        self.expect_on = spec.expect == "on"
        self.during_night = spec.during == "night"
        # The same judgement the lighting rate (figures) counts lit lamp-time with.
        self.judge_lit = LitJudge(spec, dev.registry_value("rated_w"), env.sun)

    def reading(self, data: Any, ts: int) -> None:
        on = getattr(data, "on", None)
        if on is None:
            return
        night = self.judge_lit.is_night(ts)
        power = getattr(data, "power", None)
        value = float(power) if power is not None else float(on)
        if night != self.during_night:
            self.judge(SKIP, ts, None)
            return
        bad = not self.judge_lit.lit(bool(on), power, ts) if self.expect_on else bool(on)
        self.judge(BAD if bad else GOOD, ts, value)

    def describe(self, active: bool) -> str:
        if self.expect_on:
            if not active:
                return f"{self.dev.subject}: lit again at night"
            if self.value is not None and self.value > 1:
                return f"{self.dev.subject}: dark at night, drawing only {_fmt(self.value, 'W')}"
            return f"{self.dev.subject}: dark at night (off, should be on)"
        if not active:
            return f"{self.dev.subject}: off in daytime again"
        return f"{self.dev.subject}: burning in daytime (on, should be off)"


class LevelsCheck(Evaluator):
    """One alert whose level moves: up at once (after for_s), down after clear_for_s below."""

    __slots__ = (
        "ats",
        "changed_at",
        "clear_delta",
        "down_since",
        "down_target",
        "field",
        "latest_keep",
        "severities",
        "unit",
        "up_since",
        "up_target",
    )

    def __init__(self, rule_id: str, spec: LevelsRule, dev: DeviceInfo, env: Env) -> None:
        super().__init__(rule_id, spec, dev, env)
        self.field = spec.field
        self.unit = spec.unit
        self.ats = [lv.at for lv in spec.levels]
        self.severities: list[Severity] = [lv.severity for lv in spec.levels]
        self.clear_delta = spec.clear_delta
        self.level = 0
        self.changed_at = 0
        self.up_since: int | None = None
        self.up_target = 0
        self.down_since: int | None = None
        self.down_target = 0
        self.latest_keep = 0

    def _count(self, value: float, minus: float) -> int:
        n = 0
        for at in self.ats:
            if value >= at - minus:
                n += 1
            else:
                break
        return n

    def reading(self, data: Any, ts: int) -> None:
        value = getattr(data, self.field, None)
        if value is None:
            return
        due = self.due
        if due is not None and due <= ts:
            self.due = None
            self.fire(due)
        self.value = float(value)
        level = self.level or 0
        up = self._count(value, 0.0)
        keep = self._count(value, self.clear_delta)
        self.latest_keep = keep
        if up > level:
            self.down_since = None
            if self.up_since is None:
                self.up_since = ts
                self.up_target = up
                self.count = 0
            self.up_target = min(self.up_target, up)
            self.count += 1
            self._try_up(ts)
        elif keep < level:
            self.up_since = None
            if self.down_since is None:
                self.down_since = ts
                self.down_target = keep
                self.clear_count = 0
            self.down_target = max(self.down_target, keep)
            self.clear_count += 1
            self._try_down(ts)
        else:
            if self.up_since is not None or self.down_since is not None:
                self.due = None
            self.up_since = None
            self.down_since = None

    def _try_up(self, ts: int) -> None:
        if self.up_since is None or self.count < self.for_n:
            return
        ready = self.up_since + self.for_ms
        if ready <= ts:
            self._move(self.up_target, ts)
        else:
            self.env.timers.arm(self, ready)

    def _try_down(self, ts: int) -> None:
        if self.down_since is None or self.clear_count < self.clear_n:
            return
        ready = max(self.down_since + self.clear_ms, self.changed_at + self.hold_ms)
        if ready <= ts:
            self._move(self.down_target, ts)
        else:
            self.env.timers.arm(self, ready)

    def fire(self, at_ms: int) -> None:
        if self.up_since is not None and self.count >= self.for_n:
            self._move(self.up_target, at_ms)
        elif self.down_since is not None and self.clear_count >= self.clear_n:
            self._move(self.down_target, at_ms)
            if self.level and self.latest_keep < self.level:
                # Still lower than the new level: the next step down needs its own clear_for_s.
                self.down_since = at_ms
                self.down_target = self.latest_keep
                self.clear_count = self.clear_n
                self._try_down(at_ms)

    def _move(self, target: int, at_ms: int) -> None:
        before = self.level or 0
        self.up_since = None
        self.down_since = None
        self.due = None
        if target == before:
            return
        self.level = target
        self.changed_at = at_ms
        if target:
            self.severity = self.severities[target - 1]
        if before == 0:
            self.phase = ACTIVE
            self.raised_at = at_ms
            self.emit(True, at_ms)
        elif target == 0:
            self.phase = IDLE
            self.level = 0
            self.emit(False, at_ms)
        else:
            self.emit(True, at_ms)

    def condition(self, active: bool, at_ms: int) -> Condition:
        if active:
            return super().condition(active, at_ms)
        # A cleared alert carries no level (level is for open alerts).
        level, self.level = self.level, None
        try:
            return super().condition(active, at_ms)
        finally:
            self.level = level

    def describe(self, active: bool) -> str:
        value = _fmt(self.value, self.unit)
        if not active:
            return f"{self.dev.subject}: {_label(self.field)} down to {value}, below every level"
        at = _fmt(self.ats[(self.level or 1) - 1], self.unit)
        return f"{self.dev.subject}: level {self.level} (≥ {at}), {_label(self.field)} now {value}"

    def busy(self) -> bool:
        return bool(self.level) or self.up_since is not None or self.last_at != 0

    def state(self) -> dict[str, Any]:
        if not self.busy():
            return {}
        return {
            "changed_at": self.changed_at,
            "up_since": self.up_since,
            "up_target": self.up_target,
            "down_since": self.down_since,
            "down_target": self.down_target,
            "latest_keep": self.latest_keep,
        }

    def _level_severity(self) -> None:
        # Levels come from the config in force: a level the config no longer has is its top one.
        self.level = min(int(self.level or 0), len(self.ats))
        if self.level:
            self.severity = self.severities[self.level - 1]

    def take(self, told: Condition) -> None:
        super().take(told)
        self.up_since = None
        self.down_since = None
        if told.active:
            self.level = max(1, told.level or 1)
            self.changed_at = told.at_ms
        else:
            self.level = 0
        self._level_severity()

    def load(self, data: dict[str, Any]) -> None:
        self._level_severity()
        self.changed_at = int(data.get("changed_at", 0))
        self.up_since = data.get("up_since")
        self.up_target = int(data.get("up_target", 0))
        self.down_since = data.get("down_since")
        self.down_target = int(data.get("down_target", 0))
        self.latest_keep = int(data.get("latest_keep", 0))


class RateCheck(Evaluator):
    """Change of `field` within a sliding window of event time."""

    __slots__ = ("change", "clear_change", "field", "rise", "unit", "window", "window_ms")

    def __init__(self, rule_id: str, spec: RateRule, dev: DeviceInfo, env: Env) -> None:
        super().__init__(rule_id, spec, dev, env)
        self.field = spec.field
        self.unit = spec.unit
        self.change = spec.change
        self.clear_change = spec.change if spec.clear_change is None else spec.clear_change
        self.window_ms = int(spec.within_s * 1000)
        self.rise = spec.direction == "rise"
        self.window: deque[tuple[int, float]] = deque()

    def reading(self, data: Any, ts: int) -> None:
        value = getattr(data, self.field, None)
        if value is None:
            return
        window = self.window
        window.append((ts, value))
        start = ts - self.window_ms
        while window[0][0] < start:
            window.popleft()
        if self.rise:
            change = value - min(v for _, v in window)
        else:
            change = max(v for _, v in window) - value
        if change >= self.change:
            verdict = BAD
        elif change < self.clear_change:
            verdict = GOOD
        else:
            verdict = KEEP
        self.judge(verdict, ts, float(change))

    def describe(self, active: bool) -> str:
        way = "rose" if self.rise else "fell"
        minutes = self.window_ms / 60000
        if not active:
            return f"{self.dev.subject}: {_label(self.field)} no longer changing fast"
        return f"{self.dev.subject}: {_label(self.field)} {way} {_fmt(self.value, self.unit)} in {minutes:g} min"

    def state(self) -> dict[str, Any]:
        return {"window": [list(p) for p in self.window]} if self.window else {}

    def load(self, data: dict[str, Any]) -> None:
        self.window = deque((int(t), float(v)) for t, v in data.get("window", []))


class StuckCheck(Evaluator):
    """The same value for too long: a sensor that no longer measures."""

    __slots__ = ("field", "run_start", "run_value", "skip", "tolerance", "unchanged_ms", "unit")

    def __init__(self, rule_id: str, spec: StuckRule, dev: DeviceInfo, env: Env) -> None:
        super().__init__(rule_id, spec, dev, env)
        self.field = spec.field
        self.unit = spec.unit
        self.unchanged_ms = int(spec.unchanged_for_s * 1000)
        self.tolerance = spec.tolerance
        self.skip = frozenset(spec.skip_values)
        self.run_value: float | None = None
        self.run_start = 0

    def reading(self, data: Any, ts: int) -> None:
        value = getattr(data, self.field, None)
        if value is None:
            return
        run_value = self.run_value
        if run_value is None or abs(value - run_value) > self.tolerance:
            self.run_value = value
            self.run_start = ts
            verdict = GOOD
        elif value in self.skip:
            verdict = GOOD
        elif ts - self.run_start >= self.unchanged_ms:
            verdict = BAD
        else:
            verdict = KEEP
        self.judge(verdict, ts, float(value))

    def describe(self, active: bool) -> str:
        if not active:
            return f"{self.dev.subject}: {_label(self.field)} changing again ({_fmt(self.value, self.unit)})"
        hours = self.unchanged_ms / 3_600_000
        return (
            f"{self.dev.subject}: {_label(self.field)} stuck at {_fmt(self.value, self.unit)} "
            f"for {hours:g} h or more"
        )

    def state(self) -> dict[str, Any]:
        if self.run_value is None:
            return {}
        return {"run_value": self.run_value, "run_start": self.run_start}

    def load(self, data: dict[str, Any]) -> None:
        self.run_value = data.get("run_value")
        self.run_start = int(data.get("run_start", 0))


class EventCheck(Evaluator):
    """Active while the device reports a fault of its own raised (event channel).

    As a group member (`member_events` of a group rule, e.g. cabinet_outage with supplyLoss), the
    alert joins the group only while every raised event is one of `group_events`: it then waits out
    the group's window and is held back while the group is open, like a dark lamp. Any other event
    raised makes it the lamp's own fault: it goes out at once and leaves the group.
    """

    __slots__ = (
        "base_severity",
        "by_event",
        "events",
        "group_events",
        "ignore",
        "member",
        "raised",
        "told",
    )
    channel = "event"

    def __init__(self, rule_id: str, spec: EventRule, dev: DeviceInfo, env: Env) -> None:
        super().__init__(rule_id, spec, dev, env)
        self.events = frozenset(spec.events) if spec.events is not None else None
        self.ignore = frozenset(spec.ignore_events)
        self.by_event = dict(spec.severity_by_event)
        self.base_severity: Severity = spec.severity
        self.raised: set[str] = set()
        self.told: tuple[frozenset[str], str] = (frozenset(), "")  # what the open alert says
        self.group_events: frozenset[str] = frozenset()  # set by the engine with `group`
        self.member = False  # this raise counts in the group (HELD / SUPPRESSED / ACTIVE member)

    def reading(self, data: Any, ts: int) -> None:
        name = data.event
        if name in self.ignore or (self.events is not None and name not in self.events):
            return
        raised = self.raised
        if data.state == "raised":
            raised.add(name)
        else:
            raised.discard(name)
        if raised:
            self.severity = max(
                (self.by_event.get(e, self.base_severity) for e in raised),
                key=SEVERITY_RANK.__getitem__,
            )
            if self.member and self.phase != IDLE and not raised <= self.group_events:
                self._leave_group(ts)
        was_active = self.phase == ACTIVE
        self.judge(BAD if raised else GOOD, ts, None)
        if was_active and self.phase == ACTIVE and raised and self._signature() != self.told:
            self.emit(True, max(ts, self.raised_at))  # what is raised changed: an update

    def _raise(self, at_ms: int) -> None:
        if self.group is not None and self.raised <= self.group_events:
            self.member = True
            super()._raise(at_ms)  # HELD: waits out the group's window
            return
        self.member = False
        self.clear_count = 0
        self.onset = at_ms
        self._open(at_ms)  # not (only) a supply event: the lamp's own fault, at once

    def _leave_group(self, ts: int) -> None:
        """A fault of the lamp's own joined the supply events: its alert goes out now."""
        due = self.due
        if due is not None and due <= ts:  # the window ran out before this event
            self.due = None
            self.fire(due)
        self.member = False
        if self.phase in (HELD, SUPPRESSED):
            self.due = None
            self._open(ts)
        if self.group is not None:
            self.group.member_good(self, ts)

    def in_group(self) -> bool:
        return self.member and super().in_group()

    def _signature(self) -> tuple[frozenset[str], str]:
        return frozenset(self.raised), self.severity

    def emit(self, active: bool, at_ms: int) -> None:
        self.told = self._signature()
        super().emit(active, at_ms)

    def describe(self, active: bool) -> str:
        if not active:
            return f"{self.dev.subject}: device reports its faults cleared"
        return f"{self.dev.subject}: device reports {', '.join(sorted(self.raised))}"

    def extra(self) -> dict[str, str]:
        out = super().extra()
        if self.raised:
            out["events"] = ",".join(sorted(self.raised))
        return out

    def state(self) -> dict[str, Any]:
        if not self.raised and self.phase != ACTIVE:
            return {}
        out: dict[str, Any] = {
            "raised": sorted(self.raised),
            "told": sorted(self.told[0]),
            "told_severity": self.told[1],
        }
        if self.member:
            out["member"] = True
        return out

    def _event_severity(self) -> None:
        # From the config in force (severity_by_event), never from saved state.
        if self.raised:
            self.severity = max(
                (self.by_event.get(e, self.base_severity) for e in self.raised),
                key=SEVERITY_RANK.__getitem__,
            )

    def take(self, told: Condition) -> None:
        super().take(told)
        events = told.extra.get("events", "") if told.active else ""
        self.raised = {e for e in events.split(",") if e}
        self.member = False
        self._event_severity()
        self.told = self._signature()

    def load(self, data: dict[str, Any]) -> None:
        self.raised = {str(e) for e in data.get("raised", [])}
        self._event_severity()
        told = frozenset(str(e) for e in data.get("told", []))
        # What the open alert says, not what is raised now: with its events cleared since (the
        # alert waiting out its hold), the severity it was told with is not the rule's base one.
        # State saved before told_severity was kept: the told events under the config in force.
        severity = data.get("told_severity")
        if severity not in SEVERITY_RANK:
            severity = max(
                (self.by_event.get(e, self.base_severity) for e in told),
                key=SEVERITY_RANK.__getitem__,
                default=self.severity,
            )
        self.told = (told, severity)
        self.member = bool(data.get("member", False))


class _Deadline:
    """The absence timer of one device (kept apart from the latch's own timer)."""

    __slots__ = ("due", "owner", "queued")

    def __init__(self, owner: AbsenceCheck) -> None:
        self.owner = owner
        self.due: int | None = None
        self.queued: int | None = None

    def fire(self, at_ms: int) -> None:
        self.owner.deadline(at_ms)


class AbsenceCheck(Evaluator):
    """Offline: nothing heard for `intervals` × report_interval_s, or a status online:false."""

    __slots__ = (
        "baseline",
        "deadline_timer",
        "last_seen",
        "offline_status",
        "silence_ms",
        "track",
    )

    def __init__(
        self, rule_id: str, spec: AbsenceRule, dev: DeviceInfo, env: Env, baseline: Any
    ) -> None:
        super().__init__(rule_id, spec, dev, env)
        self.silence_ms = int(spec.intervals * dev.report_interval_ms)
        self.offline_status = spec.offline_status
        self.deadline_timer = _Deadline(self)
        self.last_seen: int | None = None
        self.track = False  # a registered device: absent even if never heard (set by the engine)
        # Callable giving the engine's absence baseline: max(start of tracking, end of last gap).
        self.baseline = baseline

    def _due(self) -> int | None:
        base = self.baseline()
        last = self.last_seen
        if last is None and base is None:
            return None
        start = base if last is None else (last if base is None else max(last, base))
        return start + self.silence_ms

    def arm(self, timers: Timers) -> None:
        due = self._due()
        if due is not None:
            timers.arm(self.deadline_timer, due)

    def seen(self, ts: int) -> None:
        """Anything newer from the device (reading, event, status online)."""
        timer = self.deadline_timer
        due = timer.due
        if due is not None and due <= ts:
            timer.due = None
            self.deadline(due)  # it was silent past its deadline before this arrived
        if self.last_seen is None or ts > self.last_seen:
            self.last_seen = ts
        if self.phase != IDLE:
            self.judge(GOOD, ts, None)
        self.arm(self.env.timers)

    def reading(self, data: Any, ts: int) -> None:
        self.seen(ts)

    def status(self, online: bool, ts: int) -> None:
        if online:
            self.seen(ts)
        elif self.offline_status:
            self.value = None
            self.judge(BAD, ts, None)

    def deadline(self, at_ms: int) -> None:
        due = self._due()
        if due is None:
            return
        if due > at_ms:  # a newer reading or a gap moved it on
            self.env.timers.arm(self.deadline_timer, due)
            return
        last = self.last_seen if self.last_seen is not None else self.baseline()
        self.judge(BAD, at_ms, (at_ms - last) / 1000.0 if last is not None else None)

    def describe(self, active: bool) -> str:
        if not active:
            return f"{self.dev.subject}: reporting again"
        if self.value is None:
            return f"{self.dev.subject}: offline (device said so)"
        minutes = self.value / 60
        return f"{self.dev.subject}: offline, nothing heard for {minutes:.0f} min"

    def state(self) -> dict[str, Any]:
        return {"last_seen": self.last_seen} if self.last_seen is not None else {}

    def load(self, data: dict[str, Any]) -> None:
        seen = data.get("last_seen")
        self.last_seen = int(seen) if seen is not None else None


# ---- binding ----------------------------------------------------------------------------------


def applies(spec: RuleBase, kind: str) -> bool:
    """Whether a rule applies to a device kind at all."""
    if spec.kinds is not None:
        return kind in spec.kinds
    field = getattr(spec, "field", None)
    if field is not None:
        model = KINDS.get(kind)
        return model is not None and field in model.reading_model.model_fields
    if isinstance(spec, ScheduleRule):
        model = KINDS.get(kind)
        return model is not None and "on" in model.reading_model.model_fields
    return True


def make_evaluator(
    rule_id: str, spec: RuleBase, dev: DeviceInfo, env: Env, absence_baseline: Any
) -> Evaluator | None:
    """The evaluator of `spec` for one device, or None when the device lacks what it needs."""
    if isinstance(spec, ThresholdRule):
        return ThresholdCheck(rule_id, spec, dev, env)
    if isinstance(spec, LevelsRule):
        return LevelsCheck(rule_id, spec, dev, env)
    if isinstance(spec, RateRule):
        return RateCheck(rule_id, spec, dev, env)
    if isinstance(spec, StuckRule):
        return StuckCheck(rule_id, spec, dev, env)
    if isinstance(spec, BandRule):
        base = dev.registry_value(spec.expected_from)
        try:
            value = float(base) if base not in (None, "") else None
        except (TypeError, ValueError):
            value = None
        if value is None or value <= 0:
            return None  # unregistered, or no rated value: nothing to compare with
        return BandCheck(rule_id, spec, dev, env, value)
    if isinstance(spec, ScheduleRule):
        return ScheduleCheck(rule_id, spec, dev, env)
    if isinstance(spec, EventRule):
        return EventCheck(rule_id, spec, dev, env)
    if isinstance(spec, AbsenceRule):
        return AbsenceCheck(rule_id, spec, dev, env, absence_baseline)
    return None
