"""Faults: what can go wrong with a device, when, and for how long.

A fault is given on the command line (`--fault KIND[:TARGET][@AT][+FOR][,key=value…]`) or in a
scenario file. AT and FOR are durations from the start (`2h`, `90m`) or, for AT, a local clock time
(`23:30`, the first one at or after the start). A missing TARGET is picked from the fleet by seed.

The devices' own reactions (an event raised, a last will, a reading that drifts) are in lamp.py,
water.py and stream.py; this module only says who, what and when.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from simulator.clock import parse_duration
from simulator.errors import FaultSpecError, OptionError
from simulator.fleet import Fleet

# kind → what it targets: "lamp", "waterlevel", "cabinet" or "device" (any kind)
FAULT_KINDS: dict[str, str] = {
    "lamp_failure": "lamp",  # driver dies: lampFailure raised, relay opens, standby power only
    "day_burning": "lamp",  # relay stuck on: lit in daylight
    "low_power": "lamp",  # half the LED strings dead: draws `factor` × expected
    "over_voltage": "lamp",  # feeder tap too high: `volts` (default 246 V)
    "under_voltage": "lamp",  # long feeder, overloaded transformer: `volts` (default 190 V)
    "poor_power_factor": "lamp",  # failed PFC capacitor: `pf` (default 0.42)
    "cabinet_out": "cabinet",  # breaker trips: every lamp raises supplyLoss and drops off the air
    "device_offline": "device",  # modem or power dead: its last will says offline, then silence
    "stuck_sensor": "waterlevel",  # fouled probe: depth stuck at `depth_cm` (default 3.2)
    "low_battery": "waterlevel",  # battery sags to `level` % (default 15) within the hour
    "event": "device",  # any self-detected fault: `name` raised (leakageDetected, doorOpen, …)
    "malformed": "device",  # a broken message of `reason` (or `all` of them), `count` times
}
ALIASES = {
    "poor_pf": "poor_power_factor",
    "offline": "device_offline",
    "stuck": "stuck_sensor",
    "cabinet": "cabinet_out",
    "supply_loss": "cabinet_out",
    "battery_low": "low_battery",
}
# Faults during which the device sends nothing (its will says offline).
SILENT_KINDS = frozenset({"cabinet_out", "device_offline"})
# How long after a device dies the broker publishes its will (keepalive 60 s × 1.5).
WILL_DELAY_S = 90.0

_SPEC_RE = re.compile(
    r"^(?P<kind>[a-z_]+)(?::(?P<target>[^@+,]+))?(?:@(?P<at>[^+,]+))?(?:\+(?P<for>[^,]+))?"
    r"(?P<params>(?:,[A-Za-z_]+=[^,]*)*)$"
)
_CLOCK_RE = re.compile(r"^(\d{1,2}):(\d{2})$")


@dataclass(frozen=True, slots=True)
class Fault:
    """A resolved fault. `devices` are the affected devices (a cabinet's lamps for cabinet_out)."""

    kind: str
    target: str  # device id, or cabinet id for cabinet_out
    at_s: float  # simulated seconds from the start
    for_s: float | None  # None: until the end of the run
    devices: tuple[str, ...]
    params: dict[str, str] = field(default_factory=dict)
    expect: tuple[str, ...] = ()  # rule ids this fault should raise (scenarios)

    @property
    def end_s(self) -> float | None:
        return None if self.for_s is None else self.at_s + self.for_s

    def active(self, t_s: float) -> bool:
        end = self.end_s
        return self.at_s <= t_s and (end is None or t_s < end)

    def number(self, name: str, default: float) -> float:
        text = self.params.get(name)
        if text is None:
            return default
        try:
            return float(text)
        except ValueError as exc:
            raise FaultSpecError(f"fault {self.kind}: {name}={text!r} is not a number") from exc


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A fault as written (CLI or scenario), before the fleet and start are known."""

    kind: str
    target: str | None = None
    at: str = "0s"
    for_: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    expect: tuple[str, ...] = ()


def canonical_kind(kind: str) -> str:
    name = ALIASES.get(kind, kind)
    if name not in FAULT_KINDS:
        raise FaultSpecError(f"unknown fault {kind!r}; known: {', '.join(FAULT_KINDS)}")
    return name


def parse_fault_spec(text: str) -> FaultSpec:
    """`KIND[:TARGET][@AT][+FOR][,key=value…]`, e.g. `cabinet_out:C-GHL-02@23:30+90m`."""
    match = _SPEC_RE.match(text.strip())
    if match is None:
        raise FaultSpecError(
            f"--fault {text!r}: use KIND[:TARGET][@AT][+FOR][,key=value], "
            "e.g. lamp_failure:L-GHL-003@2h or cabinet_out@23:30+90m"
        )
    params: dict[str, str] = {}
    for part in (match.group("params") or "").split(",")[1:]:
        key, _, value = part.partition("=")
        params[key] = value
    return FaultSpec(
        kind=canonical_kind(match.group("kind")),
        target=match.group("target"),
        at=match.group("at") or "0s",
        for_=match.group("for"),
        params=params,
    )


def parse_at(text: str, start_ms: int, tz: str) -> float:
    """An offset (`2h`) or the first local clock time (`23:30`) at or after the start, in s."""
    match = _CLOCK_RE.match(text.strip())
    if match is None:
        try:
            return parse_duration(text, option="fault")
        except OptionError as exc:
            raise FaultSpecError(str(exc)) from exc
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23 or minute > 59:
        raise FaultSpecError(f"fault time {text!r} is not a clock time")
    start = dt.datetime.fromtimestamp(start_ms / 1000, ZoneInfo(tz))
    when = start.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if when < start:
        when += dt.timedelta(days=1)
    return (when - start).total_seconds()


def resolve_faults(
    specs: Sequence[FaultSpec], fleet: Fleet, *, start_ms: int, tz: str, seed: int
) -> list[Fault]:
    """Fix each spec's target, time and devices; unknown targets fail with the device named."""
    by_id = {d.device_id: d for d in fleet.devices}
    cabinets = fleet.cabinets()
    taken: set[str] = set()
    out: list[Fault] = []
    for index, spec in enumerate(specs):
        kind = canonical_kind(spec.kind)
        wants = FAULT_KINDS[kind]
        target = spec.target
        if target is None or target in {"", "auto"}:
            target = _pick(kind, wants, fleet, cabinets, taken, random.Random(f"{seed}:{index}"))
        taken.add(target)
        if wants == "cabinet":
            if target not in cabinets:
                raise FaultSpecError(f"fault {kind}: no cabinet {target!r} in the fleet")
            devices = tuple(d.device_id for d in cabinets[target])
        else:
            device = by_id.get(target)
            if device is None:
                raise FaultSpecError(f"fault {kind}: no device {target!r} in the fleet")
            if wants in {"lamp", "waterlevel"} and device.kind != wants:
                raise FaultSpecError(f"fault {kind} needs a {wants}; {target} is a {device.kind}")
            devices = (target,)
        at_s = parse_at(spec.at, start_ms, tz)
        for_s = None
        if spec.for_ is not None:
            try:
                for_s = parse_duration(spec.for_, option="fault")
            except OptionError as exc:
                raise FaultSpecError(str(exc)) from exc
        out.append(Fault(kind, target, at_s, for_s, devices, dict(spec.params), spec.expect))
    return out


def _pick(
    kind: str,
    wants: str,
    fleet: Fleet,
    cabinets: Mapping[str, object],
    taken: set[str],
    rng: random.Random,
) -> str:
    if wants == "cabinet":
        choices = [c for c in cabinets if c not in taken]
    else:
        choices = [
            d.device_id
            for d in fleet.devices
            if d.device_id not in taken and (wants == "device" or d.kind == wants)
        ]
    if not choices:
        raise FaultSpecError(f"fault {kind}: no {wants} left in the fleet to give it to")
    return rng.choice(choices)


class FaultIndex:
    """Faults by device, for the per-reading question "what is wrong with me now?"."""

    def __init__(self, faults: Iterable[Fault]) -> None:
        self.by_device: dict[str, list[Fault]] = {}
        for fault in faults:
            for device_id in fault.devices:
                self.by_device.setdefault(device_id, []).append(fault)

    def active(self, device_id: str, t_s: float) -> list[Fault]:
        faults = self.by_device.get(device_id)
        if not faults:
            return []
        return [f for f in faults if f.active(t_s) and f.kind not in {"event", "malformed"}]

    def silent(self, device_id: str, t_s: float) -> bool:
        return any(f.kind in SILENT_KINDS for f in self.active(device_id, t_s))
