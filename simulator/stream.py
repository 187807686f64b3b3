"""The message stream: a fleet, its faults and storms, turned into what devices publish, in order.

`generate(plan)` is a pure function of the plan: a heap of (time, priority, sequence) ordered actions,
per-device random streams seeded from strings (never `hash()`, never sets), timestamps from the
plan's start (never the wall clock). The same plan gives the same bytes, which is what makes a
recorded incident reproducible and `--seed` useful.

The stream is lazy and may be endless (the demo): memory is a heap entry per device.

JSONL (dry-run output, recordings, replay input): one object a line,
`{"offset": s, "topic": …, "payload": text}` or `"payload_b64"` for bytes that are not UTF-8, and
`"retain": true` when the message is retained.
"""

from __future__ import annotations

import base64
import datetime as dt
import heapq
import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from devices.dimming import DimmingPlan
from devices.location import LocationConfig
from devices.topics import device_topic
from simulator import malformed
from simulator.clock import FUTURE_LIMIT_S, SunClock
from simulator.errors import RecordingError
from simulator.faults import (
    DELIVERY_KINDS,
    WILL_DELAY_S,
    Fault,
    FaultIndex,
    Interval,
    merge,
    span,
)
from simulator.fleet import Fleet
from simulator.lamp import DEFAULT_DIMMING, CabinetSwitch, LampSim
from simulator.storm import Storm
from simulator.water import WaterSim

DEFAULT_PREFIX = "city/jining"
JITTER = 0.1  # report intervals vary ±10 %: devices drift, and a fleet must not report in lockstep

# Priorities among actions at the same millisecond: statuses and events before readings.
_P_STATUS, _P_EVENT, _P_READING = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publish. `offset_ms`: simulated time since the start of the run."""

    offset_ms: int
    topic: str
    payload: bytes
    retain: bool = False
    # The ingest rejection reasons this message is built to cause, one per refused reading (empty:
    # every reading in it must be accepted). Not part of the JSONL form.
    intent: tuple[str, ...] = field(default=(), compare=False)

    @property
    def offset_s(self) -> float:
        return self.offset_ms / 1000.0

    def to_jsonl(self) -> bytes:
        item: dict[str, Any] = {"offset": round(self.offset_ms / 1000.0, 3), "topic": self.topic}
        try:
            item["payload"] = self.payload.decode("utf-8")
        except UnicodeDecodeError:
            item["payload_b64"] = base64.b64encode(self.payload).decode("ascii")
        if self.retain:
            item["retain"] = True
        return orjson.dumps(item) + b"\n"

    @classmethod
    def from_jsonl(cls, line: bytes | str, *, where: str = "") -> Message:
        try:
            item = orjson.loads(line)
            offset = float(item["offset"])
            topic = item["topic"]
            if "payload_b64" in item:
                payload = base64.b64decode(item["payload_b64"], validate=True)
            else:
                payload = str(item["payload"]).encode("utf-8")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise RecordingError(f"{where}: not a recording line ({exc})") from exc
        if not isinstance(topic, str) or not math.isfinite(offset) or offset < 0:
            raise RecordingError(f"{where}: needs a topic and a finite offset >= 0")
        return cls(round(offset * 1000), topic, payload, bool(item.get("retain", False)))


@dataclass(slots=True)
class RunPlan:
    """Everything the stream depends on. Two equal plans give byte-identical streams.

    `time_scale` > 1 runs device physics, report intervals and fault times that much faster than
    the timestamps (the demo: live timestamps, a storm in minutes); lamps still follow the real sun.
    """

    fleet: Fleet
    start_ms: int
    duration_s: float | None  # None: endless
    seed: int = 1
    prefix: str = DEFAULT_PREFIX
    location: LocationConfig = field(default_factory=LocationConfig)
    faults: Sequence[Fault] = ()
    storms: Sequence[Storm] = ()
    dimming: DimmingPlan = DEFAULT_DIMMING
    time_scale: float = 1.0
    max_payload_bytes: int = 262_144
    water_params: dict[str, dict[str, float]] = field(default_factory=dict)
    announce: bool = True  # publish {"online": true} (retained) for every device at the start


def _status(online: bool, ts_ms: int) -> bytes:
    return orjson.dumps({"online": online, "ts": ts_ms})


MAX_ARRAY_READINGS = 500  # a gateway's upload page


def _items_payloads(items: list[bytes], limit: int) -> list[list[int]]:
    """Indexes of `items` grouped into arrays of at most `limit` bytes and MAX_ARRAY_READINGS."""
    groups: list[list[int]] = []
    size = 0
    for i, item in enumerate(items):
        need = len(item) + 1
        if not groups or len(groups[-1]) >= MAX_ARRAY_READINGS or size + need + 1 > limit:
            groups.append([])
            size = 1
        groups[-1].append(i)
        size += need
    return groups


def rfc3339(ts_ms: int, tz: ZoneInfo) -> str:
    """`ts` as an RFC 3339 string in the city's offset, millisecond precision."""
    when = dt.datetime.fromtimestamp(ts_ms / 1000, tz)
    return when.isoformat(timespec="milliseconds")


