"""The simulator's physics and faults: cabinets switch together, faults end cleanly, new faults."""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

import orjson
import pytest

from ingest.decode import Decoder
from simulator.clock import parse_start
from simulator.faults import parse_fault_spec, resolve_faults
from simulator.fleet import Fleet, generate_fleet
from simulator.stream import Message, RunPlan, generate
from simulator.water import WaterSim

START = parse_start("2026-07-15T18:00+08:00")
TZ = "Asia/Shanghai"


def _plan(
    faults: list[str] = (),  # type: ignore[assignment]
    *,
    lamps: int = 60,
    water: int = 4,
    hours: float = 4,
    seed: int = 5,
    start: int = START,
    fleet: Fleet | None = None,
    **kw: Any,
) -> RunPlan:
    fleet = fleet or generate_fleet(lamps, water, seed=seed, **kw.pop("fleet_kw", {}))
    specs = [parse_fault_spec(f) for f in faults]
    resolved = resolve_faults(
        specs, fleet, start_ms=start, tz=TZ, seed=seed, duration_s=hours * 3600
    )
    return RunPlan(
        fleet=fleet, start_ms=start, duration_s=hours * 3600, seed=seed, faults=resolved, **kw
    )


def _of(messages: list[Message], device: str, channel: str) -> list[tuple[float, Any]]:
    return [
        (m.offset_s, orjson.loads(m.payload))
        for m in messages
        if m.topic.split("/")[-2] == device and m.topic.endswith("/" + channel)
    ]


# ---- lamps on one cabinet switch together, whatever the registry order ----------------------


def test_lamps_on_a_cabinet_switch_on_at_one_instant() -> None:
    start = parse_start("2026-07-15T19:10+08:00")
    fleet = generate_fleet(300, 0, seed=1, report_interval_s=30)
    plan = _plan(fleet=fleet, start=start, hours=1.5, seed=1)
    first_on: dict[str, float] = {}
    last_off: dict[str, float] = {}
    cabinet = {d.device_id: d.cabinet for d in fleet.devices}
    for m in generate(plan):
        if not m.topic.endswith("/telemetry"):
            continue
        body = orjson.loads(m.payload)
        cab = cabinet[m.topic.split("/")[-2]]
        assert cab is not None
        if body["on"]:
            first_on[cab] = min(first_on.get(cab, 1e12), m.offset_s)
        else:
            last_off[cab] = max(last_off.get(cab, -1.0), m.offset_s)
    assert first_on
    for cab, on_at in first_on.items():
        # Every lamp of the cabinet is off before its first lit reading and lit after: the
        # switching instant lies between, for all of them (30 s reports: at most ~33 s apart).
        assert last_off.get(cab, -1.0) < on_at + 1e-9
        assert on_at - last_off.get(cab, on_at - 33) <= 34, cab


def test_a_lamps_readings_do_not_depend_on_the_registry_order() -> None:
    fleet = generate_fleet(80, 3, seed=2)
    backwards = Fleet(tuple(reversed(fleet.devices)))
    plans = [_plan(fleet=f, seed=2, hours=3, start=START + 3600_000) for f in (fleet, backwards)]
    streams = [sorted((m.topic, m.offset_ms, m.payload) for m in generate(p)) for p in plans]
    assert streams[0] == streams[1]


# ---- faults end and leave nothing behind ------------------------------------------------------


def test_short_offline_sends_no_will_and_leaves_no_offline_status() -> None:
    messages = list(generate(_plan(["offline:L-GHL-003@1h+30s"])))
    statuses = _of(messages, "L-GHL-003", "status")
    assert [s["online"] for _, s in statuses] == [True]


def test_overlapping_faults_make_one_outage_and_one_event_pair() -> None:
    plan = _plan(
        [
            "offline:L-GHL-003@1h+1h",
            "offline:L-GHL-003@1h30m+1h",
            "lamp_failure:L-GHL-005@1h+1h",
            "event:L-GHL-005@1h30m+1h,name=lampFailure",
        ]
    )
    messages = list(generate(plan))
    statuses = [(t, s["online"]) for t, s in _of(messages, "L-GHL-003", "status")]
    assert statuses == [(0.0, True), (3600 + 90, False), (9000, True)]
    readings = [t for t, _ in _of(messages, "L-GHL-003", "telemetry")]
    assert not [t for t in readings if 3600 <= t < 9000]
    assert [t for t in readings if t >= 9000]
    events = [(t, e["state"]) for t, e in _of(messages, "L-GHL-005", "event")]
    assert events == [(3600, "raised"), (9000, "cleared")]


