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
import heapq
import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import orjson

from devices.location import LocationConfig
from devices.topics import device_topic
from simulator import malformed
from simulator.clock import SunClock
from simulator.errors import RecordingError
from simulator.faults import WILL_DELAY_S, Fault, FaultIndex
from simulator.fleet import Fleet
from simulator.lamp import DEFAULT_DIMMING, DimStep, LampSim
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
    dimming: tuple[DimStep, ...] = DEFAULT_DIMMING
    time_scale: float = 1.0
    max_payload_bytes: int = 262_144
    water_params: dict[str, dict[str, float]] = field(default_factory=dict)
    announce: bool = True  # publish {"online": true} (retained) for every device at the start


def _status(online: bool, ts_ms: int) -> bytes:
    return orjson.dumps({"online": online, "ts": ts_ms})


def _event(name: str, raised: bool, ts_ms: int) -> bytes:
    return orjson.dumps({"ts": ts_ms, "event": name, "state": "raised" if raised else "cleared"})


def generate(plan: RunPlan) -> Iterator[Message]:
    """The stream of `plan`, in time order (ties: statuses, events, readings; then fleet order)."""
    scale = plan.time_scale
    start = plan.start_ms
    end_ms = None if plan.duration_s is None else int(plan.duration_s * 1000)
    sun = SunClock(plan.location)
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
    cabinet_rngs: dict[str, random.Random] = {}
    for device in plan.fleet.devices:
        rng = random.Random(f"{plan.seed}:phase:{device.device_id}")
        if device.kind == "lamp":
            cab = device.cabinet or device.device_id
            cab_rng = cabinet_rngs.setdefault(cab, random.Random(f"{plan.seed}:cabinet:{cab}"))
            sims[device.device_id] = LampSim(
                device, seed=plan.seed, sun=sun, dimming=plan.dimming, cabinet_rng=cab_rng
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
    for fault in plan.faults:
        _schedule_fault(fault, push, offset_of)

    while heap:
        offset_ms, _, _, action = heapq.heappop(heap)
        ts = start + offset_ms
        what = action[0]
        if what == "report":
            _, device_id, rng = action
            sim = sims[device_id]
            now_s = sim_s(offset_ms)
            if not index.silent(device_id, now_s):
                if isinstance(sim, LampSim):
                    body = sim.reading(ts, partial(faults_at, device_id=device_id))
                else:
                    body = sim.reading(ts, now_s, index.active(device_id, now_s))
                topic = device_topic(plan.prefix, kinds[device_id], device_id, "telemetry")
                yield Message(offset_ms, topic, orjson.dumps(body))
            elif isinstance(sim, WaterSim):
                sim.advance(now_s)  # the water keeps rising while nobody is listening
            interval = (
                sim.interval_s() if isinstance(sim, WaterSim) else sim.device.report_interval_s
            )
            step = interval * rng.uniform(1 - JITTER, 1 + JITTER)
            push(offset_ms + max(1, offset_of(step)), _P_READING, action)
        elif what == "status":
            _, device_id, online = action
            topic = device_topic(plan.prefix, kinds[device_id], device_id, "status")
            yield Message(offset_ms, topic, _status(online, ts), retain=True)
        elif what == "event":
            _, device_id, name, raised = action
            topic = device_topic(plan.prefix, kinds[device_id], device_id, "event")
            yield Message(offset_ms, topic, _event(name, raised, ts))
        elif what == "battery":
            sim = sims[action[1]]
            if isinstance(sim, WaterSim):
                sim.battery_replaced()
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
            yield Message(offset_ms, topic, payload)


def _schedule_fault(fault: Fault, push: Any, offset_of: Any) -> None:
    """The messages a fault causes by itself (beyond changed readings): events, wills, junk."""
    at = offset_of(fault.at_s)
    end = None if fault.end_s is None else offset_of(fault.end_s)
    will = offset_of(fault.at_s + WILL_DELAY_S)
    for device_id in fault.devices:
        if fault.kind == "lamp_failure":
            push(at, _P_EVENT, ("event", device_id, "lampFailure", True))
            if end is not None:
                push(end, _P_EVENT, ("event", device_id, "lampFailure", False))
        elif fault.kind == "event":
            name = fault.params.get("name", "doorOpen")
            push(at, _P_EVENT, ("event", device_id, name, True))
            if end is not None:
                push(end, _P_EVENT, ("event", device_id, name, False))
        elif fault.kind == "cabinet_out":
            # A controller's supercap keeps it alive for a last "supply lost" (the dying gasp);
            # then the broker notices the dead connection and publishes its will.
            if fault.params.get("gasp", "true") != "false":
                push(at, _P_EVENT, ("event", device_id, "supplyLoss", True))
            push(will, _P_STATUS, ("status", device_id, False))
            if end is not None:
                push(end, _P_STATUS, ("status", device_id, True))
                push(end, _P_EVENT, ("event", device_id, "supplyLoss", False))
        elif fault.kind == "device_offline":
            push(will, _P_STATUS, ("status", device_id, False))
            if end is not None:
                push(end, _P_STATUS, ("status", device_id, True))
        elif fault.kind == "low_battery" and end is not None:
            push(end, _P_EVENT, ("battery", device_id))
        elif fault.kind == "malformed":
            reason = fault.params.get("reason", "all")
            reasons = malformed.DEVICE_REASONS if reason == "all" else tuple(reason.split("|"))
            for r in reasons:
                if r not in malformed.DEVICE_REASONS:
                    from simulator.errors import FaultSpecError

                    raise FaultSpecError(
                        f"malformed: reason {r!r} is not one of {', '.join(malformed.DEVICE_REASONS)}"
                    )
            count = int(fault.number("count", 1))
            every = offset_of(fault.number("every_s", 1.0))
            n = 0
            for k in range(count):
                for r in reasons:
                    push(at + n * every, _P_EVENT, ("malformed", device_id, r, 900_000 + k))
                    n += 1