def generate(plan: RunPlan) -> Iterator[Message]:
    """The stream of `plan`, in time order (ties: statuses, events, readings; then push order)."""
    scale = plan.time_scale
    start = plan.start_ms
    end_ms = None if plan.duration_s is None else int(plan.duration_s * 1000)
    sun = SunClock(plan.location)
    tz = ZoneInfo(plan.location.timezone)
    index = FaultIndex(plan.faults)
    order = itertools.count()
    heap: list[tuple[int, int, int, tuple[Any, ...]]] = []

    def push(offset_ms: int, priority: int, action: tuple[Any, ...]) -> None:
        if end_ms is None or offset_ms <= end_ms:
            heapq.heappush(heap, (offset_ms, priority, next(order), action))

    def sim_s(offset_ms: int) -> float:
        return offset_ms / 1000.0 * scale

    def offset_of(t_s: float) -> int:
        return round(t_s / scale * 1000)

    def faults_at(ts_ms: int, *, device_id: str) -> list[Fault]:
        return index.active(device_id, sim_s(ts_ms - start))

    sims: dict[str, LampSim | WaterSim] = {}
    switches: dict[str, CabinetSwitch] = {}
    for device in plan.fleet.devices:
        rng = random.Random(f"{plan.seed}:phase:{device.device_id}")
        if device.kind == "lamp":
            cab = device.cabinet or device.device_id
            switch = switches.get(cab)
            if switch is None:
                switch = switches[cab] = CabinetSwitch.of(plan.seed, cab)
            sims[device.device_id] = LampSim(
                device, seed=plan.seed, sun=sun, dimming=plan.dimming, switch=switch
            )
        elif device.kind == "waterlevel":
            sims[device.device_id] = WaterSim(
                device,
                seed=plan.seed,
                storms=plan.storms,
                params=plan.water_params.get(device.device_id),
            )
        else:
            continue
        if plan.announce:
            push(0, _P_STATUS, ("status", device.device_id, True))
        first = rng.uniform(0.0, device.report_interval_s)
        push(offset_of(first), _P_READING, ("report", device.device_id, rng))

    kinds = {d.device_id: d.kind for d in plan.fleet.devices}
    delivery_rngs = {d: random.Random(f"{plan.seed}:deliver:{d}") for d in sims}
    # Buffers of the faults that hold readings back: (device, fault number) → [(body, device ts)].
    buffers: dict[tuple[str, int], list[tuple[Any, int]]] = {}
    held_events: dict[tuple[str, int], list[tuple[str, Any, int]]] = {}
    fault_no = {id(f): n for n, f in enumerate(plan.faults)}
    for fault in plan.faults:
        _schedule_fault(fault, fault_no[id(fault)], push, offset_of, plan.seed)
    _schedule_silences(index, push, offset_of)
    _schedule_events(plan.faults, index, push, offset_of)

    def topic_of(device_id: str, channel: str) -> str:
        return device_topic(plan.prefix, kinds[device_id], device_id, channel)

    def deliver(
        offset_ms: int, device_id: str, channel: str, body: dict[str, Any]
    ) -> Iterator[Message]:
        """What a device's message becomes on its way: skewed, late, doubled, batched, held."""
        t = sim_s(offset_ms)
        active = [
            f
            for f in index.by_device.get(device_id, ())
            if f.kind in DELIVERY_KINDS and f.active(t)
        ]
        as_text = False
        for f in active:
            if f.kind == "clock_skew":
                body["ts"] = int(body["ts"]) + round(f.number("by") * 1000)
            elif f.kind == "rfc3339_ts":
                as_text = True
        ts_ms = int(body["ts"])  # what the device's clock said, whatever the text form
        if as_text:
            body["ts"] = rfc3339(ts_ms, tz)
        for f in active:
            if f.kind == "gateway_down":
                key = (device_id, fault_no[id(f)])
                if channel == "telemetry":
                    buffers.setdefault(key, []).append((body, ts_ms))
                else:
                    held_events.setdefault(key, []).append((channel, body, ts_ms))
                return
        topic = topic_of(device_id, channel)
        payload: bytes | None = None
        held: list[tuple[Any, int]] = [(body, ts_ms)]
        if channel == "telemetry":
            for f in active:
                if f.kind == "mixed_array":
                    key = (device_id, fault_no[id(f)])
                    held = buffers.setdefault(key, [])
                    held.append((body, ts_ms))
                    if len(held) < int(f.number("size")) - int(f.number("bad")):
                        return
                    buffers[key] = []
                    mixed = _mixed_array(offset_ms, topic, held, f, kinds[device_id], start)
                    payload, bad = mixed.payload, mixed.intent
                    break
        if payload is None:
            payload, bad = orjson.dumps(body), ()
        rng = delivery_rngs[device_id]
        delay = 0
        for f in active:
            if f.kind == "out_of_order" and channel == "telemetry":
                delay = offset_of(rng.uniform(0.0, f.number("by")))
        copies: list[int] = []
        for f in active:
            if f.kind == "duplicate":
                copies += [offset_of(f.number("after"))] * int(f.number("copies"))
        for extra in [0, *copies]:
            at = offset_ms + delay + extra
            # Whether the ingest finds a reading "in the future" depends on when it arrives.
            late = [why for _, ts in held if (why := _future(ts, start + at))]
            message = Message(at, topic, payload, False, (*late, *bad))
            if at == offset_ms:
                yield message
            else:
                push(at, _P_READING, ("deliver", message))

    def report(offset_ms: int, device_id: str) -> Iterator[Message]:
        sim = sims[device_id]
        now_s = sim_s(offset_ms)
        ts = start + offset_ms
        if index.silent(device_id, now_s):
            if isinstance(sim, WaterSim):
                sim.advance(now_s)  # the water keeps rising while nobody is listening
            return
        if isinstance(sim, LampSim):
            body = sim.reading(ts, partial(faults_at, device_id=device_id))
        else:
            body = sim.reading(ts, now_s, index.active(device_id, now_s))
        yield from deliver(offset_ms, device_id, "telemetry", body)

    while heap:
        offset_ms, _, _, action = heapq.heappop(heap)
        ts = start + offset_ms
        what = action[0]
        if what == "report":
            _, device_id, rng = action
            yield from report(offset_ms, device_id)
            sim = sims[device_id]
            interval = (
                sim.interval_s() if isinstance(sim, WaterSim) else sim.device.report_interval_s
            )
            step = interval * rng.uniform(1 - JITTER, 1 + JITTER)
            push(offset_ms + max(1, offset_of(step)), _P_READING, action)
        elif what == "deliver":
            yield action[1]
        elif what == "status":
            _, device_id, online = action
            yield Message(
                offset_ms, topic_of(device_id, "status"), _status(online, ts), retain=True
            )
        elif what == "event":
            _, device_id, name, raised = action
            body = {"ts": ts, "event": name, "state": "raised" if raised else "cleared"}
            yield from deliver(offset_ms, device_id, "event", body)
        elif what == "battery":
            sim = sims[action[1]]
            if isinstance(sim, WaterSim):
                sim.battery_replaced()
        elif what == "seq_reset":
            sims[action[1]].seq = 0
        elif what == "reconnect":
            device_id = action[1]
            now_s = sim_s(offset_ms)
            cut_off = any(
                f.kind == "gateway_down" and f.active(now_s)
                for f in index.by_device.get(device_id, ())
            )
            if not index.silent(device_id, now_s) and not cut_off:
                yield Message(
                    offset_ms, topic_of(device_id, "status"), _status(True, ts), retain=True
                )
                yield from report(offset_ms, device_id)
        elif what == "flush":
            _, device_id, number, fault = action
            key = (device_id, number)
            held = buffers.pop(key, [])
            if fault.kind == "mixed_array":
                if held:
                    mixed = _mixed_array(
                        offset_ms,
                        topic_of(device_id, "telemetry"),
                        held,
                        fault,
                        kinds[device_id],
                        start,
                    )
                    late = tuple(why for _, t in held if (why := _future(t, ts)))
                    yield Message(offset_ms, mixed.topic, mixed.payload, False, late + mixed.intent)
                continue
            for channel, body, ts_ms in held_events.pop(key, []):
                why = _future(ts_ms, ts)
                yield Message(
                    offset_ms,
                    topic_of(device_id, channel),
                    orjson.dumps(body),
                    False,
                    (why,) if why else (),
                )
            if held:
                yield from _backlog(
                    offset_ms,
                    topic_of(device_id, "telemetry"),
                    held,
                    plan.max_payload_bytes,
                    start,
                )
        elif what == "bad_status":
            _, device_id, reason = action
            yield Message(
                offset_ms,
                topic_of(device_id, "status"),
                malformed.bad_status(reason, ts),
                False,
                (reason,),
            )
        elif what == "malformed":
            _, device_id, reason, seq = action
            topic, payload = malformed.build(
                reason,
                prefix=plan.prefix,
                kind=kinds[device_id],
                device_id=device_id,
                ts_ms=ts,
                seq=seq,
                max_payload_bytes=plan.max_payload_bytes,
            )
            yield Message(offset_ms, topic, payload, False, (reason,))


