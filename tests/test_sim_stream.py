"""The simulator's stream: determinism, validity under the ingest decoder, physics, faults, replay."""

from __future__ import annotations

import asyncio
import base64
import itertools
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from devices.registry import load_registry
from ingest.decode import REASONS, Decoder
from simulator import malformed
from simulator.clock import SunClock, parse_duration, parse_speed, parse_start
from simulator.errors import FaultSpecError, OptionError, RecordingError
from simulator.faults import FaultSpec, parse_at, parse_fault_spec, resolve_faults
from simulator.fleet import ROADS, generate_fleet, load_fleet, write_registry
from simulator.publish import JsonlSink, SendStats, play
from simulator.replay import (
    read_recording,
    recording_base_ms,
    shift_delta_ms,
    shift_payload,
)
from simulator.storm import Storm
from simulator.stream import Message, RunPlan, generate
from streetwatch.cli import main

START = parse_start("2026-07-15T18:00+08:00")
TZ = "Asia/Shanghai"


def _plan(seed: int = 5, *, faults: list[str] = (), hours: float = 12, **kw: Any) -> RunPlan:  # type: ignore[assignment]
    fleet = generate_fleet(60, 4, seed=seed)
    specs = [parse_fault_spec(f) for f in faults]
    resolved = resolve_faults(specs, fleet, start_ms=START, tz=TZ, seed=seed)
    return RunPlan(
        fleet=fleet, start_ms=START, duration_s=hours * 3600, seed=seed, faults=resolved, **kw
    )


def _bytes(plan: RunPlan) -> bytes:
    return b"".join(m.to_jsonl() for m in generate(plan))


def _readings(messages: list[Message]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for m in messages:
        if m.topic.endswith("/telemetry"):
            out[m.topic.split("/")[-2]].append(orjson.loads(m.payload))
    return out


# ---- determinism ---------------------------------------------------------------------------


def test_same_seed_same_bytes_different_seed_different() -> None:
    storm = [Storm(3600, 7200, 70)]
    faults = ["cabinet_out@2h+1h", "lamp_failure@1h", "malformed@3h", "stuck@30m"]
    a = _bytes(_plan(3, faults=faults, storms=storm))
    b = _bytes(_plan(3, faults=faults, storms=storm))
    c = _bytes(_plan(4, faults=faults, storms=storm))
    assert a == b
    assert a != c
    assert len(a) > 100_000


def test_cli_dry_run_is_byte_identical(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "simulate", "--dry-run", "--lamps", "30", "--waterlevel", "3", "--duration", "3h",
        "--start", "2026-07-15",  # one start and seed, one byte stream (the default moves daily)
        "--seed", "9", "--storm", "30m+1h,total=60", "--fault", "cabinet_out@1h+30m",
        "--fault", "malformed@2h,reason=not_utf8|bad_event",
    ]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "a.jsonl")]) == 0
    assert main([*argv, "--out", str(tmp_path / "b.jsonl")]) == 0
    assert main(argv) == 0  # stdout
    stdout = capsys.readouterr().out.encode()
    first = (tmp_path / "a.jsonl").read_bytes()
    assert first == (tmp_path / "b.jsonl").read_bytes() == stdout
    lines = [orjson.loads(x) for x in first.splitlines()]
    assert all(set(x) <= {"offset", "topic", "payload", "payload_b64", "retain"} for x in lines)
    assert [x["offset"] for x in lines] == sorted(x["offset"] for x in lines)
    b64 = [x for x in lines if "payload_b64" in x]
    assert len(b64) == 1  # the GBK one
    with pytest.raises(UnicodeDecodeError):
        base64.b64decode(b64[0]["payload_b64"]).decode("utf-8")


# ---- validity --------------------------------------------------------------------------------


def test_every_generated_message_is_accepted_by_the_ingest() -> None:
    plan = _plan(
        2,
        faults=[
            "day_burning", "lamp_failure@2h+1h", "low_power@1h", "over_voltage@3h+1h",
            "under_voltage@3h", "poor_pf@2h", "cabinet_out@23:30+90m", "offline@1h+30m",
            "stuck@1h", "low_battery@1h", "event:W-HXL-04@4h+10m,name=sensorFault",
        ],
        storms=[Storm(3600, 7200, 90, peak=0.35)],
    )  # fmt: skip
    decoder = Decoder("city/jining", 262_144)
    kinds: dict[str, int] = defaultdict(int)
    for m in generate(plan):
        got = decoder.decode(m.topic, m.payload, plan.start_ms + m.offset_ms)
        assert got.rejected == [], (m.topic, m.payload[:200], got.rejected)
        assert len(got.accepted) == 1
        obs = got.accepted[0]
        assert obs.ts_ms == plan.start_ms + m.offset_ms  # ts is always the stream's own time
        kinds[f"{obs.kind}/{obs.channel}"] += 1
        assert m.retain == (obs.channel == "status")
    assert set(kinds) == {
        "lamp/telemetry", "lamp/event", "lamp/status",
        "waterlevel/telemetry", "waterlevel/status", "waterlevel/event",
    }  # fmt: skip


