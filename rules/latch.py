"""The raise/clear state machine every rule shares: one `Latch` per (rule, device).

An evaluator (rules/evaluators.py) turns each reading into a verdict and hands it to `judge`:

    BAD   the raise condition holds          GOOD  the clear condition holds
    KEEP  between the two (hysteresis band)  SKIP  this reading cannot be judged (lamp off, day…)

Phases:

    IDLE ──BAD──▶ PENDING ──for_s and for_readings met──▶ ACTIVE ──GOOD for clear_for_s,
      ▲              │ anything but BAD: back to IDLE         │      clear_readings and min_hold──▶ IDLE
      │              └──(member of a group rule)──▶ HELD ──window passed, no group──▶ ACTIVE
      │                                               └──group open──▶ SUPPRESSED (active, not told)
      └──────────────────────────── GOOD ───────────────────┘

Every transition happens at an event time: a reading's ts or a timer's due time. A due time that a
device's own later reading has already passed is caught up first ("sample and hold" between readings),
so the result does not depend on when the watermark happened to move.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from devices.catalog import standard_message
from rules.clock import Timers
from rules.signals import Condition, ConditionSink, Severity
from rules.templates import Number, render_template

if TYPE_CHECKING:
    from rules.grouping import GroupTracker
    from rules.schedule import SunSchedule

BAD, GOOD, KEEP, SKIP = 1, 2, 3, 4
IDLE, PENDING, HELD, ACTIVE, SUPPRESSED = 0, 1, 2, 3, 4
PHASE_NAMES = ("idle", "pending", "held", "active", "suppressed")
SEVERITY_RANK: dict[str, int] = {"warning": 0, "minor": 1, "major": 2, "critical": 3}

_KIND_LABEL = {"lamp": "Lamp", "waterlevel": "Water-level sensor", "cabinet": "Cabinet"}


class Env:
    """What latches share with the engine: the sink, the timers and the sun."""

    def __init__(
        self, sink: ConditionSink, timers: Timers, sun: SunSchedule, language: str = "en"
    ) -> None:
        self.sink = sink
        # zh: standard messages from the catalogue; en: the rules' own detailed wording.
        self.language = language
        self.template_errors = 0  # messages whose config template failed (standard text used)
        self.timers = timers
        self.sun = sun
        self.pending: list[GroupTracker] = []  # groups with news for the sink (see flush)
        self.emitted = 0
        # Arrival (wall ms) of what is being judged: the observation's received_ms, or the wall
        # clock of a tick. A Condition whose event time is more than `late_ms` behind the
        # watermark is marked reported late at that arrival (Condition.reported_at).
        self.rx: int | None = None
        self.late_ms = 120_000
        self.clock: Any = None  # the engine's Watermark: "late" is measured against the stream
        self.sink_errors = 0
        self.last_sink_error: BaseException | None = None

    def flush(self) -> None:
        pending = self.pending
        self.pending = []
        for group in pending:
            group.flush()

    def emit(self, condition: Condition) -> None:
        self.emitted += 1
        rx, clock = self.rx, self.clock
        if (
            rx is not None
            and clock is not None
            and clock.value is not None
            and clock.value - condition.at_ms > self.late_ms
        ):
            # Well behind the rest of the stream (not merely old: a replay is all old).
            condition = replace(condition, reported_at=rx)
        try:
            self.sink.on_condition(condition)
        except (
            Exception
        ) as exc:  # the sink's bug must not leave a rule half-way through a transition
            self.sink_errors += 1
            self.last_sink_error = exc


class DeviceInfo:
    """One device as the rules see it: registry facts plus where its streams got to."""

    __slots__ = (
        "absence",
        "cabinet",
        "device_id",
        "event_rules",
        "gap_from",
        "gap_to",
        "kind",
        "last_event",
        "last_seen",
        "last_status_ts",
        "last_tel",
        "online",
        "point",
        "registry_values",
        "report_interval_ms",
        "road",
        "road_class",
        "subject",
        "tel_rules",
    )

    def __init__(
        self,
        device_id: str,
        kind: str,
        *,
        road: str | None,
        road_class: str | None,
        cabinet: str | None,
        point: str | None,
        report_interval_s: float,
        registry_values: dict[str, Any],
    ) -> None:
        self.device_id = device_id
        self.kind = kind
        self.road = road
        self.road_class = road_class
        self.cabinet = cabinet
        self.point = point
        self.report_interval_ms = int(report_interval_s * 1000)
        self.registry_values = registry_values
        label = _KIND_LABEL.get(kind, kind)
        where = f" at {point}" if point else ""
        where += f" on {road}" if road else ""
        self.subject = f"{label} {device_id}{where}"
        self.last_tel = -1  # ts of the newest telemetry reading judged
        # The latest hole in its judged readings (more than two report intervals): readings that
        # arrive later with a ts inside it were never judged (a gateway's backlog, rules/late.py);
        # older ones outside it were (a redelivery).
        self.gap_from = -1
        self.gap_to = -1
        self.last_event: dict[str, int] = {}  # event name -> ts of the newest judged
        self.last_status_ts = -1
        self.online: bool | None = None
        self.last_seen: int | None = None
        self.tel_rules: list[Any] = []  # evaluators judging telemetry
        self.event_rules: list[Any] = []  # evaluators judging the event channel
        self.absence: Any = None  # the absence evaluator, if any

    def registry_value(self, name: str) -> Any:
        return self.registry_values.get(name)


class Latch:
    """Raise/clear with durations, reading counts, hysteresis (via KEEP), min hold and group hold."""

    __slots__ = (
        "clear_count",
        "clear_ms",
        "clear_n",
        "clear_since",
        "count",
        "dev",
        "due",
        "env",
        "for_ms",
        "for_n",
        "group",
        "hold_ms",
        "last_at",
        "level",
        "onset",
        "phase",
        "queued",
        "raised_at",
        "rule_id",
        "severity",
        "since",
        "template",
        "value",
    )

    def __init__(self, rule_id: str, spec: Any, dev: DeviceInfo, env: Env) -> None:
        self.rule_id = rule_id
        self.dev = dev
        self.env = env
        self.severity: Severity = spec.severity
        self.template: str | None = spec.message
        self.for_ms = int(spec.for_s * 1000)
        self.for_n: int = spec.for_readings
        self.clear_ms = int(spec.clear_for_s * 1000)
        self.clear_n: int = spec.clear_readings
        self.hold_ms = int(spec.min_hold_s * 1000)
        self.group: GroupTracker | None = None
        self.phase = IDLE
        self.count = 0
        self.since = 0
        self.clear_count = 0
        self.clear_since = 0
        self.raised_at = 0
        self.onset = 0
        self.last_at = 0  # event time of the last Condition told: later ones are never earlier
        self.value: float | None = None
        self.level: int | None = None
        self.due: int | None = None
        self.queued: int | None = None

    # ---- verdicts -------------------------------------------------------------------------------

    def judge(self, verdict: int, ts: int, value: float | None) -> None:
        due = self.due
        if due is not None and due <= ts:
            self.due = None
            self.fire(due)
        if verdict != SKIP:
            self.value = value
        phase = self.phase
        if phase == IDLE:
            if verdict == BAD:
                self.count = 1
                self.since = ts
                self._try_raise(ts)
        elif phase == PENDING:
            if verdict == BAD:
                self.count += 1
                self._try_raise(ts)
            else:
                self.phase = IDLE
                self.due = None
        elif phase in (ACTIVE, SUPPRESSED):
            if verdict == GOOD:
                if self.clear_count == 0:
                    self.clear_since = ts
                self.clear_count += 1
                self._try_clear(ts)
            elif verdict != SKIP and self.clear_count:
                self.clear_count = 0
                self.due = None
        elif phase == HELD and verdict == GOOD:
            self.phase = IDLE
            self.due = None
            if self.group is not None:
                self.group.member_good(self, ts)

    def _try_raise(self, ts: int) -> None:
        self.phase = PENDING
        if self.count < self.for_n:
            return
        ready = self.since + self.for_ms
        if ready <= ts:
            self._raise(ts)
        else:
            self.env.timers.arm(self, ready)

    def _try_clear(self, ts: int) -> None:
        if self.clear_count < self.clear_n:
            return
        ready = max(self.clear_since + self.clear_ms, self.raised_at + self.hold_ms)
        if ready <= ts:
            self._clear(ts)
        else:
            self.env.timers.arm(self, ready)

    def fire(self, at_ms: int) -> None:
        """A timer came due (durations, group hold, clear delay)."""
        phase = self.phase
        if phase == PENDING:
            if self.count >= self.for_n:
                self._raise(at_ms)
        elif phase == HELD:
            group = self.group
            if group is not None and group.suppresses(self):
                self.phase = SUPPRESSED
                self.raised_at = at_ms
            else:
                self._open(at_ms)
        elif (phase in (ACTIVE, SUPPRESSED)) and self.clear_count >= self.clear_n:
            self._clear(at_ms)

    # ---- transitions ----------------------------------------------------------------------------

    def _raise(self, at_ms: int) -> None:
        self.clear_count = 0
        self.onset = at_ms
        group = self.group
        if group is None:
            self._open(at_ms)
            return
        # Wait out the group's window first so that a cabinet outage forms before forty lamps'
        # own alerts go out.
        self.phase = HELD
        group.member_bad(self, at_ms)
        self.env.timers.arm(self, at_ms + group.window_ms)

    def _open(self, at_ms: int) -> None:
        at_ms = max(at_ms, self.last_at)
        self.phase = ACTIVE
        self.raised_at = at_ms
        self.clear_count = 0
        self.emit(True, at_ms)

    def _clear(self, at_ms: int) -> None:
        was = self.phase
        self.phase = IDLE
        self.count = 0
        self.clear_count = 0
        self.due = None
        if was == ACTIVE:
            self.emit(False, max(at_ms, self.raised_at))
        if self.group is not None:
            self.group.member_good(self, at_ms)

    def in_group(self) -> bool:
        """Whether this latch counts as bad in its group (re-registered there after a restart)."""
        return self.phase in (HELD, ACTIVE, SUPPRESSED)

    def unsuppress(self, at_ms: int) -> None:
        """The group closed while this member is still bad: its own alert goes out now."""
        if self.phase == SUPPRESSED:
            self._open(at_ms)
            if self.clear_count >= self.clear_n:
                self._try_clear(at_ms)

    # ---- output ---------------------------------------------------------------------------------

    def emit(self, active: bool, at_ms: int) -> None:
        # A straggler (newer than the device's last reading but older than the watermark a timer
        # already fired at) is judged as of that earlier transition: time never runs back.
        if at_ms < self.last_at:
            at_ms = self.last_at
        self.last_at = at_ms
        self.env.emit(self.condition(active, at_ms))

    def condition(self, active: bool, at_ms: int) -> Condition:
        dev = self.dev
        return Condition(
            rule=self.rule_id,
            device=dev.device_id,
            kind=dev.kind,
            active=active,
            severity=self.severity,
            at_ms=at_ms,
            message=self.message(active),
            level=self.level,
            value=self.value,
            road=dev.road,
            extra=self.extra(),
        )

    def message(self, active: bool) -> str:
        if active and self.template is not None:
            try:
                return render_template(self.template, self.template_fields())
            except (KeyError, IndexError, ValueError, TypeError, AttributeError):
                # A template that cannot render this value (e.g. `{value:.1f}` with no value)
                # must not lose the alert: the standard text instead, counted.
                self.env.template_errors += 1
        if self.env.language == "zh":
            dev = self.dev
            return standard_message(
                self.rule_id,
                active,
                lang="zh",
                road=dev.road,
                point=dev.point,
                device=dev.device_id,
                value=self.value,
                unit=getattr(self, "unit", ""),
                level=self.level,
            )
        return self.describe(active)

    def template_fields(self) -> dict[str, object]:
        dev = self.dev
        return {
            "rule": self.rule_id,
            "device": dev.device_id,
            "kind": dev.kind,
            "road": dev.road or "",
            "value": "" if self.value is None else Number(self.value),
            "level": "" if self.level is None else self.level,
            "field": getattr(self, "field", ""),
            "point": dev.point or "",
            "cabinet": dev.cabinet or "",
            "unit": getattr(self, "unit", ""),
        }

    def describe(self, active: bool) -> str:
        state = "raised" if active else "cleared"
        return f"{self.dev.subject}: {self.rule_id} {state}"

    def extra(self) -> dict[str, str]:
        dev = self.dev
        out: dict[str, str] = {}
        if dev.cabinet:
            out["cabinet"] = dev.cabinet
        if dev.point:
            out["point"] = dev.point
        return out

    # ---- persistence ----------------------------------------------------------------------------

    def take(self, told: Condition) -> None:
        """After a restart: the sink's last word on this (rule, device) is newer than the saved
        state (the alert store commits every condition at once, rule state is saved about once a
        second). The latch takes it, so a restart neither clears nor re-raises anything by itself:
        the next readings decide, through the usual hysteresis. Severity stays the config's."""
        self.last_at = told.at_ms
        self.due = None
        self.count = 0
        self.clear_count = 0
        if told.active:
            if self.phase not in (ACTIVE, SUPPRESSED):
                self.phase = ACTIVE
                self.raised_at = told.at_ms
                self.onset = told.at_ms
            if told.value is not None:
                self.value = told.value
            if self.group is not None:
                self.group.adopt(self)
        elif self.phase != IDLE:
            self.phase = IDLE
            if self.group is not None:
                self.group.member_good(self, told.at_ms)

    def busy(self) -> bool:
        """Anything worth saving (beyond what the evaluator keeps). A latch that ever told the sink
        something keeps its last_at, so that a restart cannot send a Condition back in time."""
        return self.phase != IDLE or self.last_at != 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "count": self.count,
            "since": self.since,
            "clear_count": self.clear_count,
            "clear_since": self.clear_since,
            "raised_at": self.raised_at,
            "onset": self.onset,
            "last_at": self.last_at,
            "value": self.value,
            "level": self.level,
            "severity": self.severity,
            "due": self.due,
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.phase = int(data.get("phase", IDLE))
        self.count = int(data.get("count", 0))
        self.since = int(data.get("since", 0))
        self.clear_count = int(data.get("clear_count", 0))
        self.clear_since = int(data.get("clear_since", 0))
        self.raised_at = int(data.get("raised_at", 0))
        self.onset = int(data.get("onset", 0))
        self.last_at = int(data.get("last_at", 0))
        self.value = data.get("value")
        self.level = data.get("level")
        # The saved severity is not taken back: severity comes from the config in force (a kind
        # whose severity moves with its state, levels or events, works it out again in `load`).
        due = data.get("due")
        if due is not None:
            self.env.timers.arm(self, int(due))