def _at(message: Message, offset_ms: int) -> Message:
    return Message(offset_ms, message.topic, message.payload, message.retain, message.intent)


def _future(ts_ms: int, now_ms: int) -> str | None:
    """The reason the ingest refuses a reading with `ts_ms` received at `now_ms`, if it does."""
    return "ts_in_future" if ts_ms - now_ms > FUTURE_LIMIT_S * 1000 else None


def _mixed_array(
    offset_ms: int,
    topic: str,
    held: list[tuple[Any, int]],
    fault: Fault,
    kind: str,
    start_ms: int,
) -> Message:
    """A gateway's array: the held good readings with `bad` broken ones among them."""
    reasons = fault.value("reason")
    assert isinstance(reasons, tuple)
    items: list[Any] = []
    intent: list[str] = []
    full = len(held) >= int(fault.number("size")) - int(fault.number("bad"))
    n_bad = int(fault.number("bad")) if full else min(int(fault.number("bad")), len(held))
    for body, _ in held:
        items.append(body)
    for j in range(n_bad):
        body, ts_ms = held[j % len(held)]
        first = body["seq"] if isinstance(body.get("seq"), int) else 0
        reason = reasons[(first + j) % len(reasons)]
        items.insert(min(len(items), 1 + 2 * j), malformed.bad_item(reason, body, kind, ts_ms))
        intent.append(reason)
    return Message(offset_ms, topic, orjson.dumps(items), False, tuple(intent))


