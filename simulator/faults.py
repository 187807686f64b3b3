"""Faults: what can go wrong with a device, when, and for how long.

A fault is given on the command line (`--fault KIND[:TARGET][@AT][+FOR][,key=value…]`) or in a
scenario file. AT and FOR are durations from the start (`2h`, `90m`) or, for AT, a local clock time
(`23:30`, the first one at or after the start). A missing TARGET is picked from the fleet by seed.
Every parameter is checked when the fault is resolved, before anything is sent: a run never fails
hours in on a typo.

A TARGET is a device id for device faults, a cabinet id for `cabinet_out`, and for the group faults
(`gateway_down`, `reconnect_storm`) a selector: a road name, a cabinet id, a device id, several of
those joined by `|`, or `all`.

The devices' own reactions (events, last wills, readings, what a gateway does with its backlog) are
in lamp.py, water.py and stream.py; this module only says who, what and when.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from devices.models import EVENT_NAME_RE
from simulator.clock import parse_duration
from simulator.errors import FaultSpecError, OptionError
from simulator.fleet import Fleet
from simulator.malformed import ARRAY_REASONS, DEVICE_REASONS, STATUS_REASONS

# kind → (what it targets, what it does, an example). Targets: "lamp", "waterlevel", "cabinet",
# "device" (any kind) or "group" (a selector, see above).
FAULT_KINDS: dict[str, tuple[str, str, str]] = {
    "lamp_failure": (
        "lamp",
        "driver dies: lampFailure raised, relay opens, standby power only",
        "lamp_failure:L-GHL-012@22:10",
    ),
    "day_burning": ("lamp", "relay stuck on: lit in daylight", "day_burning:L-TBL-010@0s+2h"),
    "low_power": (
        "lamp",
        "half the LED strings dead: draws factor (0.05-0.95, default 0.5) x expected",
        "low_power@20:30,factor=0.5",
    ),
    "over_voltage": (
        "lamp",
        "feeder tap too high: volts (231-300, default 246)",
        "over_voltage@21:00+2h,volts=246",
    ),
    "under_voltage": (
        "lamp",
        "long feeder, overloaded transformer: volts (150-215, default 190)",
        "under_voltage@19:00+1h,volts=190",
    ),
    "poor_power_factor": (
        "lamp",
        "failed PFC capacitor: pf (0.1-0.85, default 0.42)",
        "poor_pf@20:00,pf=0.42",
    ),
    "cabinet_out": (
        "cabinet",
        "breaker trips: supplyLoss from every lamp (gasp=false: none), then silence and wills",
        "cabinet_out:C-YHL-02@23:30+90m",
    ),
    "device_offline": (
        "device",
        "modem or power dead: silence; the emulated will says offline after 90 s",
        "offline:L-HJL-007@01:00+2h",
    ),
    "stuck_sensor": (
        "waterlevel",
        "fouled probe: depth stuck at depth_cm (default 3.2)",
        "stuck:W-HXL-04@18:30,depth_cm=3.2",
    ),
    "low_battery": (
        "waterlevel",
        "failing pack: battery sags to level % (0-19, default 15) over `over` (default 2h)",
        "low_battery@03:00,level=15,over=2h",
    ),
    "event": (
        "device",
        "a self-detected fault: event `name` ([A-Za-z0-9_], default doorOpen) raised, then cleared",
        "event:L-YHL-010@17:40+2h,name=leakageDetected",
    ),
    "malformed": (
        "device",
        "broken messages of `reason` (one of the ingest's reasons, A|B, or all), count times",
        "malformed:W-JAQ-01@1h,reason=not_utf8|bad_ts,count=3",
    ),
    "clock_skew": (
        "device",
        "the device clock runs `by` ahead (+) or behind (-); beyond +5m: ts_in_future",
        "clock_skew:L-GHL-003@1h+2h,by=+4m59s",
    ),
    "duplicate": (
        "device",
        "at-least-once redelivery: every message sent `copies` more times (default 1)",
        "duplicate:W-JAQ-01@1h+30m,copies=2",
    ),
    "out_of_order": (
        "device",
        "delivery delayed by up to `by` (default 10m): readings arrive shuffled",
        "out_of_order:W-JAQ-01@1h+1h,by=15m",
    ),
    "rfc3339_ts": (
        "device",
        "ts written as an RFC 3339 string with the city's offset instead of ms",
        "rfc3339_ts:L-GHL-001@0s+1h",
    ),
    "seq_reset": (
        "device",
        "a reboot: seq starts again from 1 (every `every` if given)",
        "seq_reset:L-GHL-001@2h,every=3h",
    ),
    "reconnect_storm": (
        "group",
        "every device of the selector (default all) reconnects within `within` (default 10s)",
        "reconnect_storm:all@2h,within=10s",
    ),
    "mixed_array": (
        "device",
        "a gateway batching `size` readings per array (default 6), `bad` of them broken (default 2)",
        "mixed_array:W-JAQ-01@1h+1h,size=6,bad=2",
    ),
    "bad_status": (
        "device",
        "status payloads the ingest must refuse (not retained: they leave nothing behind)",
        "bad_status:L-GHL-001@1h",
    ),
    "gateway_down": (
        "group",
        "a gateway's uplink is down: its devices buffer readings, upload them as arrays at the end",
        "gateway_down:济安桥路@22:00+5h",
    ),
}
ALIASES = {
    "poor_pf": "poor_power_factor",
    "offline": "device_offline",
    "stuck": "stuck_sensor",
    "cabinet": "cabinet_out",
    "supply_loss": "cabinet_out",
    "battery_low": "low_battery",
    "skew": "clock_skew",
    "gateway": "gateway_down",
}
# Faults during which the device sends nothing (its will says offline).
SILENT_KINDS = frozenset({"cabinet_out", "device_offline"})
# Faults that change how a device's messages are delivered, not what it measures.
DELIVERY_KINDS = frozenset(
    {
        "clock_skew",
        "duplicate",
        "out_of_order",
        "rfc3339_ts",
        "mixed_array",
        "gateway_down",
    }
)
# Faults that cause messages by themselves and never change a reading.
ONE_OFF_KINDS = frozenset({"event", "malformed", "seq_reset", "reconnect_storm", "bad_status"})
# How long after a device dies the broker publishes its will (keepalive 60 s × 1.5).
WILL_DELAY_S = 90.0


def _number(lo: float, hi: float) -> Callable[[str], object]:
    def check(text: str) -> object:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not lo <= value <= hi:  # also refuses NaN
            raise ValueError(f"{text} is outside {lo:g} … {hi:g}")
        return value

    return check


def _count(lo: int, hi: int) -> Callable[[str], object]:
    def check(text: str) -> object:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise ValueError(f"{text} is outside {lo} … {hi}")
        return value

    return check


def _duration(lo_s: float, hi_s: float) -> Callable[[str], object]:
    def check(text: str) -> object:
        try:
            value = parse_duration(text, option="fault")
        except OptionError:
            raise ValueError(f"{text!r} is not a duration like 10s, 5m, 2h") from None
        if not lo_s <= value <= hi_s:
            raise ValueError(f"{text} is outside {lo_s:g} s … {hi_s:g} s")
        return value

    return check


def _signed_duration(text: str) -> object:
    raw = text.strip()
    sign = -1.0 if raw.startswith("-") else 1.0
    try:
        value = parse_duration(raw.lstrip("+-"), option="fault")
    except OptionError:
        raise ValueError(f"{text!r} is not a signed duration like +4m or -2h") from None
    if value > 30 * 86400:
        raise ValueError(f"{text} is more than 30 days")
    return sign * value


def _bool(text: str) -> object:
    if text.lower() in {"true", "yes", "1"}:
        return True
    if text.lower() in {"false", "no", "0"}:
        return False
    raise ValueError(f"{text!r} is not true or false")


def _event_name(text: str) -> object:
    if not EVENT_NAME_RE.match(text):
        raise ValueError(f"{text!r} is not an event name ([A-Za-z0-9_], 1-64 characters)")
    return text


def _reasons(known: Sequence[str]) -> Callable[[str], object]:
    def check(text: str) -> object:
        if text == "all":
            return tuple(known)
        items = tuple(text.split("|"))
        for item in items:
            if item not in known:
                raise ValueError(f"{item!r} is not one of {', '.join(known)} (or all)")
        return items

    return check


# kind → parameter → (check and convert, default as text)
PARAMS: dict[str, dict[str, tuple[Callable[[str], object], str]]] = {
    "lamp_failure": {},
    "day_burning": {},
    "low_power": {"factor": (_number(0.05, 0.95), "0.5")},
    "over_voltage": {"volts": (_number(231, 300), "246")},
    "under_voltage": {"volts": (_number(150, 215), "190")},
    "poor_power_factor": {"pf": (_number(0.1, 0.85), "0.42")},
    "cabinet_out": {"gasp": (_bool, "true")},
    "device_offline": {},
    "stuck_sensor": {"depth_cm": (_number(0, 500), "3.2")},
    "low_battery": {"level": (_number(0, 19), "15"), "over": (_duration(0, 30 * 86400), "2h")},
    "event": {"name": (_event_name, "doorOpen")},
    "malformed": {
        "reason": (_reasons(DEVICE_REASONS), "all"),
        "count": (_count(1, 10_000), "1"),
        "every": (_duration(0.001, 86400), "1s"),
        "every_s": (_number(0.001, 86400), "1"),
    },
    "clock_skew": {"by": (_signed_duration, "+4m")},
    "duplicate": {"copies": (_count(1, 10), "1"), "after": (_duration(0, 3600), "0s")},
    "out_of_order": {"by": (_duration(1, 86400), "10m")},
    "rfc3339_ts": {},
    "seq_reset": {"every": (_duration(60, 30 * 86400), "0s")},
    "reconnect_storm": {"within": (_duration(0, 3600), "10s")},
    "mixed_array": {
        "size": (_count(2, 100), "6"),
        "bad": (_count(1, 99), "2"),
        "reason": (_reasons(ARRAY_REASONS), "all"),
    },
    "bad_status": {"reason": (_reasons(STATUS_REASONS), "all")},
    "gateway_down": {},
}
# seq_reset's default "every" of 0 s means "once"; the check above would refuse it as text.
_ZERO_OK = {("seq_reset", "every")}


def validate_params(kind: str, params: Mapping[str, str]) -> dict[str, object]:
    """Every parameter of `kind`, checked and converted, defaults filled in."""
    known = PARAMS[kind]
    for name in params:
        if name not in known:
            allowed = ", ".join(known) or "none"
            raise FaultSpecError(f"fault {kind}: unknown parameter {name!r} (allowed: {allowed})")
    out: dict[str, object] = {}
    for name, (check, default) in known.items():
        text = params.get(name, default)
        if (kind, name) in _ZERO_OK and parse_duration(text or "0", option="fault") == 0:
            out[name] = 0.0
            continue
        try:
            out[name] = check(str(text))
        except ValueError as exc:
            raise FaultSpecError(f"fault {kind}: {name}={text}: {exc}") from None
    if kind == "mixed_array" and int(out["bad"]) >= int(out["size"]):  # type: ignore[call-overload]
        raise FaultSpecError(
            f"fault {kind}: bad={out['bad']} must be smaller than size={out['size']}"
        )
    if kind == "malformed" and "every_s" in params and "every" not in params:
        out["every"] = out["every_s"]
    return out


_SPEC_RE = re.compile(
    r"^(?P<kind>[a-z][a-z0-9_]*)(?::(?P<target>[^@+,]+))?(?:@(?P<at>[^+,]+))?(?:\+(?P<for>[^,]+))?"
    r"(?P<params>(?:,[A-Za-z_]+=[^,]*)*)$"
)
_CLOCK_RE = re.compile(r"^(\d{1,2}):(\d{2})$")


@dataclass(frozen=True, slots=True)
class Fault:
    """A resolved fault. `devices` are the affected devices (a cabinet's lamps for cabinet_out).

    `values` holds every parameter of the kind, checked and converted, defaults filled in.
    """

    kind: str
    target: str  # device id, cabinet id, or a group selector
    at_s: float  # simulated seconds from the start
    for_s: float | None  # None: until the end of the run
    devices: tuple[str, ...]
    params: dict[str, str] = field(default_factory=dict)
    expect: tuple[str, ...] = ()  # rule ids this fault should raise (scenarios)
    values: dict[str, object] = field(default_factory=dict, compare=False)

    @property
    def end_s(self) -> float | None:
        return None if self.for_s is None else self.at_s + self.for_s

    def active(self, t_s: float) -> bool:
        end = self.end_s
        return self.at_s <= t_s and (end is None or t_s < end)

    def number(self, name: str, default: float | None = None) -> float:
        value = self.values.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if default is None:
            raise KeyError(f"fault {self.kind} has no parameter {name!r}")
        return default

    def value(self, name: str) -> object:
        return self.values[name]


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
    specs: Sequence[FaultSpec],
    fleet: Fleet,
    *,
    start_ms: int,
    tz: str,
    seed: int,
    duration_s: float | None = None,
) -> list[Fault]:
    """Fix each spec's target, time, devices and parameters; anything wrong fails here, naming it.

    With `duration_s`, a fault that would start after the run's end is refused too.
    """
    by_id = {d.device_id: d for d in fleet.devices}
    cabinets = fleet.cabinets()
    taken: set[str] = set()
    out: list[Fault] = []
    for index, spec in enumerate(specs):
        kind = canonical_kind(spec.kind)
        wants = FAULT_KINDS[kind][0]
        values = validate_params(kind, spec.params)
        target = spec.target
        if wants == "group":
            if target is None or target in {"", "auto"}:
                rng = random.Random(f"{seed}:{index}")
                target = "all" if kind == "reconnect_storm" else _pick_road(fleet, rng)
            devices = select_devices(target, fleet)
        else:
            if target is None or target in {"", "auto"}:
                rng = random.Random(f"{seed}:{index}")
                target = _pick(kind, wants, fleet, cabinets, taken, rng)
            taken.add(target)
            if wants == "cabinet":
                if target not in cabinets:
                    raise FaultSpecError(f"fault {kind}: no cabinet {target!r} in the fleet")
                devices = tuple(d.device_id for d in cabinets[target])
            else:
                device = by_id.get(target)
                if device is None:
                    raise FaultSpecError(f"fault {kind}: no device {target!r} in the fleet")
                if wants != "device" and device.kind != wants:
                    raise FaultSpecError(
                        f"fault {kind} needs a {wants}; {target} is a {device.kind}"
                    )
                devices = (target,)
        at_s = parse_at(spec.at, start_ms, tz)
        for_s = None
        if spec.for_ is not None:
            try:
                for_s = parse_duration(spec.for_, option="fault")
            except OptionError as exc:
                raise FaultSpecError(str(exc)) from exc
            if for_s <= 0:
                raise FaultSpecError(f"fault {kind}: +{spec.for_} must be longer than 0")
        if duration_s is not None and at_s >= duration_s:
            raise FaultSpecError(
                f"fault {kind}@{spec.at} starts {at_s / 3600:.2f} h in, after the run's end "
                f"({duration_s / 3600:.2f} h)"
            )
        end_s = None if for_s is None else at_s + for_s
        if kind == "gateway_down" and for_s is None:
            raise FaultSpecError(
                f"fault {kind} needs +FOR (when the uplink comes back), e.g. gateway_down:"
                f"{target}@22:00+5h"
            )
        if kind == "gateway_down" and duration_s is not None and (end_s or 0) > duration_s:
            raise FaultSpecError(
                f"fault {kind}: the uplink comes back after the run's end, so the backlog "
                "would never be uploaded; end it within the run"
            )
        out.append(
            Fault(kind, target, at_s, for_s, devices, dict(spec.params), spec.expect, values)
        )
    return out


def select_devices(selector: str, fleet: Fleet) -> tuple[str, ...]:
    """A group selector → device ids in fleet order: `all`, road names, cabinets, ids (`A|B`)."""
    if selector == "all":
        return tuple(d.device_id for d in fleet.devices)
    wanted: set[str] = set()
    cabinets = fleet.cabinets()
    by_id = {d.device_id for d in fleet.devices}
    roads: dict[str, list[str]] = {}
    for d in fleet.devices:
        if d.road:
            roads.setdefault(d.road, []).append(d.device_id)
    for part in selector.split("|"):
        name = part.strip()
        if name in by_id:
            wanted.add(name)
        elif name in cabinets:
            wanted.update(d.device_id for d in cabinets[name])
        elif name in roads:
            wanted.update(roads[name])
        else:
            raise FaultSpecError(
                f"no device, cabinet or road {name!r} in the fleet (selector {selector!r})"
            )
    return tuple(d.device_id for d in fleet.devices if d.device_id in wanted)


def _pick_road(fleet: Fleet, rng: random.Random) -> str:
    roads = sorted({d.road for d in fleet.devices if d.road})
    if not roads:
        raise FaultSpecError("no road in the fleet to pick; name the devices (A|B)")
    return rng.choice(roads)


def _pick(
    kind: str,
    wants: str,
    fleet: Fleet,
    cabinets: Mapping[str, object],
    taken: set[str],
    rng: random.Random,
) -> str:
    if wants == "cabinet":
        fitting = list(cabinets)
    else:
        fitting = [d.device_id for d in fleet.devices if wants == "device" or d.kind == wants]
    # Each fault its own device while there are enough; then they share.
    choices = [c for c in fitting if c not in taken] or fitting
    if not choices:
        raise FaultSpecError(f"fault {kind}: no {wants} in the fleet to give it to")
    return rng.choice(choices)


Interval = tuple[float, float]  # [start, end) in simulated seconds; end may be math.inf


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Overlapping or touching intervals joined: two faults that overlap act as one."""
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def span(fault: Fault) -> Interval:
    end = fault.end_s
    return fault.at_s, math.inf if end is None else end


class FaultIndex:
    """Faults by device, for the per-reading question "what is wrong with me now?".

    Silence (cabinet_out, device_offline) is kept as merged intervals per device, so overlapping
    faults give one outage with one will and one return, never a will left behind a live device.
    """

    def __init__(self, faults: Iterable[Fault]) -> None:
        self.by_device: dict[str, list[Fault]] = {}
        silences: dict[str, list[Interval]] = {}
        for fault in faults:
            for device_id in fault.devices:
                self.by_device.setdefault(device_id, []).append(fault)
                if fault.kind in SILENT_KINDS:
                    silences.setdefault(device_id, []).append(span(fault))
        self.silences = {d: merge(spans) for d, spans in silences.items()}

    def active(self, device_id: str, t_s: float) -> list[Fault]:
        """The faults that change this device's readings at `t_s`."""
        faults = self.by_device.get(device_id)
        if not faults:
            return []
        return [f for f in faults if f.active(t_s) and f.kind not in ONE_OFF_KINDS]

    def silent(self, device_id: str, t_s: float) -> bool:
        return any(a <= t_s < b for a, b in self.silences.get(device_id, ()))

    def audible_from(self, device_id: str, t_s: float) -> float:
        """The first time at or after `t_s` when the device can send again (inf: never)."""
        for a, b in self.silences.get(device_id, ()):
            if a <= t_s < b:
                return b
        return t_s
