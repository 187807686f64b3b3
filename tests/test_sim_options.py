"""`streetwatch simulate` refuses what it cannot do, at start, in one line; --check, replay, load."""

from __future__ import annotations

import datetime as dt
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from devices.location import LocationConfig
from devices.sun import SunTimes
from simulator.check import run_check
from simulator.faults import FAULT_KINDS
from simulator.load import LoadDevices
from simulator.replay import recording_base_ms, shift_delta_ms, shifted
from simulator.scenario import ExpectedAlert
from simulator.stream import Message
from streetwatch.cli import main

SMALL = ["simulate", "--dry-run", "--lamps", "10", "--waterlevel", "2", "--duration", "1h"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


BAD = [
    ([*SMALL, "--dimming", "00:00-04:30=150"], "dim 150"),
    ([*SMALL, "--dimming", "00:00-04:30=-5"], "dim -5"),
    ([*SMALL, "--dimming", "bad"], "--dimming"),
    ([*SMALL, "--dimming", "25:00-04:30=50"], "time of day"),
    ([*SMALL, "--fault", "over_voltage,volts=0"], "volts=0"),
    ([*SMALL, "--fault", "under_voltage,volts=abc"], "not a number"),
    ([*SMALL, "--fault", "event,name=door_open!"], "event name"),
    ([*SMALL, "--fault", "poor_pf,pff=0.3"], "unknown parameter 'pff'"),
    ([*SMALL, "--fault", "malformed,reason=nope"], "'nope' is not one of"),
    ([*SMALL, "--fault", "malformed,count=0"], "count=0"),
    ([*SMALL, "--fault", "low_battery,level=50"], "level=50"),
    ([*SMALL, "--fault", "clock_skew,by=soon"], "signed duration"),
    ([*SMALL, "--fault", "lamp_failure@2h"], "after the run's end"),
    ([*SMALL, "--fault", "offline@10m+0s"], "longer than 0"),
    ([*SMALL, "--fault", "gateway_down:洸河路@10m"], "needs +FOR"),
    ([*SMALL, "--fault", "gateway_down:洸河路@10m+2h"], "never be uploaded"),
    ([*SMALL, "--fault", "gateway_down:火星路@10m+20m"], "no device, cabinet or road"),
    ([*SMALL, "--report-interval", "0"], "--report-interval"),
    ([*SMALL, "--report-interval", "10m..1m"], "backwards"),
    ([*SMALL, "--tz", "Mars/Base"], "--tz 'Mars/Base'"),
    ([*SMALL, "--lat", "123"], "--lat 123"),
    ([*SMALL, "--lon", "-200"], "--lon -200"),
    ([*SMALL, "--out", "/nonexistent/x"], "--out /nonexistent/x"),
    ([*SMALL, "--storm", "1h+2h,totl=80"], "unknown setting 'totl=80'"),
    ([*SMALL, "--storm", "1h+2h,points=W-NOPE-01"], "no waterlevel point"),
    ([*SMALL, "--storm", "1h+2h,peak=2"], "peak"),
    ([*SMALL, "--duration", "0"], "--duration"),
    ([*SMALL, "--lamps", "0", "--waterlevel", "0"], "fleet is empty"),
    ([*SMALL, "--speed", "0"], "--speed"),
    ([*SMALL, "--check-timeout", "soon"], "--check-timeout"),
    ([*SMALL, "--max-payload-bytes", "10"], "--max-payload-bytes"),
    ([*SMALL, "--shift-to-now"], "--shift-to-now needs --replay"),
    ([*SMALL, "--cleanup"], "--cleanup publishes to the broker"),
    ([*SMALL, "--scenario", "storm", "--check"], "--check cannot be used with --dry-run"),
    (["simulate", "--check", "--port", "1"], "--check needs --scenario"),
    (
        ["simulate", "--scenario", "storm", "--seed", "2", "--check", "--port", "1"],
        "seed 11 only",
    ),
    (["simulate", "--rate", "100", "--duration", "abc"], "--duration"),
    (["simulate", "--replay", "/nonexistent/night.jsonl"], "does not exist"),
    (["record", "--out", "-", "--duration", "abc"], "--duration"),
    (["record", "--out", "/nonexistent/x.jsonl"], "--out /nonexistent/x.jsonl"),
]


@pytest.mark.parametrize(("argv", "says"), BAD, ids=[" ".join(a[-2:]) for a, _ in BAD])
def test_bad_options_fail_at_start_in_one_line(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert says in err, err
    assert err.startswith(("streetwatch simulate:", "streetwatch record:"))
    assert time.monotonic() - started < 30  # before any run, not after it


def test_help_lists_every_fault_kind_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    out = capsys.readouterr().out
    for kind in FAULT_KINDS:
        assert f"  {kind} (" in out
        assert f"--fault {FAULT_KINDS[kind][2]}" in out
    assert "gateway_down:济安桥路@22:00+5h" in out


def test_per_device_report_intervals(tmp_path: Path) -> None:
    out = tmp_path / "city.csv"
    argv = ["simulate", "--lamps", "50", "--waterlevel", "4", "--write-registry", str(out)]
    assert main([*argv, "--report-interval", "60s,300s,15m"]) == 0
    text = out.read_text()
    intervals = {line.rsplit(",", 1)[1] for line in text.splitlines()[1:]}
    assert intervals == {"60", "300", "900"}
    assert main([*argv, "--report-interval", "1m..10m"]) == 0
    values = [float(line.rsplit(",", 1)[1]) for line in out.read_text().splitlines()[1:]]
    assert all(60 <= v <= 600 for v in values) and len(set(values)) > 10


# ---- replay anchors on readings -----------------------------------------------------------------


def test_shift_to_now_anchors_on_readings_not_a_stale_retained_status() -> None:
    hours_ago = 1_700_000_000_000
    live = hours_ago + 6 * 3_600_000
    messages = [
        Message(0, "city/jining/lamp/L-1/status", orjson.dumps({"online": True, "ts": hours_ago}), True),
        Message(500, "city/jining/waterlevel/W-1/telemetry", orjson.dumps([{"ts": hours_ago, "depth_cm": 1.0}, {"ts": live + 400, "depth_cm": 2.0}])),
        Message(1000, "city/jining/lamp/L-1/telemetry", orjson.dumps({"ts": live + 1000, "on": True})),
        Message(61_000, "city/jining/lamp/L-1/telemetry", orjson.dumps({"ts": live + 61_000, "on": True})),
    ]  # fmt: skip
    base = recording_base_ms(messages)
    assert base == live
    now = int(time.time() * 1000)
    delta = shift_delta_ms(base, messages[-1].offset_ms, now, 10.0)
    for m in shifted(messages, delta):
        if m.topic.endswith("/telemetry"):
            body = orjson.loads(m.payload)
            for item in body if isinstance(body, list) else [body]:
                assert item["ts"] <= now + m.offset_ms / 10 + 1  # never ahead of its send time


# ---- --check judges only this run's alerts -------------------------------------------------------


def _alert(rule: str, device: str) -> dict[str, Any]:
    at = "2026-07-15T22:10:00+08:00"  # event time: the same in every run of a scenario
    return {"id": f"{rule}:{device}", "rule": rule, "device": device, "state": "cleared",
            "raised_at": at, "updated_at": at}  # fmt: skip


async def test_check_counts_only_alerts_the_service_raised_during_its_run() -> None:
    started = time.time()
    earlier = dt.datetime.fromtimestamp(started - 3600, dt.UTC).isoformat()
    now = dt.datetime.fromtimestamp(started + 5, dt.UTC).isoformat()
    seen: list[str] = []
    items = [_alert("lamp_fault", "L-1"), _alert("lamp_dark", "L-2")]
    history = {
        "lamp_fault:L-1": [{"action": "raised", "at": earlier}, {"action": "acked", "at": now}],
        "lamp_dark:L-2": [{"action": "raised", "at": now}],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        path = request.url.path
        if path.endswith("/history"):
            return httpx.Response(200, json={"items": history[path.split("/")[-2]]})
        return httpx.Response(200, json={"items": items})

    result = await run_check(
        "http://svc",
        [ExpectedAlert("lamp_fault", "L-1")],
        {"L-1", "L-2"},
        timeout_s=0,
        since_ms=1_784_100_000_000,
        started_s=started,
        transport=httpx.MockTransport(handler),
    )
    assert result.missing == [("lamp_fault", "L-1")]  # the earlier run's alert does not count
    assert result.unexpected == [("lamp_dark", "L-2")]
    assert "since=2026-07-15T07%3A20%3A00" in seen[0]


# ---- load mode: what a store can keep ----------------------------------------------------------


def test_load_readings_unique_per_device_monotonic_energy_lit_by_the_sun() -> None:
    devices = LoadDevices(50)
    now = 1_784_120_000_000  # one millisecond for every message: the worst case
    seen: set[tuple[int, int]] = set()
    energy = [0.0] * 50
    for k in range(20_000):
        i = k % 50
        body = orjson.loads(devices.payload(i, now, True, k))
        assert (i, body["ts"]) not in seen
        seen.add((i, body["ts"]))
        assert body["energy"] >= energy[i]
        energy[i] = body["energy"]
    sun = SunTimes(LocationConfig())
    noon = int(
        dt.datetime(2026, 7, 15, 12, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp() * 1000
    )
    assert not sun.is_night(noon)
    day = orjson.loads(devices.payload(0, noon, sun.is_night(noon), 1))
    assert day["on"] is False and day["power"] < 1


def test_registry_with_a_sub_second_interval_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fast.csv"
    path.write_text("device_id,kind,report_interval_s\nL-1,lamp,0.001\n", encoding="utf-8")
    assert main(["simulate", "--dry-run", "--registry", str(path), "--duration", "1m"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "L-1 reports every 0.001 s" in err