@pytest.mark.parametrize("kind", ["lamp", "waterlevel"])
@pytest.mark.parametrize("reason", malformed.DEVICE_REASONS)
def test_each_malformed_message_is_rejected_for_its_reason(kind: str, reason: str) -> None:
    decoder = Decoder("city/jining", 262_144)
    topic, payload = malformed.build(
        reason, prefix="city/jining", kind=kind, device_id="X-1", ts_ms=START, seq=1
    )
    got = decoder.decode(topic, payload, START)
    assert [r.reason for r in got.rejected] == [reason]
    assert got.accepted == []


def test_malformed_covers_every_reason_a_device_can_cause() -> None:
    not_devices = {"bad_topic", "store_rejected", "internal_error"}
    assert set(malformed.DEVICE_REASONS) == set(REASONS) - not_devices


def test_malformed_fault_in_the_stream() -> None:
    plan = _plan(1, faults=["malformed:W-HXL-04@1h,reason=all,count=2"], hours=2)
    decoder = Decoder("city/jining", plan.max_payload_bytes)
    reasons: dict[str, int] = defaultdict(int)
    for m in generate(plan):
        for r in decoder.decode(m.topic, m.payload, plan.start_ms + m.offset_ms).rejected:
            reasons[r.reason] += 1
    assert reasons == {r: 2 for r in malformed.DEVICE_REASONS}


# ---- physics ----------------------------------------------------------------------------------


def test_lamps_follow_the_sun_and_energy_never_decreases() -> None:
    plan = _plan(6, faults=["day_burning:L-GHL-001", "lamp_failure:L-JAQ-001@22:00"], hours=20)
    sun = SunClock(plan.location)
    readings = _readings(list(generate(plan)))
    index = {d.device_id: i for i, d in enumerate(plan.fleet.devices)}
    margin = 15 * 60_000  # cabinets switch within ±8 min of sunset/sunrise
    lit_at_night = 0
    for device_id, items in readings.items():
        if not device_id.startswith("L-"):
            continue
        energy = [r["energy"] for r in items]
        assert energy == sorted(energy), device_id
        assert energy[-1] > energy[0]
        for r in items:
            night = sun.is_night(r["ts"], margin, -margin)
            day = not sun.is_night(r["ts"], -margin, margin)
            if device_id == "L-GHL-001":
                assert r["on"]  # burning day and night
            elif day:
                assert not r["on"], (device_id, r)
                assert r["power"] < 1
            elif night and not (device_id == "L-JAQ-001" and r["ts"] >= START + 4 * 3600_000):
                assert r["on"], (device_id, r)
                lit_at_night += 1
                rated = plan.fleet.devices[index[device_id]].rated_w or 0.0
                assert 0.85 < r["power"] / (rated * r["dim"] / 100) < 1.15
                assert 200 < r["voltage"] < 233
                assert r["power_factor"] > 0.85
            if device_id == "L-JAQ-001" and r["ts"] >= START + 4 * 3600_000:
                assert not r["on"]
    assert lit_at_night > 1000


def test_dimming_after_midnight() -> None:
    plan = _plan(6, hours=12)
    sun = SunClock(plan.location)
    for items in _readings(list(generate(plan))).values():
        for r in items:
            if r.get("on"):
                hour = sun.local_hours(r["ts"])
                assert r["dim"] == (50 if hour < 4.5 else 100)


def test_water_depth_rises_with_rain_and_recedes() -> None:
    storm = Storm(3600, 7200, 80, peak=0.4)
    plan = _plan(8, storms=[storm], hours=12)
    for device_id, items in _readings(list(generate(plan))).items():
        if not device_id.startswith("W-"):
            continue
        depths = [r["depth_cm"] for r in items]
        assert min(depths) >= 0
        assert sum(r["rain_mm"] for r in items) == pytest.approx(
            80, rel=0.2
        )  # rain factor 0.85-1.15
        peak = max(range(len(depths)), key=depths.__getitem__)
        assert depths[peak] > 1
        peak_s = (items[peak]["ts"] - START) / 1000
        assert peak_s > storm.start_s + 0.4 * storm.duration_s  # lags the rain's peak
        assert depths[-1] == 0.0  # drained by morning
        after = [
            d
            for r, d in zip(items, depths, strict=True)
            if r["ts"] - START > (storm.end_s + 3600) * 1000
        ]
        assert after == sorted(after, reverse=True) or max(after) < 1  # receding
        dry = [r for r in items if r["ts"] - START < storm.start_s * 1000]
        assert all(r["depth_cm"] == 0.0 and r["rain_mm"] == 0.0 for r in dry)
        gaps = [b["ts"] - a["ts"] for a, b in itertools.pairwise(items)]
        assert min(gaps) < 70_000 < 270_000 < max(gaps)  # faster reporting while wet
        battery = [r["battery"] for r in items]
        assert battery == sorted(battery, reverse=True)


