"""Group rules (cabinet_outage): many lamps of one cabinet going dark or offline are one fault.

A lamp's member rule (lamp_dark, device_offline, and lamp_fault while it reports only supply events
such as the last-gasp supplyLoss) that decides to raise goes HELD for the group's window first and
reports its onset here. When `min_count` members' onsets fall within one window,
the group opens: one Condition with `device` = the cabinet id, and those lamps' own alerts are held
back (SUPPRESSED) while it stays open; lamps of the cabinet that go bad later join it. The group
clears once fewer than `min_count` members stayed bad for its window (and its min hold passed);
members still bad then get their own alerts, since they are now individual faults.

Opening is decided on the sorted onsets, not on arrival order, so a replay and a live run agree.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from devices.catalog import group_message_zh
from rules.config import GroupRule
from rules.latch import SUPPRESSED, Env, Latch
from rules.signals import Condition

_GROUP_NOUN = {"cabinet": "Cabinet"}


class GroupTracker:
    """One group (one cabinet) of one group rule."""

    __slots__ = (
        "announce_at",
        "bad",
        "due",
        "env",
        "hold_ms",
        "key",
        "kind",
        "last_at",
        "members",
        "min_count",
        "open",
        "opened_at",
        "queued",
        "reported",
        "rule_id",
        "severity",
        "told",
        "window_ms",
    )

    def __init__(self, rule_id: str, key: str, spec: GroupRule, env: Env) -> None:
        self.rule_id = rule_id
        self.key = key
        self.kind = spec.group_by
        self.env = env
        self.window_ms = int(spec.window_s * 1000)
        self.min_count = spec.min_count
        self.hold_ms = int(spec.min_hold_s * 1000)
        self.severity = spec.severity
        # device -> {member rule id -> latch}: devices bad under at least one member rule
        self.bad: dict[str, dict[str, Latch]] = {}
        self.open = False
        self.opened_at = 0
        self.members: set[str] = set()
        self.reported = 0  # member count the sink was last told
        self.told = False  # the sink knows the group is open
        self.last_at = 0  # event time of the last Condition told (never goes back)
        self.announce_at: int | None = None  # an open/update waiting for flush()
        self.due: int | None = None
        self.queued: int | None = None

    # ---- called by member latches ---------------------------------------------------------------

    def _settle(self, at_ms: int) -> None:
        # Coalescing is per event time only, so a replay (one timer run covering minutes) and a
        # live run (a tick a second) tell the sink the same things: news from an earlier instant
        # goes out before this instant changes the members.
        pending = self.announce_at
        if pending is not None and pending != max(at_ms, self.opened_at):
            self.flush()

    def member_bad(self, latch: Latch, at_ms: int) -> None:
        self._settle(at_ms)
        device = latch.dev.device_id
        self.bad.setdefault(device, {})[latch.rule_id] = latch
        if self.open:
            self.members.add(device)
            if len(self.members) >= self.min_count:
                self.due = None  # a pending close is off
            self._update(at_ms)
        else:
            self._try_open()

    def member_good(self, latch: Latch, at_ms: int) -> None:
        self._settle(at_ms)
        device = latch.dev.device_id
        rules = self.bad.get(device)
        if rules is None or rules.pop(latch.rule_id, None) is None or rules:
            return  # still bad under another member rule
        del self.bad[device]
        if not self.open or device not in self.members:
            return
        self.members.discard(device)
        if len(self.members) < self.min_count:
            # Power comes back to a cabinet's lamps over a minute or two, not at once: wait the
            # group's window before closing, so the stragglers do not each get an alert of their own.
            if self.due is None:
                ready = max(at_ms + self.window_ms, self.opened_at + self.hold_ms)
                self.env.timers.arm(self, ready)
        else:
            self._update(at_ms)

    def suppresses(self, latch: Latch) -> bool:
        return self.open and latch.dev.device_id in self.members

    def fire(self, at_ms: int) -> None:
        self._settle(at_ms)
        if self.open and len(self.members) < self.min_count:
            self._close(at_ms)

    # ---- transitions ----------------------------------------------------------------------------

    def _onset(self, device: str) -> int:
        return min(latch.onset for latch in self.bad[device].values())

    def _try_open(self) -> None:
        n = self.min_count
        if len(self.bad) < n:
            return
        onsets = sorted((self._onset(device), device) for device in self.bad)
        for i in range(len(onsets) - n + 1):
            start = onsets[i][0]
            if onsets[i + n - 1][0] - start <= self.window_ms:
                self.open = True
                self.opened_at = onsets[i + n - 1][0]
                self.members = {device for onset, device in onsets if onset >= start}
                self._announce(self.opened_at)
                return

    def _update(self, at_ms: int) -> None:
        if self.open and len(self.members) != self.reported:
            self._announce(max(at_ms, self.opened_at))

    def _announce(self, at_ms: int) -> None:
        # Lamps of a cabinet that lost power go bad at the same instant, one after another: the
        # sink hears the group once per instant (flush), not once per lamp.
        if self.announce_at is None:
            self.announce_at = at_ms
            self.env.pending.append(self)

    def flush(self) -> None:
        at_ms = self.announce_at
        self.announce_at = None
        if at_ms is None or not self.open:
            return
        if not self.told or len(self.members) != self.reported:
            self.told = True
            self.reported = len(self.members)
            self._emit(True, at_ms)

    def _close(self, at_ms: int) -> None:
        self.open = False
        self.due = None
        if self.told:
            self._emit(False, max(at_ms, self.opened_at))
        self.told = False
        still_bad = [self.bad[d] for d in sorted(self.members) if d in self.bad]
        self.members = set()
        self.reported = 0
        for rules in still_bad:
            for latch in rules.values():
                latch.unsuppress(at_ms)

    def _emit(self, active: bool, at_ms: int) -> None:
        at_ms = max(at_ms, self.last_at)
        self.last_at = at_ms
        self.env.emit(self.condition(active, at_ms))

    def condition(self, active: bool, at_ms: int) -> Condition:
        latches = [next(iter(self.bad[d].values())) for d in sorted(self.members) if d in self.bad]
        roads = Counter(latch.dev.road for latch in latches if latch.dev.road)
        road = roads.most_common(1)[0][0] if roads else None
        count = len(self.members)
        noun = _GROUP_NOUN.get(self.kind, self.kind.capitalize())
        where = f" on {road}" if road else ""
        if self.env.language == "zh":
            message = group_message_zh(
                self.rule_id, self.key, road, active, count, sorted(self.members)
            )
        elif active:
            names = ", ".join(sorted(self.members)[:10])
            more = f" and {count - 10} more" if count > 10 else ""
            message = f"{noun} {self.key}{where}: {count} devices dark, offline or without supply ({names}{more})"
        else:
            message = f"{noun} {self.key}{where}: back, fewer than {self.min_count} devices out"
        return Condition(
            rule=self.rule_id,
            device=self.key,
            kind=self.kind,
            active=active,
            severity=self.severity,
            at_ms=at_ms,
            message=message,
            value=float(count),
            road=road,
            extra={"devices": ",".join(sorted(self.members)), "count": str(count)},
        )

    # ---- persistence ----------------------------------------------------------------------------

    def adopt(self, latch: Latch) -> None:
        """After a restart: a restored member latch that is bad re-registers here."""
        if latch.in_group():
            self.bad.setdefault(latch.dev.device_id, {})[latch.rule_id] = latch

    def take(self, told: Condition, unknown: dict[str, list[Latch]]) -> None:
        """After a restart: the sink's last word on this group is newer than the saved state.

        Told open: the group stays open with the devices it named. A named device whose member
        latches lost their state is taken as bad and held back (SUPPRESSED), so its own next
        readings decide whether it leaves the group; `unknown` maps such devices to those latches.
        """
        self.last_at = told.at_ms
        self.due = None
        if not told.active:
            self.open = False
            self.told = False
            self.members = set()
            self.reported = 0
            return
        listed = [d for d in told.extra.get("devices", "").split(",") if d]
        for device in listed:
            if device in self.bad:
                continue
            for latch in unknown.get(device, []):
                latch.phase = SUPPRESSED  # bad, held back by this group
                latch.raised_at = latch.onset = told.at_ms
                latch.last_at = max(latch.last_at, told.at_ms)
                self.bad.setdefault(device, {})[latch.rule_id] = latch
        if not self.open:
            self.opened_at = told.at_ms
        self.open = True
        self.told = True
        self.members = {d for d in [*listed, *self.members] if d in self.bad}
        self.reported = len(self.members)

    def snapshot(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "opened_at": self.opened_at,
            "members": sorted(self.members),
            "reported": self.reported,
            "told": self.told,
            "last_at": self.last_at,
            "due": self.due,
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.open = bool(data.get("open", False))
        self.opened_at = int(data.get("opened_at", 0))
        self.members = {str(d) for d in data.get("members", [])}
        self.reported = int(data.get("reported", 0))
        self.told = bool(data.get("told", self.open))
        self.last_at = int(data.get("last_at", 0))
        due = data.get("due")
        if due is not None:
            self.env.timers.arm(self, int(due))
