"""The simulator against a real Mosquitto: publish, record, load mode and the demo fleet."""

from __future__ import annotations

import asyncio
import io
import math
import time
from collections import defaultdict
from pathlib import Path

import aiomqtt
import orjson
import pytest

from devices.registry import load_registry
from simulator.clock import parse_start
from simulator.demo import run_demo_fleet
from simulator.faults import parse_fault_spec, resolve_faults
from simulator.fleet import generate_fleet
from simulator.load import LoadOptions, run_load
from simulator.publish import BrokerOptions, MqttSink, play
from simulator.record import record
from simulator.stream import Message, RunPlan, generate
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration
START = parse_start("2026-07-15T18:00+08:00")


def _plan() -> RunPlan:
    fleet = generate_fleet(40, 3, seed=2)
    faults = resolve_faults(
        [parse_fault_spec(s) for s in ("cabinet_out@1h+30m", "malformed:W-JAQ-01@2h")],
        fleet, start_ms=START, tz="Asia/Shanghai", seed=2,
    )  # fmt: skip
    return RunPlan(fleet=fleet, start_ms=START, duration_s=3 * 3600, seed=2, faults=faults)


def _by_device(messages: list[Message]) -> dict[str, list[tuple[str, bytes]]]:
    out: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
    for m in messages:
        out[m.topic.split("/")[-2]].append((m.topic, m.payload))
    return out


async def test_publish_and_record_through_a_real_broker(mosquitto: Mosquitto) -> None:
    expected = list(generate(_plan()))
    options = BrokerOptions(port=mosquitto.port, connections=3, window=50)
    buf = io.BytesIO()
    ready = asyncio.Event()
    stop = asyncio.Event()
    recorder = asyncio.create_task(
        record(
            BrokerOptions(port=mosquitto.port, client_id="rec"),
            buf,
            prefix="city/jining",
            stop=stop,
            ready=ready,
        )
    )
    await asyncio.wait_for(ready.wait(), 10)
    stats = await play(expected, await MqttSink(options).open(), speed=math.inf)
    assert stats.sent == stats.acked == len(expected)
    assert stats.failed == 0
    assert len(stats.latencies) == len(expected)
    for _ in range(100):
        if buf.getvalue().count(b"\n") >= len(expected):
            break
        await asyncio.sleep(0.05)
    stop.set()
    await recorder
    got = [Message.from_jsonl(line) for line in buf.getvalue().splitlines()]
    assert sorted((m.topic, m.payload) for m in got) == sorted(
        (m.topic, m.payload) for m in expected
    )
    # Per device, order is kept (one connection per device); offsets never go backwards.
    assert _by_device(got) == _by_device(expected)
    assert [m.offset_ms for m in got] == sorted(m.offset_ms for m in got)

    # Statuses are retained: a late subscriber still learns who is offline.
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="late") as client:
        await client.subscribe("city/jining/+/+/status", qos=1)
        retained: dict[str, bool] = {}
        try:
            async with asyncio.timeout(2):
                async for msg in client.messages:
                    assert msg.retain
                    retained[str(msg.topic).split("/")[-2]] = orjson.loads(msg.payload)["online"]
                    if len(retained) == 43:
                        break
        except TimeoutError:
            pass
    assert len(retained) == 43 and all(retained.values())  # the cabinet came back online