def test_chicago_storm() -> None:
    storm = Storm(0, 7200, 80, peak=0.4)
    values = [storm.cumulative(t) for t in range(0, 7201, 60)]
    assert values == sorted(values)
    assert values[0] == 0 and values[-1] == pytest.approx(80)
    per_minute = [b - a for a, b in itertools.pairwise(values)]
    assert max(range(len(per_minute)), key=per_minute.__getitem__) in (47, 48)  # peak at 40 %
    assert storm.rain_between(-100, 10_000) == pytest.approx(80)


# ---- faults ------------------------------------------------------------------------------------


def test_fault_effects_in_readings() -> None:
    plan = _plan(
        4,
        faults=[
            "over_voltage:L-GHL-002@19:00", "poor_pf:L-GHL-003@20:00", "low_power:L-GHL-004@20:00",
            "stuck:W-HXL-04@1h,depth_cm=3.3", "low_battery:W-JAQ-01@1h,level=12",
        ],
        hours=6,
    )  # fmt: skip
    r = _readings(list(generate(plan)))
    late = START + 3 * 3600_000
    assert all(x["voltage"] > 240 for x in r["L-GHL-002"] if x["ts"] > late)
    assert all(x["power_factor"] < 0.5 for x in r["L-GHL-003"] if x["ts"] > late)
    assert all(x["power"] < 0.6 * 200 for x in r["L-GHL-004"] if x["ts"] > late)
    assert {x["depth_cm"] for x in r["W-HXL-04"] if x["ts"] > late} == {3.3}
    assert r["W-JAQ-01"][-1]["battery"] < 15


def test_cabinet_out_and_offline_emulate_last_wills() -> None:
    plan = _plan(4, faults=["cabinet_out@1h+1h", "offline:W-JAQ-01@1h"], hours=3)
    cabinet = plan.faults[0]
    messages = list(generate(plan))
    for device_id in [*cabinet.devices, "W-JAQ-01"]:
        mine = [m for m in messages if m.topic.split("/")[-2] == device_id]
        statuses = [
            (m.offset_s, orjson.loads(m.payload)["online"])
            for m in mine
            if m.topic.endswith("/status")
        ]
        assert statuses[0] == (0.0, True)
        assert statuses[1] == (3600 + 90, False)
        silent = [m for m in mine if m.topic.endswith("/telemetry") and 3600 <= m.offset_s < 7200]
        assert silent == []
        if device_id in cabinet.devices:
            assert statuses[2] == (7200, True)
            events = [orjson.loads(m.payload) for m in mine if m.topic.endswith("/event")]
            assert [(e["event"], e["state"]) for e in events] == [
                ("supplyLoss", "raised"), ("supplyLoss", "cleared"),
            ]  # fmt: skip
            assert any(m.topic.endswith("/telemetry") and m.offset_s > 7200 for m in mine)
        else:
            assert len(statuses) == 2


def test_fault_spec_parsing() -> None:
    spec = parse_fault_spec("cabinet_out:C-GHL-01@23:30+90m,gasp=false")
    assert spec == FaultSpec("cabinet_out", "C-GHL-01", "23:30", "90m", {"gasp": "false"})
    assert parse_fault_spec("poor_pf").kind == "poor_power_factor"
    assert parse_at("23:30", START, TZ) == 5.5 * 3600
    assert parse_at("05:00", START, TZ) == 11 * 3600  # the next morning
    assert parse_at("2h", START, TZ) == 7200
    with pytest.raises(FaultSpecError):
        parse_fault_spec("melted:L-1")
    fleet = generate_fleet(60, 4, seed=1)
    with pytest.raises(FaultSpecError, match="no device"):
        resolve_faults(
            [parse_fault_spec("lamp_failure:L-NOPE-1")], fleet, start_ms=START, tz=TZ, seed=1
        )
    with pytest.raises(FaultSpecError, match="needs a lamp"):
        resolve_faults(
            [parse_fault_spec("day_burning:W-JAQ-01")], fleet, start_ms=START, tz=TZ, seed=1
        )
    picked = resolve_faults(
        [parse_fault_spec("lamp_failure"), parse_fault_spec("lamp_failure")],
        fleet, start_ms=START, tz=TZ, seed=1,
    )  # fmt: skip
    assert picked[0].target != picked[1].target