def _backlog(
    offset_ms: int, topic: str, held: list[tuple[Any, int]], limit: int, start_ms: int
) -> Iterator[Message]:
    """A gateway's backlog as arrays no larger than the service takes (contract §1)."""
    encoded = [orjson.dumps(body) for body, _ in held]
    now_ms = start_ms + offset_ms
    for group in _items_payloads(encoded, limit):
        payload = b"[" + b",".join(encoded[i] for i in group) + b"]"
        intent = tuple(why for i in group if (why := _future(held[i][1], now_ms)))
        yield Message(offset_ms, topic, payload, False, intent)


def _schedule_silences(index: FaultIndex, push: Any, offset_of: Any) -> None:
    """The emulated last wills: one per outage (overlapping faults merged), none for a blip.

    The broker publishes a will only once it notices the dead connection (WILL_DELAY_S); a device
    back before then never looked offline, so nothing is published and nothing is left behind.
    """
    for device_id, spans in index.silences.items():
        for a, b in spans:
            if b - a <= WILL_DELAY_S:
                continue
            push(offset_of(a + WILL_DELAY_S), _P_STATUS, ("status", device_id, False))
            if math.isfinite(b):
                push(offset_of(b), _P_STATUS, ("status", device_id, True))


def _schedule_events(faults: Sequence[Fault], index: FaultIndex, push: Any, offset_of: Any) -> None:
    """Raised/cleared events, one pair per merged span of each (device, event name).

    A device cannot send while it is silent: a raise falling in an outage goes out when it is
    back (if the fault still holds), a clear likewise; the dying gasp of a cabinet_out is the one
    message sent at the very start of the outage.
    """
    spans: dict[tuple[str, str], list[Interval]] = {}
    gasps: set[tuple[str, float]] = set()
    for fault in faults:
        name = None
        if fault.kind == "lamp_failure":
            name = "lampFailure"
        elif fault.kind == "event":
            name = str(fault.value("name"))
        elif fault.kind == "cabinet_out" and fault.value("gasp"):
            name = "supplyLoss"
        if name is None:
            continue
        for device_id in fault.devices:
            spans.setdefault((device_id, name), []).append(span(fault))
            if fault.kind == "cabinet_out":
                gasps.add((device_id, fault.at_s))
    for (device_id, name), items in spans.items():
        for a, b in merge(items):
            raise_at = a if (device_id, a) in gasps else index.audible_from(device_id, a)
            if raise_at >= b:
                continue
            push(offset_of(raise_at), _P_EVENT, ("event", device_id, name, True))
            if math.isfinite(b):
                clear_at = index.audible_from(device_id, b)
                if math.isfinite(clear_at):
                    push(offset_of(clear_at), _P_EVENT, ("event", device_id, name, False))