def test_events_wait_for_a_silent_device_to_come_back() -> None:
    plan = _plan(["offline:L-GHL-003@1h+1h", "event:L-GHL-003@1h30m+1h,name=doorOpen"])
    events = [(t, e["state"]) for t, e in _of(list(generate(plan)), "L-GHL-003", "event")]
    assert events == [(7200, "raised"), (9000, "cleared")]


def test_every_device_ends_online_when_it_reports_again() -> None:
    plan = _plan(
        ["cabinet_out@1h+20m", "offline@1h10m+1m", "offline@30m+2h", "cabinet_out@2h+30s"],
        hours=4,
    )
    last: dict[str, bool] = {}
    for m in generate(plan):
        device = m.topic.split("/")[-2]
        if m.topic.endswith("/status"):
            last[device] = orjson.loads(m.payload)["online"]
        elif m.topic.endswith("/telemetry"):
            assert last[device] is True, (device, m.offset_s)


# ---- batteries ---------------------------------------------------------------------------------


def test_healthy_batteries_last_more_than_a_year() -> None:
    fleet = generate_fleet(0, 24, seed=3)
    for device in fleet.devices:
        sim = WaterSim(device, seed=3, storms=[])
        t = 0.0
        while t < 400 * 86400:
            t += 300
            body = sim.reading(START + int(t * 1000), t, [])
        assert body["battery"] > 20, device.device_id


def test_low_battery_sags_over_hours_not_in_a_minute() -> None:
    plan = _plan(["low_battery:W-JAQ-01@1h,level=15"], hours=5)
    batteries = [(t, r["battery"]) for t, r in _of(list(generate(plan)), "W-JAQ-01", "telemetry")]
    before = [b for t, b in batteries if t < 3600][-1]
    steps = [b2 - b1 for (_, b1), (_, b2) in itertools.pairwise(batteries)]
    assert min(steps) > -6  # no cliff: a few % per reading at most
    assert batteries[-1][1] < 16  # yet it gets there (2 h)
    assert before > 40


# ---- water points report fast while they see water -------------------------------------------


def test_water_points_slow_down_once_the_sensor_reads_dry() -> None:
    from simulator.storm import Storm

    plan = _plan(lamps=0, water=12, hours=10, storms=[Storm(1800, 3600, 60)])
    by_point: dict[str, list[tuple[float, Any]]] = defaultdict(list)
    for m in generate(plan):
        if m.topic.endswith("/telemetry"):
            by_point[m.topic.split("/")[-2]].append((m.offset_s, orjson.loads(m.payload)))
    checked = 0
    for readings in by_point.values():
        for (t1, r1), (t2, _) in itertools.pairwise(readings):
            if t1 > 5400 and r1["depth_cm"] == 0 and r1["rain_mm"] == 0:
                assert t2 - t1 >= 300 * 0.9 - 1, (t1, t2)
                checked += 1
    assert checked > 10


# ---- the new faults ------------------------------------------------------------------------------


def _decode_all(plan: RunPlan) -> list[tuple[Message, Any]]:
    decoder = Decoder(plan.prefix, plan.max_payload_bytes)
    return [
        (m, decoder.decode(m.topic, m.payload, plan.start_ms + m.offset_ms)) for m in generate(plan)
    ]


@pytest.mark.parametrize(("by", "rejected"), [("+4m59s", False), ("+5m01s", True), ("-2h", False)])
def test_clock_skew(by: str, rejected: bool) -> None:
    plan = _plan([f"clock_skew:L-GHL-003@1h+1h,by={by}"])
    skewed = 0
    for m, got in _decode_all(plan):
        if "/L-GHL-003/telemetry" not in m.topic:
            continue
        body = orjson.loads(m.payload)
        if 3600 <= m.offset_s < 7200:
            skewed += 1
            sign = -1 if by.startswith("-") else 1
            secs = {"+4m59s": 299, "+5m01s": 301, "-2h": 7200}[by]
            assert body["ts"] - (plan.start_ms + m.offset_ms) == sign * secs * 1000
            assert [r.reason for r in got.rejected] == (["ts_in_future"] if rejected else [])
            assert m.intent == (("ts_in_future",) if rejected else ())
        else:
            assert body["ts"] == plan.start_ms + m.offset_ms
    assert skewed >= 10


def test_duplicate_and_out_of_order_delivery() -> None:
    plan = _plan(["duplicate:W-JAQ-01@0s+2h,copies=2", "out_of_order:L-GHL-003@0s+2h,by=20m"])
    messages = list(generate(plan))
    water = [m.payload for m in messages if "/W-JAQ-01/telemetry" in m.topic and m.offset_s < 7200]
    counts: dict[bytes, int] = defaultdict(int)
    for p in water:
        counts[p] += 1
    assert set(counts.values()) == {3}
    lamp = [orjson.loads(m.payload)["ts"] for m in messages if "/L-GHL-003/telemetry" in m.topic]
    assert lamp != sorted(lamp)  # shuffled on the way
    assert len(set(lamp)) == len(lamp)  # but nothing lost or doubled
    offsets = [m.offset_ms for m in messages]
    assert offsets == sorted(offsets)