def test_time_options() -> None:
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45") == 45
    assert math.isinf(parse_speed("max"))
    assert parse_start("now-1h", now_ms=10_000_000) == 10_000_000 - 3_600_000
    assert parse_start("2026-07-15T18:00") == START  # the city's zone when none is given
    for bad in ("soon", "-5m", "12x"):
        with pytest.raises(OptionError):
            parse_duration(bad)
    with pytest.raises(OptionError):
        parse_speed("0")


# ---- fleet ---------------------------------------------------------------------------------------


def test_generated_fleet_and_registry_roundtrip(tmp_path: Path) -> None:
    fleet = generate_fleet()
    assert len(fleet.lamps) == 790 and len(fleet.waterlevel) == 12
    assert {d.road for d in fleet.lamps} == {r.name for r in ROADS}
    sizes = [len(v) for v in fleet.cabinets().values()]
    assert sum(20 <= s <= 42 for s in sizes) >= 0.9 * len(sizes)
    assert generate_fleet(seed=1) == fleet
    path = tmp_path / "city.csv"
    write_registry(fleet.devices, path)
    registry = load_registry(path)
    assert len(registry) == len(fleet)
    assert list(registry) == list(fleet.devices)
    assert load_fleet(path) == fleet
    assert main(["simulate", "--write-registry", str(tmp_path / "b.csv"), "--lamps", "10"]) == 0
    assert len(load_registry(tmp_path / "b.csv")) == 10 + 12


# ---- replay ---------------------------------------------------------------------------------------


class _TimingSink:
    def __init__(self) -> None:
        self.stats = SendStats()
        self.times: list[float] = []

    async def send(self, message: Message) -> None:
        self.times.append(time.monotonic())
        self.stats.sent += 1

    async def close(self) -> None:
        pass


def test_replay_keeps_spacing_scaled_by_speed(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    offsets = [0, 500, 1500, 1600, 4000]  # ms
    path.write_bytes(
        b"".join(Message(o, "city/jining/lamp/L-1/telemetry", b"{}").to_jsonl() for o in offsets)
    )
    messages = list(read_recording(path))
    assert [m.offset_ms for m in messages] == offsets
    sink = _TimingSink()
    asyncio.run(play(messages, sink, speed=4.0))
    t0 = sink.times[0]
    for offset, at in zip(offsets, sink.times, strict=True):
        assert at - t0 == pytest.approx(offset / 1000 / 4, abs=0.03)


def test_replay_shift_to_now() -> None:
    payload = orjson.dumps({"ts": 1_000_000, "on": True})
    assert orjson.loads(shift_payload(payload, 500))["ts"] == 1_000_500
    arr = orjson.dumps([{"ts": 10, "depth_cm": 1.0}, {"ts": "2026-07-15T18:00:00+08:00"}])
    shifted = orjson.loads(shift_payload(arr, 1000))
    assert shifted[0]["ts"] == 1010
    assert shifted[1]["ts"] == "2026-07-15T18:00:01.000+08:00"
    assert shift_payload(b"{nope", 5) == b"{nope"
    messages = [
        Message(0, "a/lamp/x/telemetry", b'"x"'),
        Message(2000, "a/lamp/x/telemetry", orjson.dumps({"ts": 7000})),
    ]
    assert recording_base_ms(messages) == 5000
    # 1 h at 60x, replay starting at now: the last reading carries exactly its send time.
    delta = shift_delta_ms(base_ms=0, duration_ms=3_600_000, now_ms=10_000_000, speed=60)
    assert 0 + 3_600_000 + delta == 10_000_000 + 3_600_000 / 60
    assert shift_delta_ms(0, 3_600_000, 10_000_000, 1) == 10_000_000


def test_bad_recording_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(Message(0, "t", b"x").to_jsonl() + b'{"topic": "t"}\n')
    with pytest.raises(RecordingError, match=r"bad\.jsonl:2"):
        list(read_recording(path))


def test_jsonl_sink_roundtrip() -> None:
    import io

    buf = io.BytesIO()
    sink = JsonlSink(buf)
    messages = [
        Message(1, "a/lamp/x/status", b"{}", True),
        Message(2, "a/lamp/x/telemetry", b"\xff\x00"),
    ]
    asyncio.run(play(messages, sink, speed=math.inf))
    back = [Message.from_jsonl(line) for line in buf.getvalue().splitlines()]
    assert back == messages