async def test_record_cli_roundtrip_replay(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """`--replay` of a dry run publishes the same messages, spaced by --speed."""
    from streetwatch.cli import main

    dry = tmp_path / "dry.jsonl"
    rc = await asyncio.to_thread(
        main,
        ["simulate", "--dry-run", "--out", str(dry), "--lamps", "5", "--waterlevel", "1",
         "--duration", "20m", "--seed", "4", "--start", "2026-07-15"],  # a July night
    )  # fmt: skip
    assert rc == 0
    rec = tmp_path / "rec.jsonl"
    recorder = asyncio.create_task(
        asyncio.to_thread(
            main,
            ["record", "--out", str(rec), "--port", str(mosquitto.port), "--duration", "4s"],
        )
    )
    await asyncio.sleep(1.0)
    rc = await asyncio.to_thread(
        main,
        ["simulate", "--replay", str(dry), "--speed", "600", "--port", str(mosquitto.port),
         "--no-progress", "--shift-to-now"],
    )  # fmt: skip
    assert rc == 0
    assert await recorder == 0
    sent = [Message.from_jsonl(x) for x in dry.read_bytes().splitlines()]
    got = [Message.from_jsonl(x) for x in rec.read_bytes().splitlines()]
    # Across connections only each device's own order is kept (as with real devices).
    assert sorted(m.topic for m in got) == sorted(m.topic for m in sent)
    assert {d: [t for t, _ in v] for d, v in _by_device(got).items()} == {
        d: [t for t, _ in v] for d, v in _by_device(sent).items()
    }
    # 20 simulated minutes at 600x: two seconds of wall time, spacing kept.
    span = (got[-1].offset_ms - got[0].offset_ms) / 1000
    assert span == pytest.approx(sent[-1].offset_s / 600, abs=0.3)
    ts_sent = sorted(orjson.loads(m.payload)["ts"] for m in sent)
    ts_got = sorted(orjson.loads(m.payload)["ts"] for m in got)
    deltas = {b - a for a, b in zip(ts_sent, ts_got, strict=True)}
    assert len(deltas) == 1 and deltas.pop() > 100 * 86_400_000  # shifted from July to now


def test_load_mode_counts_acks(mosquitto: Mosquitto) -> None:
    result = run_load(
        LoadOptions(port=mosquitto.port, rate=4000, duration_s=1.0, connections=4, devices=100)
    )
    assert result.errors == []
    assert result.acked == result.sent
    assert 3000 <= result.sent <= 4100
    assert len(result.latencies) == result.acked
    pct = result.percentiles()
    assert 0 < pct[50] <= pct[99] < 1.0


async def test_demo_fleet_publishes_live(mosquitto: Mosquitto, tmp_path: Path) -> None:
    stop = asyncio.Event()
    seen: dict[str, int] = defaultdict(int)
    registry = tmp_path / "demo.csv"

    async def listen() -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="demo-sub") as client:
            await client.subscribe("demo/#", qos=1)
            async for msg in client.messages:
                seen[str(msg.topic).rsplit("/", 1)[1]] += 1
                if str(msg.topic).endswith("telemetry"):
                    body = orjson.loads(msg.payload)
                    assert abs(body["ts"] / 1000 - time.time()) < 5

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0.3)
    fleet = asyncio.create_task(
        run_demo_fleet(
            host="127.0.0.1", port=mosquitto.port, prefix="demo", speed=600, lamps=20,
            waterlevel=2, registry_out=registry, stop=stop,
        )
    )  # fmt: skip
    await asyncio.sleep(4)
    stop.set()
    await asyncio.wait_for(fleet, 10)
    listener.cancel()
    devices = load_registry(registry)
    assert len(devices) == 22
    assert {d.report_interval_s for d in devices} == {0.5}
    assert seen["status"] >= 22
    assert seen["telemetry"] > 100  # 22 devices every 0.5 s for 4 s
    assert seen["event"] >= 1  # the lamp failure at 10 simulated minutes (1 s)


async def _retained_statuses(port: int, prefix: str = "city/jining") -> dict[str, bytes]:
    """The retained status messages a fresh subscriber is handed."""
    got: dict[str, bytes] = {}
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"probe-{time.monotonic_ns()}") as c:
        await c.subscribe(f"{prefix}/+/+/status", qos=1)
        messages = c.messages.__aiter__()
        while True:
            try:
                msg = await asyncio.wait_for(messages.__anext__(), 1.0)
            except TimeoutError:
                return got
            if msg.retain:
                got[str(msg.topic)] = bytes(msg.payload)  # type: ignore[arg-type]


async def test_cleanup_clears_the_retained_statuses_a_run_left(mosquitto: Mosquitto) -> None:
    from streetwatch.cli import main

    fleet = ["--lamps", "12", "--waterlevel", "2", "--duration", "20m", "--seed", "3"]
    port = ["--port", str(mosquitto.port), "--no-progress"]
    run = ["simulate", *fleet, *port, "--speed", "max", "--fault", "offline@1m+10m"]
    assert await asyncio.to_thread(main, run) == 0
    left = await _retained_statuses(mosquitto.port)
    assert len(left) == 14
    assert await asyncio.to_thread(main, ["simulate", *fleet, *port, "--cleanup"]) == 0
    assert await _retained_statuses(mosquitto.port) == {}