def test_rfc3339_ts_and_seq_reset() -> None:
    plan = _plan(["rfc3339_ts:L-GHL-003@1h+1h", "seq_reset:L-GHL-004@2h"])
    for m, got in _decode_all(plan):
        if "/L-GHL-003/telemetry" in m.topic and 3600 <= m.offset_s < 7200:
            ts = orjson.loads(m.payload)["ts"]
            assert isinstance(ts, str) and ts.endswith("+08:00")
            assert got.accepted[0].ts_ms == plan.start_ms + m.offset_ms
    seqs = [(t, r["seq"]) for t, r in _of(list(generate(plan)), "L-GHL-004", "telemetry")]
    after = [s for t, s in seqs if t >= 7200]
    assert after[0] == 1 and max(s for t, s in seqs if t < 7200) > 1


def test_reconnect_storm_every_device_within_seconds() -> None:
    plan = _plan(["reconnect_storm@1h,within=10s"])
    fresh = [m for m in generate(plan) if m.topic.endswith("/status") and m.offset_s > 0]
    assert len(fresh) == 64
    assert all(3600 <= m.offset_s <= 3610 for m in fresh)
    assert all(orjson.loads(m.payload)["online"] is True and m.retain for m in fresh)


def test_mixed_arrays_and_bad_statuses_are_refused_reading_by_reading() -> None:
    plan = _plan(["mixed_array:W-JAQ-01@0s+3h,size=4,bad=1", "bad_status:L-GHL-003@1h"])
    arrays = statuses = 0
    for m, got in _decode_all(plan):
        if m.intent:
            assert sorted(r.reason for r in got.rejected) == sorted(m.intent)
        if "/W-JAQ-01/telemetry" in m.topic and m.payload.startswith(b"["):
            arrays += 1
            assert len(got.accepted) >= 1 and len(got.rejected) == 1
        if "/L-GHL-003/status" in m.topic and m.intent:
            statuses += 1
            assert not m.retain
    assert arrays >= 3
    assert statuses == 5


def test_gateway_down_buffers_and_uploads_arrays_when_it_ends() -> None:
    plan = _plan(["gateway_down:济安桥路@22:00+5h"], hours=10, lamps=200, water=12)
    road = {d.device_id for d in plan.fleet.devices if d.road == "济安桥路"}
    down, up = 4 * 3600, 9 * 3600
    uploaded: dict[str, list[int]] = defaultdict(list)
    for m, got in _decode_all(plan):
        device = m.topic.split("/")[-2]
        if device not in road or not m.topic.endswith("/telemetry"):
            continue
        assert not (down <= m.offset_s < up), "nothing from the road while its uplink is down"
        if m.offset_s == up and m.payload.startswith(b"["):
            assert got.rejected == []
            uploaded[device] += [o.ts_ms for o in got.accepted]
    assert set(uploaded) == road
    for ts in uploaded.values():
        assert ts == sorted(ts)
        assert min(ts) >= plan.start_ms + down * 1000 and max(ts) < plan.start_ms + up * 1000
        assert len(ts) >= 50  # 5 h at ~300 s


def test_a_registry_lamp_rated_beyond_the_meter_still_reports_in_range(tmp_path: Any) -> None:
    from simulator.fleet import load_fleet

    path = tmp_path / "big.csv"
    path.write_text(
        "device_id,kind,road,cabinet,rated_w,report_interval_s\n"
        "L-BIG-1,lamp,洸河路,C-1,9000,60\nL-BIG-2,lamp,洸河路,C-1,400,60\n",
        encoding="utf-8",
    )
    plan = _plan(["under_voltage:L-BIG-1@0s,volts=150"], fleet=load_fleet(path), hours=6)
    lit = 0
    for m, got in _decode_all(plan):
        assert got.rejected == [], (m.payload, got.rejected)
        lit += b'"on":true' in m.payload
    assert lit > 100


def test_mixed_array_future_item_with_rfc3339_timestamps_is_in_the_future() -> None:
    plan = _plan(
        [
            "rfc3339_ts:W-JAQ-01@0s+3h",
            "mixed_array:W-JAQ-01@0s+3h,size=3,bad=1,reason=ts_in_future",
        ]
    )
    arrays = 0
    for m, got in _decode_all(plan):
        assert sorted(r.reason for r in got.rejected) == sorted(m.intent)
        arrays += "/W-JAQ-01/" in m.topic and m.intent == ("ts_in_future",)
    assert arrays >= 10