def _schedule_fault(fault: Fault, number: int, push: Any, offset_of: Any, seed: int) -> None:
    """The messages a fault causes by itself (beyond changed readings and events)."""
    at = offset_of(fault.at_s)
    end = None if fault.end_s is None else offset_of(fault.end_s)
    rng = random.Random(f"{seed}:fault:{number}")
    for device_id in fault.devices:
        if fault.kind == "low_battery" and end is not None:
            push(end, _P_EVENT, ("battery", device_id))
        elif fault.kind in {"gateway_down", "mixed_array"} and end is not None:
            push(end, _P_EVENT, ("flush", device_id, number, fault))
        elif fault.kind == "seq_reset":
            every = fault.number("every")
            t = fault.at_s
            for _ in range(10_000):  # an endless run (the demo) reboots often enough with this
                push(offset_of(t), _P_STATUS, ("seq_reset", device_id))
                t += every
                if every <= 0 or (fault.end_s is not None and t >= fault.end_s):
                    break
        elif fault.kind == "reconnect_storm":
            push(
                at + offset_of(rng.uniform(0.0, fault.number("within"))),
                _P_STATUS,
                ("reconnect", device_id),
            )
        elif fault.kind == "bad_status":
            reasons = fault.value("reason")
            assert isinstance(reasons, tuple)
            for k, reason in enumerate(reasons):
                push(at + k * offset_of(1.0), _P_EVENT, ("bad_status", device_id, reason))
        elif fault.kind == "malformed":
            reasons = fault.value("reason")
            assert isinstance(reasons, tuple)
            count = int(fault.number("count"))
            every = offset_of(fault.number("every"))
            n = 0
            for k in range(count):
                for r in reasons:
                    push(at + n * every, _P_EVENT, ("malformed", device_id, r, 900_000 + k))
                    n += 1
