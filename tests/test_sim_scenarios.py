"""Scenario files against a reference reading of the standard rules (contract §3 defaults).

`oracle_alerts` applies the rules' documented defaults (thresholds taken from rules.config, so they
cannot drift apart) to a generated stream in the simplest possible way. A scenario passes when the
alerts it lists are exactly those the stream should raise: every fault produces its alert, and the
healthy rest of the city (voltage sag, dimming, recession, battery drain) produces none.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from rules.config import RulesConfig
from simulator.clock import SunClock
from simulator.scenario import ExpectedAlert, load_scenario, scenario_names
from simulator.stream import Message, RunPlan, generate

CFG = RulesConfig()


@dataclass
class _Held:
    """A condition that must hold for `for_s` (event time) before it raises."""

    since: int | None = None
    count: int = 0

    def see(self, bad: bool, ts: int, for_s: float, readings: int = 1) -> bool:
        if not bad:
            self.since, self.count = None, 0
            return False
        if self.since is None:
            self.since = ts
        self.count += 1
        return self.count >= readings and ts - self.since >= for_s * 1000


@dataclass
class _Device:
    kind: str
    readings: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    offline_at: list[int] = field(default_factory=list)
    raised_events: list[tuple[int, str]] = field(default_factory=list)


def oracle_alerts(plan: RunPlan, messages: list[Message]) -> set[tuple[str, str]]:
    """(rule, device) pairs the standard rules should raise on this stream."""
    devices = {d.device_id: d for d in plan.fleet.devices}
    seen: dict[str, _Device] = {}
    for m in messages:
        parts = m.topic.split("/")
        device_id, channel = parts[-2], parts[-1]
        if device_id not in devices or parts[-3] != devices[device_id].kind:
            continue
        try:
            payload = orjson.loads(m.payload)
        except orjson.JSONDecodeError:
            continue
        # A gateway's backlog (an array) is judged reading by reading, by its own event time.
        late = isinstance(payload, list) and channel == "telemetry"
        for body in payload if late else [payload]:
            _take(seen, devices, device_id, channel, body, plan.start_ms + m.offset_ms, late)

    return _judge(plan, seen, devices)


def _take(
    seen: dict[str, _Device],
    devices: dict[str, Any],
    device_id: str,
    channel: str,
    body: Any,
    now_ms: int,
    late: bool,
) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("ts"), int):
        return
    if body["ts"] > now_ms or (not late and body["ts"] != now_ms):
        return  # the malformed ts_in_future message
    dev = seen.setdefault(device_id, _Device(devices[device_id].kind))
    if channel == "telemetry":
        required = "on" if dev.kind == "lamp" else "depth_cm"
        value = body.get(required)
        ok = isinstance(value, bool) if dev.kind == "lamp" else type(value) is float
        if ok and all(not isinstance(v, str) for v in body.values()):
            if dev.kind == "waterlevel" and not 0 <= float(value or 0) <= 500:
                return
            dev.readings.append((body["ts"], body))
    elif channel == "status" and body.get("online") is False:
        dev.offline_at.append(body["ts"])
    elif channel == "event" and body.get("state") == "raised":
        dev.raised_events.append((body["ts"], str(body.get("event"))))


def _judge(
    plan: RunPlan, seen: dict[str, _Device], devices: dict[str, Any]
) -> set[tuple[str, str]]:
    sun = SunClock(plan.location)
    out: set[tuple[str, str]] = set()
    members: dict[str, list[tuple[int, str, str]]] = defaultdict(list)  # cabinet → (ts, rule, lamp)
    end_ms = plan.start_ms + int((plan.duration_s or 0) * 1000)
    supply_events = set(CFG.cabinet_outage.member_events.get("lamp_fault", []))
    for device_id, dev in seen.items():
        meta = devices[device_id]
        if dev.raised_events and dev.kind == "lamp":
            # Supply events only (a last gasp): a cabinet_outage member; anything else: its own.
            if meta.cabinet and {name for _, name in dev.raised_events} <= supply_events:
                members[meta.cabinet].append(
                    (min(ts for ts, _ in dev.raised_events), "lamp_fault", device_id)
                )
            else:
                out.add(("lamp_fault", device_id))
        # device_offline: a will, or silence for `intervals` report intervals (to the run's end too)
        offline: list[int] = list(dev.offline_at)
        limit = CFG.device_offline.intervals * meta.report_interval_s * 1000
        times = [ts for ts, _ in dev.readings] + [end_ms]
        offline += [a + int(limit) for a, b in itertools.pairwise(times) if b - a > limit]
        if offline:
            if meta.cabinet:
                members[meta.cabinet].append((min(offline), "device_offline", device_id))
            else:
                out.add(("device_offline", device_id))
        held: dict[str, _Held] = defaultdict(_Held)
        for ts, r in dev.readings:
            if dev.kind == "lamp":
                rated = meta.rated_w or 0.0
                on = r["on"]
                dark = CFG.lamp_dark
                if sun.is_night(
                    ts, int(dark.sunset_offset_s * 1000), int(dark.sunrise_offset_s * 1000)
                ):
                    bad = (not on) or r.get("power", rated) < dark.dark_ratio * rated
                    if held["dark"].see(bad, ts, 0, dark.for_readings):
                        members[meta.cabinet or device_id].append((ts, "lamp_dark", device_id))
                else:
                    held["dark"] = _Held()
                burn = CFG.lamp_day_burning
                if not sun.is_night(
                    ts, int(burn.sunset_offset_s * 1000), int(burn.sunrise_offset_s * 1000)
                ):
                    if held["burn"].see(on, ts, 0, burn.for_readings):
                        out.add(("lamp_day_burning", device_id))
                else:
                    held["burn"] = _Held()
                pw = CFG.lamp_power_abnormal
                expected = rated * r.get("dim", 100) / 100
                if on and expected >= pw.min_expected and "power" in r:
                    ratio = r["power"] / expected
                    bad = not pw.low <= ratio <= pw.high
                    if held["power"].see(bad, ts, pw.for_s):
                        out.add(("lamp_power_abnormal", device_id))
                v = CFG.lamp_voltage_abnormal
                if "voltage" in r:
                    assert v.below is not None and v.above is not None
                    bad = not v.below <= r["voltage"] <= v.above
                    if held["volt"].see(bad, ts, v.for_s):
                        out.add(("lamp_voltage_abnormal", device_id))
                pf = CFG.lamp_power_factor_low
                if on and "power_factor" in r:
                    assert pf.below is not None
                    if held["pf"].see(r["power_factor"] < pf.below, ts, pf.for_s):
                        out.add(("lamp_power_factor_low", device_id))
            else:
                depth = r["depth_cm"]
                if depth >= CFG.water_level.levels[0].at:
                    out.add(("water_level", device_id))
                fast = CFG.water_rising_fast
                window = [
                    d["depth_cm"] for t, d in dev.readings if ts - fast.within_s * 1000 <= t <= ts
                ]
                if depth - min(window) >= fast.change:
                    out.add(("water_rising_fast", device_id))
                stuck = CFG.sensor_stuck
                same = held["stuck"]
                if same.since is None or same.count != depth or depth in stuck.skip_values:
                    same.since, same.count = ts, depth
                elif ts - same.since >= stuck.unchanged_for_s * 1000:
                    out.add(("sensor_stuck", device_id))
                low = CFG.battery_low
                if "battery" in r:
                    assert low.below is not None
                    if held["batt"].see(r["battery"] < low.below, ts, 0, low.for_readings):
                        out.add(("battery_low", device_id))
    group = CFG.cabinet_outage
    for cabinet, items in members.items():
        items.sort()
        grouped: set[str] = set()
        for i, (ts, _, _) in enumerate(items):
            near = {lamp for t, _, lamp in items[i:] if t - ts <= group.window_s * 1000}
            if len(near) >= group.min_count:
                grouped |= near
        if grouped:
            out.add(("cabinet_outage", cabinet))
        for _, rule, lamp in items:
            if lamp not in grouped:
                out.add((rule, lamp))
    return out


@pytest.mark.parametrize("name", ["clear-night", "storm", "late-flood"])
def test_scenario_expects_exactly_what_its_stream_raises(name: str) -> None:
    scenario = load_scenario(name)
    messages = list(generate(scenario.plan))
    want = {(e.rule, e.device) for e in scenario.expected}
    got = oracle_alerts(scenario.plan, messages)
    assert sorted(want - got) == [], "expected but the stream would not raise them"
    assert sorted(got - want) == [], "the stream would raise these, the scenario does not list them"


def test_shipped_scenarios() -> None:
    names = scenario_names()
    assert {"clear-night", "storm"} <= set(names)
    for name in names:
        scenario = load_scenario(name)
        assert scenario.expected, name
        assert all(isinstance(e, ExpectedAlert) for e in scenario.expected)
