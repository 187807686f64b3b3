"""The rule engine: observations in, `Condition`s out (to a `ConditionSink`), on event time.

    engine = RuleEngine(config, location, registry, sink, state_path=data_dir / "rules-state.sqlite")
    engine.load_state()          # at start
    engine.observe(obs)          # every accepted reading / event / status: sync, no I/O
    engine.link(up, wall_ms)     # our broker link went down / came back (holds the wall clock)
    engine.tick(wall_ms)         # about every second: the wall clock, used only while live
    engine.save_state()          # every few seconds and at shutdown (writes what changed)

What happens to one observation:
1. Per device and channel, a reading not newer than the last one judged never reaches the
   device's live rules: a redelivered duplicate is dropped, an older one (a gateway's backlog sent
   after the current reading) is judged by a run of its own (rules/late.py), so it never moves a
   live rule back and is not lost either.
2. The watermark moves (rules/clock.py); timers that came due fire first, in event-time order.
3. The device's evaluators judge it (rules/evaluators.py) and their latches raise or clear
   (rules/latch.py); group rules collect members (rules/grouping.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from devices.location import LocationConfig
from devices.messages import Observation
from devices.registry import Device, Registry
from rules.clock import Timers, TimerTarget, Watermark
from rules.config import AbsenceRule, GroupRule, RuleBase, RulesConfig
from rules.errors import RuleStateError
from rules.evaluators import AbsenceCheck, Evaluator, EventCheck, applies, make_evaluator
from rules.grouping import GroupTracker
from rules.latch import ACTIVE, HELD, IDLE, SUPPRESSED, DeviceInfo, Env
from rules.late import LateRun
from rules.schedule import SunSchedule
from rules.signals import Condition, ConditionSink
from rules.state import EncodedState, StateFile, encode

log = logging.getLogger(__name__)

_REGISTRY_VALUES = ("rated_w", "lat", "lon", "report_interval_s", "road", "cabinet", "point")


@dataclass(slots=True)
class StateBatch:
    """What one save writes: the devices it covers (to requeue on failure) and the encoded rows."""

    devices: list[DeviceInfo]
    encoded: EncodedState


class RuleEngine:
    """Evaluates the configured rules. Not thread-safe: call it from one thread (the event loop)."""

    def __init__(
        self,
        config: RulesConfig,
        location: LocationConfig,
        registry: Registry,
        sink: ConditionSink,
        state_path: Path | None = None,
        language: str = "en",
    ) -> None:
        """Args:
        config: the `rules` section (validated).
        location: where the city is (sunset/sunrise for the schedule rules).
        registry: the device registry (road, road_class, cabinet, rated_w, report_interval_s).
        sink: where Conditions go; called synchronously, must not block.
        state_path: SQLite file for save_state/load_state; None: state is not persisted.
        language: zh: standard messages from the catalogue (devices.catalog); en: the rules' own.
        """
        self.config = config
        self.registry = registry
        self.timers = Timers(on_fire=self._fired)
        self.env = Env(sink, self.timers, SunSchedule(location), language)
        self.env.late_ms = int(config.clock.live_lag_s * 1000)
        clock = config.clock
        self.clock = Watermark(
            delay_s=clock.delay_s,
            live_lag_s=clock.live_lag_s,
            live_hold_s=clock.live_hold_s,
            gap_s=clock.gap_s,
            backlog_quiet_s=clock.backlog_quiet_s,
        )
        self.env.clock = self.clock
        self._state = StateFile(Path(state_path)) if state_path is not None else None
        self._rules: dict[str, RuleBase] = {}
        self._groups_rules: dict[str, GroupRule] = {}
        self._member_of: dict[str, str] = {}  # member rule id -> group rule id
        self._member_events: dict[str, frozenset[str]] = {}  # event member rule id -> its events
        if config.enabled:
            for rule_id, rule in config.all_rules().items():
                if isinstance(rule, GroupRule):
                    self._groups_rules[rule_id] = rule
                    for member in rule.members:
                        self._member_of[member] = rule_id
                    for member, events in rule.member_events.items():
                        self._member_events[member] = frozenset(events)
                else:
                    self._rules[rule_id] = rule
        self._resolved: dict[tuple[str, str | None, str | None], RuleBase] = {}
        self._devices: dict[str, DeviceInfo] = {}
        self._other_kind: dict[tuple[str, str], DeviceInfo] = {}  # same id, another kind
        self._groups: dict[tuple[str, str], GroupTracker] = {}
        # Insertion-ordered: a capped save takes the longest-waiting devices first.
        self._dirty: dict[DeviceInfo, None] = {}
        self._start_w: int | None = (
            None  # first watermark: absence of never-heard devices counts from it
        )
        self.counts = {
            "observed": 0,
            "duplicate": 0,
            "late": 0,  # older than the device's newest judged, not in its gap: dropped
            "late_judged": 0,  # in the device's latest gap: judged by a LateRun (rules/late.py)
            "late_dropped": 0,  # ... but not newer than that run's last
            "ignored": 0,
            "untracked": 0,
        }
        self._late_runs: dict[DeviceInfo, LateRun] = {}
        self._unregistered = 0
        for device in registry:
            self._device(device.device_id, device.kind)

    # ---- the hot path ---------------------------------------------------------------------------

    def observe(self, obs: Observation) -> None:
        """Judge one accepted observation. Never blocks, never does I/O."""
        self.env.rx = obs.received_ms
        if self.clock.back_at is not None:
            self.clock.arrived(getattr(obs.data, "ts", None), obs.received_ms)
        dev = self._devices.get(obs.device_id)
        counts = self.counts
        if dev is None or dev.kind != obs.kind:
            found = self._device(obs.device_id, obs.kind)
            if found is None:
                counts["untracked"] += 1
                return
            dev = found
        counts["observed"] += 1
        channel = obs.channel
        data: Any = obs.data
        if channel == "telemetry":
            ts = data.ts
            last = dev.last_tel
            if ts <= last:
                if ts == last:
                    counts["duplicate"] += 1
                elif dev.gap_from < ts < dev.gap_to:
                    self._late(dev, channel, data, ts, obs.received_ms)
                else:
                    counts["late"] += 1  # judged already (a redelivery), or too old to place
                return
            if last >= 0 and ts - last > 2 * dev.report_interval_ms:
                dev.gap_from, dev.gap_to = last, ts
            dev.last_tel = ts
            self._judge(dev, data, ts, obs.received_ms, dev.tel_rules)
        elif channel == "event":
            ts = data.ts
            last = dev.last_event.get(data.event, -1)
            if ts <= last:
                if ts == last:
                    counts["duplicate"] += 1
                elif dev.gap_from < ts < dev.gap_to:
                    self._late(dev, channel, data, ts, obs.received_ms)
                else:
                    counts["late"] += 1
                return
            if len(dev.last_event) < 256 or data.event in dev.last_event:
                dev.last_event[data.event] = ts
            self._judge(dev, data, ts, obs.received_ms, dev.event_rules)
        elif channel == "status":
            self._status(dev, data.online, data.ts, obs.received_ms)
            if self.env.pending:
                self.env.flush()
        else:
            counts["ignored"] += 1

    def _status(self, dev: DeviceInfo, online: bool, ts: int | None, received_ms: int) -> None:
        if ts is None:
            # A last will carries no ts: it happened "now" in event time. Judged by value only,
            # so the retained copy redelivered on every reconnect is a duplicate.
            if online == dev.online:
                self.counts["duplicate"] += 1
                return
            wm = self.clock.value
            ts = wm + self.clock.delay_ms if wm is not None else received_ms
            ts = max(ts, dev.last_status_ts + 1)
        else:
            if ts <= dev.last_status_ts:
                self.counts["duplicate" if ts == dev.last_status_ts else "late"] += 1
                return
            self._advance(ts, received_ms)
        dev.last_status_ts = ts
        dev.online = online
        self._dirty[dev] = None
        absence = dev.absence
        if absence is None:
            return
        if not online and absence.last_seen is not None and ts < absence.last_seen:
            self.counts["late"] += 1  # an offline older than its newest reading: stale
            return
        absence.status(online, ts)

    def _judge(
        self, dev: DeviceInfo, data: Any, ts: int, received_ms: int, evaluators: list[Evaluator]
    ) -> None:
        """A new reading or event of `dev`: move the clock, then let each of its rules judge it."""
        self._advance(ts, received_ms)
        self._dirty[dev] = None
        if dev.absence is not None:
            dev.absence.seen(ts)
        for evaluator in evaluators:
            evaluator.reading(data, ts)
        if self.env.pending:
            self.env.flush()

    def _late(self, dev: DeviceInfo, channel: str, data: Any, ts: int, rx: int) -> None:
        """A reading inside the device's latest gap, never judged: its own run judges it."""
        self.counts["late_judged"] += 1
        run = self._late_runs.get(dev)
        if run is None:
            run = self._late_runs[dev] = self._late_run(dev, rx)
        run.add(channel, data, ts, rx)

    def _late_run(self, dev: DeviceInfo, rx: int) -> LateRun:
        run = LateRun(self.env.sink, self.env, dev, dev.gap_to, rx)
        for rule_id, rule in self._rules.items():
            events = self._member_events.get(rule_id)
            if rule_id in self._member_of and events is None:
                continue  # decided on the onsets the group saw in order (rules/late.py)
            if events is not None:
                run.group_events |= events  # a cabinet's supply events: the group's, not judged
            spec = self._resolve(rule_id, rule, dev)
            if not spec.enabled or not applies(spec, dev.kind) or isinstance(spec, AbsenceRule):
                continue
            evaluator = make_evaluator(rule_id, spec, dev, run.env, self._absence_baseline)
            if evaluator is None:
                continue
            (run.events if evaluator.channel == "event" else run.tel).append(evaluator)
        return run

    def _finish_late(self, wall_ms: int) -> None:
        quiet = self.clock.quiet_ms
        done = [dev for dev, run in self._late_runs.items() if wall_ms - run.last_rx >= quiet]
        for dev in done:
            self._end_late(dev)

    def _end_late(self, dev: DeviceInfo) -> None:
        run = self._late_runs.pop(dev)
        run.finish(dev)
        self.counts["late_dropped"] += run.dropped
        # What it judged is no longer a hole: a redelivery of it later changes nothing.
        if run.last_tel > dev.gap_from:
            dev.gap_from = run.last_tel

    def _advance(self, ts: int, received_ms: int) -> None:
        moved = self.clock.saw(ts, received_ms)
        if moved is not None:
            self._moved(moved)

    def link(self, up: bool, wall_ms: int, *, backlog: bool = True) -> None:
        """Our own link to the broker went down / came back (see rules/clock.py): while it is down,
        and after it returns until the backlog queued meanwhile is in, `tick` does not move the
        watermark, so our silence is never taken for the devices'. `backlog`: the broker kept our
        session. Call `link(False, now)` before the first connection when the service starts."""
        self.clock.link(up, wall_ms, backlog=backlog)

    def tick(self, wall_ms: int) -> None:
        """The wall clock moves the watermark only while the stream is live; fire due timers."""
        self.env.rx = wall_ms
        if self._late_runs:
            self._finish_late(wall_ms)
        moved = self.clock.wall(wall_ms)
        if moved is not None:
            self._moved(moved)

    def _moved(self, now: int) -> None:
        if self._start_w is None:
            self._start_w = now
            for dev in self._devices.values():
                absence = dev.absence
                if absence is not None and (absence.track or absence.last_seen is not None):
                    absence.arm(self.timers)
        self.timers.run_until(now)
        if self.env.pending:
            self.env.flush()

    # ---- binding rules to devices ---------------------------------------------------------------

    def _absence_baseline(self) -> int | None:
        start = self._start_w
        gap = self.clock.gap_end
        if gap is None:
            return start
        return gap if start is None else max(start, gap)

    def _resolve(self, rule_id: str, rule: RuleBase, dev: DeviceInfo) -> RuleBase:
        road_class = dev.road_class if dev.road_class in rule.by_road_class else None
        device = dev.device_id if dev.device_id in rule.by_device else None
        key = (rule_id, road_class, device)
        spec = self._resolved.get(key)
        if spec is None:
            spec = rule.merged(
                rule.by_road_class.get(road_class, {}) if road_class else {},
                rule.by_device.get(device, {}) if device else {},
            )
            self._resolved[key] = spec
        return spec

    def _device(self, device_id: str, kind: str) -> DeviceInfo | None:
        """The device's rule state, bound on first sight; None past the unregistered-device cap."""
        existing = self._devices.get(device_id)
        if existing is not None:
            if existing.kind == kind:
                return existing
            other = self._other_kind.get((kind, device_id))
            if other is not None:
                return other
        device: Device | None = self.registry.get(device_id)
        if device is not None and device.kind != kind:
            device = None  # the registry describes another device kind: trust nothing of it
        if device is None:
            if self._unregistered >= self.config.max_unregistered_devices:
                if self.counts["untracked"] == 0:
                    log.warning(
                        "rules: more than %d unregistered devices; new ones are stored but get "
                        "no rules (rules.max_unregistered_devices)",
                        self.config.max_unregistered_devices,
                    )
                return None
            self._unregistered += 1
        dev = self._make_info(device_id, kind, device)
        if existing is None:
            self._devices[device_id] = dev
        elif len(self._other_kind) < 10_000:
            self._other_kind[(kind, device_id)] = dev
        self._bind(dev, track=device is not None)
        return dev

    def _make_info(self, device_id: str, kind: str, device: Device | None) -> DeviceInfo:
        from devices.kinds import KINDS

        spec = KINDS.get(kind)
        interval = spec.default_report_interval_s if spec is not None else 300.0
        values: dict[str, Any] = {}
        if device is not None:
            interval = device.report_interval_s
            for name in _REGISTRY_VALUES:
                values[name] = getattr(device, name)
            values.update(device.attributes)
        return DeviceInfo(
            device_id,
            kind,
            road=device.road if device else None,
            road_class=device.road_class if device else None,
            cabinet=device.cabinet if device else None,
            point=device.point if device else None,
            report_interval_s=interval,
            registry_values=values,
        )

    def _bind(self, dev: DeviceInfo, *, track: bool) -> None:
        for rule_id, rule in self._rules.items():
            spec = self._resolve(rule_id, rule, dev)
            if not spec.enabled or not applies(spec, dev.kind):
                continue
            evaluator = make_evaluator(rule_id, spec, dev, self.env, self._absence_baseline)
            if evaluator is None:
                continue
            group_id = self._member_of.get(rule_id)
            if group_id is not None:
                evaluator.group = self._tracker(group_id, dev)
                if isinstance(evaluator, EventCheck):
                    evaluator.group_events = self._member_events.get(rule_id, frozenset())
            if isinstance(evaluator, AbsenceCheck):
                assert isinstance(spec, AbsenceRule)
                evaluator.track = track and spec.track_registered
                dev.absence = evaluator
                if self._start_w is not None and evaluator.track:
                    evaluator.arm(self.timers)
            elif evaluator.channel == "event":
                dev.event_rules.append(evaluator)
            else:
                dev.tel_rules.append(evaluator)

    def _tracker(self, group_id: str, dev: DeviceInfo) -> GroupTracker | None:
        rule = self._groups_rules[group_id]
        spec = self._resolve(group_id, rule, dev)
        if not spec.enabled:
            return None
        key = dev.registry_value(rule.group_by)
        if key in (None, ""):
            return None
        tracker = self._groups.get((group_id, str(key)))
        if tracker is None:
            # Group parameters come from the rule itself: a group spans devices, so only
            # `enabled` is taken per road class / device.
            tracker = GroupTracker(group_id, str(key), rule, self.env)
            self._groups[(group_id, str(key))] = tracker
        return tracker

    def _fired(self, target: TimerTarget) -> None:
        dev = getattr(target, "dev", None)
        if dev is None:
            owner = getattr(target, "owner", None)
            dev = getattr(owner, "dev", None)
        if dev is not None:
            self._dirty[dev] = None

    # ---- looking in -----------------------------------------------------------------------------

    def _all_devices(self) -> list[DeviceInfo]:
        return [*self._devices.values(), *self._other_kind.values()]

    @staticmethod
    def _evaluators(dev: DeviceInfo) -> list[Evaluator]:
        out: list[Evaluator] = [*dev.tel_rules, *dev.event_rules]
        if dev.absence is not None:
            out.append(dev.absence)
        return out

    def open_conditions(self) -> list[Condition]:
        """What the engine holds raised right now (for reconciling with the alert store)."""
        out: list[Condition] = []
        for dev in self._all_devices():
            for evaluator in self._evaluators(dev):
                if evaluator.phase == ACTIVE:
                    out.append(evaluator.condition(True, evaluator.raised_at))
        for tracker in self._groups.values():
            if tracker.open and tracker.told:
                out.append(tracker.condition(True, tracker.opened_at))
        return out

    @property
    def watermark_ms(self) -> int | None:
        return self.clock.value

    def stats(self) -> dict[str, Any]:
        """Counters for /metrics (plain numbers)."""
        return {
            **self.counts,
            "conditions": self.env.emitted,
            "sink_errors": self.env.sink_errors,
            "template_errors": self.env.template_errors,
            "devices": len(self._devices) + len(self._other_kind),
            "timers": len(self.timers),
            "watermark_ms": self.clock.value or 0,
            # 1 while our own link is down or its backlog is coming in (the wall clock waits)
            "clock_held": int(self.clock.held),
            "late_runs": len(self._late_runs),
        }

    # ---- persistence ----------------------------------------------------------------------------

    def save_state(self, limit: int | None = None) -> None:
        """Write what changed since the last save (one SQLite transaction). No-op without a path.

        `limit` caps how many changed devices one call writes (the rest stay queued, oldest
        first), so the cost of a save stays bounded however busy the stream is."""
        batch = self.prepare_state(limit)
        if batch is None:
            return
        try:
            self.write_state(batch)
        except RuleStateError:
            self.requeue_state(batch)
            raise

    def prepare_state(self, limit: int | None = None) -> StateBatch | None:
        """Collect and serialise what changed (on the engine's thread). None without a path.

        The service writes the result with `write_state` in a worker thread: under heavy traffic
        (thousands of devices changing every second) the SQLite write took tens of ms, which
        showed up as alert latency when it ran on the event loop."""
        if self._state is None:
            return None
        taken: list[DeviceInfo] = []
        if limit is None or limit >= len(self._dirty):
            taken = list(self._dirty)
            self._dirty = {}
        else:
            for dev in self._dirty:
                taken.append(dev)
                if len(taken) >= limit:
                    break
            for dev in taken:
                del self._dirty[dev]
        rows: list[tuple[str, dict[str, Any] | None]] = []
        for dev in taken:
            if dev is not self._devices.get(dev.device_id):
                continue  # the odd same-id-other-kind device is not persisted
            rows.append((dev.device_id, self._device_body(dev)))
        # A group that ever told the sink something keeps its last_at (as a latch does), so that
        # a restart cannot send its next Condition back in time.
        groups = [
            (rule, key, tracker.snapshot())
            for (rule, key), tracker in self._groups.items()
            if tracker.open or tracker.due is not None or tracker.last_at
        ]
        meta = {
            "watermark": self.clock.value,
            "last_live_rx": self.clock.last_live_rx,
            "gap_end": self.clock.gap_end,
            "start_w": self._start_w,
            "saved_at_ms": time.time_ns() // 1_000_000,
        }
        return StateBatch(taken, encode(meta, rows, groups))

    def write_state(self, batch: StateBatch) -> None:
        """Write a prepared batch. Safe in a worker thread; never two at once."""
        assert self._state is not None
        self._state.write_encoded(batch.encoded)

    def requeue_state(self, batch: StateBatch) -> None:
        """A write failed: its devices are saved next time (call on the engine's thread)."""
        for dev in batch.devices:
            self._dirty[dev] = None

    @property
    def unsaved(self) -> int:
        """Devices changed since they were last saved."""
        return len(self._dirty)

    def _device_body(self, dev: DeviceInfo) -> dict[str, Any]:
        rules: dict[str, Any] = {}
        for evaluator in self._evaluators(dev):
            extra = evaluator.state()
            if evaluator.busy() or extra:
                snap = evaluator.snapshot()
                if extra:
                    snap["x"] = extra
                rules[evaluator.rule_id] = snap
        return {
            "kind": dev.kind,
            "last_tel": dev.last_tel,
            "last_event": dev.last_event,
            "last_status_ts": dev.last_status_ts,
            "online": dev.online,
            "rules": rules,
        }

    def load_state(self) -> None:
        """Resume from the state file, if there is one. A file that cannot be read is set aside
        (renamed *.corrupt) and the engine starts fresh, logging why: rules must run regardless."""
        state = self._state
        if state is None or not state.exists():
            return
        try:
            meta, devices, groups = state.read()
        except RuleStateError as exc:
            log.error("rule state unusable, starting fresh: %s", exc)
            state.close()
            aside = state.path.with_suffix(state.path.suffix + f".corrupt-{int(time.time())}")
            state.path.rename(aside)
            return
        clock = self.clock
        clock.value = meta.get("watermark")
        clock.last_live_rx = meta.get("last_live_rx")
        clock.gap_end = meta.get("gap_end")
        self._start_w = meta.get("start_w")
        at = clock.value or 0
        for device_id, body in devices:
            dev = self._device(device_id, str(body.get("kind", "")))
            if dev is None:
                continue  # past rules.max_unregistered_devices (the cap was lowered)
            dev.last_tel = int(body.get("last_tel", -1))
            dev.last_event = {str(k): int(v) for k, v in body.get("last_event", {}).items()}
            dev.last_status_ts = int(body.get("last_status_ts", -1))
            dev.online = body.get("online")
            saved: dict[str, Any] = body.get("rules", {})
            by_id = {e.rule_id: e for e in self._evaluators(dev)}
            for rule_id, snap in saved.items():
                evaluator = by_id.get(rule_id)
                if evaluator is None:
                    self._retire(dev, rule_id, snap, at)
                    continue
                evaluator.restore(snap)
                evaluator.load(snap.get("x", {}))
            if dev.absence is not None and self._start_w is not None:
                dev.absence.arm(self.timers)
        for dev in self._all_devices():
            for evaluator in self._evaluators(dev):
                if evaluator.group is not None:
                    evaluator.group.adopt(evaluator)
        for rule_id, key, body in groups:
            found = self._groups.get((rule_id, key))
            if found is not None:
                found.restore(body)
            elif body.get("told", body.get("open")):
                self._retire_group(rule_id, key, at)
        self._dirty = dict.fromkeys(self._all_devices())

    def align(self, told: Iterable[Condition]) -> int:
        """After `load_state`, before the first observation: take the sink's last word on each
        (rule, device) (for the alert store: its open alerts as conditions) where it is newer than
        the saved state. The store commits every condition at once while rule state is saved about
        once a second, and the state file may be missing or unreadable: without this, a restart
        would forget alerts raised in the last second and the reconcile would clear them while the
        water is still on the road. So a restart never clears or raises anything by itself; the
        next readings (or their absence) decide. Returns how many latches took the sink's word."""
        taken = 0
        for condition in told:
            if condition.rule in self._groups_rules:
                tracker = self._groups.get((condition.rule, condition.device))
                if tracker is None:
                    if condition.active:  # switched off, or no registered device is in it now
                        self._retire_group(condition.rule, condition.device, condition.at_ms)
                elif condition.at_ms > tracker.last_at:
                    tracker.take(condition, self._unknown_members(tracker, condition))
                    taken += 1
                continue
            if condition.rule not in self._rules:
                if condition.active:  # a rule the config in force no longer has
                    self.env.emit(replace(condition, active=False, message=_off(condition)))
                continue
            dev = self._devices.get(condition.device)
            if dev is None or dev.kind != condition.kind:
                dev = self._device(condition.device, condition.kind)
            if dev is None:
                continue  # past rules.max_unregistered_devices: the alert stays as it is
            found = [e for e in self._evaluators(dev) if e.rule_id == condition.rule]
            if not found:
                if condition.active:  # the rule is off for this device in the config in force
                    self._retire(dev, condition.rule, {"phase": ACTIVE}, condition.at_ms)
                continue
            evaluator = found[0]
            if condition.at_ms > evaluator.last_at:
                evaluator.take(condition)
                self._dirty[dev] = None
                taken += 1
            elif (
                evaluator.last_at > condition.at_ms
                and condition.active
                and evaluator.phase not in (ACTIVE, SUPPRESSED, HELD)
            ):
                # The rules judged it gone later than the sink heard (a clear the sink lost).
                evaluator.emit(False, evaluator.last_at)
        if self.env.pending:
            self.env.flush()
        return taken

    def _unknown_members(self, tracker: GroupTracker, told: Condition) -> dict[str, list[Any]]:
        """Member latches, per device named by a group alert, that know nothing of it (IDLE)."""
        out: dict[str, list[Any]] = {}
        for device in told.extra.get("devices", "").split(","):
            dev = self._devices.get(device)
            if dev is None:
                continue
            out[device] = [
                e
                for e in self._evaluators(dev)
                if e.group is tracker and e.phase == IDLE and e.channel != "event"
            ]
        return out

    def _retire(self, dev: DeviceInfo, rule_id: str, snap: dict[str, Any], at: int) -> None:
        """A rule that was raised before the restart is now off for this device: clear it."""
        if snap.get("phase") != ACTIVE:
            return
        self.env.emit(
            Condition(
                rule=rule_id,
                device=dev.device_id,
                kind=dev.kind,
                active=False,
                severity=snap.get("severity", "warning"),
                at_ms=max(at, int(snap.get("raised_at", 0))),
                message=f"{dev.subject}: {rule_id} switched off in config",
                road=dev.road,
            )
        )

    def _retire_group(self, rule_id: str, key: str, at: int) -> None:
        self.env.emit(
            Condition(
                rule=rule_id,
                device=key,
                kind="cabinet",
                active=False,
                severity="warning",
                at_ms=at,
                message=f"{rule_id} for {key} switched off in config",
            )
        )

    def close(self) -> None:
        """Close the state file (call after the final save_state). Late runs still open end now."""
        for dev in list(self._late_runs):
            self._end_late(dev)
        if self._state is not None:
            self._state.close()


def _off(condition: Condition) -> str:
    return f"{condition.rule} for {condition.device} switched off in config"
