"""The demo's fleet: a small city that lives in the present, with its faults on a fast clock.

Timestamps are the wall clock (the service judges them against the real sun: lamps are lit only if
it is night where the demo runs), while report intervals, faults and the storm run `speed` times
faster, so a newcomer sees a cabinet go out, a lamp fail and an underpass flood within minutes.
The registry written for the service carries the sped-up report intervals, so "offline" means three
missed (fast) reports there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time
from pathlib import Path

from devices.registry import Device
from simulator.faults import FaultSpec, resolve_faults
from simulator.fleet import Fleet, generate_fleet, write_registry
from simulator.publish import BrokerOptions, MqttSink, play
from simulator.storm import Storm
from simulator.stream import RunPlan, generate

SIM_INTERVAL_S = 300.0  # devices' report interval in simulated time
CYCLE_S = 6 * 3600.0  # the fault schedule repeats every six simulated hours
DEMO_HOURS = 48.0  # wall hours of faults scheduled ahead; the fleet itself runs until stopped


def demo_fleet(*, lamps: int = 60, waterlevel: int = 6, seed: int = 1) -> Fleet:
    return generate_fleet(lamps, waterlevel, seed=seed, report_interval_s=SIM_INTERVAL_S)


def demo_registry(fleet: Fleet, speed: float) -> list[Device]:
    """The fleet as the service should see it: report intervals in wall seconds."""
    return [
        dataclasses.replace(d, report_interval_s=round(d.report_interval_s / speed, 3))
        for d in fleet.devices
    ]


def write_demo_registry(
    path: Path, *, speed: float, seed: int = 1, lamps: int = 60, waterlevel: int = 6
) -> None:
    """Write the demo fleet's registry CSV (call before starting the service)."""
    write_registry(
        demo_registry(demo_fleet(lamps=lamps, waterlevel=waterlevel, seed=seed), speed), path
    )


def demo_plan(
    *, prefix: str, speed: float, seed: int, lamps: int, waterlevel: int, start_ms: int
) -> RunPlan:
    fleet = demo_fleet(lamps=lamps, waterlevel=waterlevel, seed=seed)
    cabinets = list(fleet.cabinets())
    lamp_ids = [d.device_id for d in fleet.lamps]
    points = [d.device_id for d in fleet.waterlevel]
    out_cabinet = cabinets[len(cabinets) // 2] if cabinets else None
    # Lamps for single-lamp faults: not on the cabinet that goes out, so each alert stands alone.
    spare = [d.device_id for d in fleet.lamps if d.cabinet != out_cabinet] or lamp_ids
    cycles = max(1, math.ceil(DEMO_HOURS * 3600 * speed / CYCLE_S))
    specs: list[FaultSpec] = []
    storms: list[Storm] = []
    for c in range(cycles):
        base = c * CYCLE_S

        def at(minutes: float, base: float = base) -> str:
            return f"{base + minutes * 60:.0f}s"

        if len(spare) >= 4:
            specs += [
                FaultSpec("lamp_failure", spare[0], at(10), "2h"),
                FaultSpec("day_burning", spare[1], at(15), "2h"),
                FaultSpec("malformed", spare[2], at(50), None, {"reason": "all"}),
                FaultSpec("device_offline", spare[3], at(60), "1h"),
            ]
        if out_cabinet is not None:
            specs.append(FaultSpec("cabinet_out", out_cabinet, at(20), "90m"))
        if len(points) >= 2:
            specs.append(FaultSpec("low_battery", points[1], at(40), "2h", {"level": "15"}))
        if points:
            storms.append(Storm(base + 30 * 60, 2 * 3600, 70.0, peak=0.4, points=(points[0],)))
    faults = resolve_faults(specs, fleet, start_ms=start_ms, tz="Asia/Shanghai", seed=seed)
    water = {points[0]: {"gain": 1.0, "capacity_cm_min": 0.3, "tau_s": 900.0}} if points else {}
    return RunPlan(
        fleet=fleet,
        start_ms=start_ms,
        duration_s=None,
        seed=seed,
        prefix=prefix,
        faults=faults,
        storms=storms,
        time_scale=speed,
        water_params=water,
    )


async def run_demo_fleet(
    *,
    host: str,
    port: int,
    prefix: str,
    speed: float,
    seed: int = 1,
    lamps: int = 60,
    waterlevel: int = 6,
    registry_out: Path | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Publish the demo fleet to mqtt://host:port (MQTT 3.1.1, QoS 1) until `stop` is set.

    Args:
        host: broker host (the demo's embedded amqtt speaks MQTT 3.1.1 only; so do we).
        port: broker port.
        prefix: topic prefix (`mqtt.topic_prefix`).
        speed: how much faster than real time reports, faults and the storm run (e.g. 60).
        seed: the fleet's and the physics' seed.
        lamps: lamps in the fleet (over Jining's roads, in cabinets).
        waterlevel: waterlogging points; the first gets a storm every six simulated hours.
        registry_out: write the fleet's registry CSV here first (intervals in wall seconds).
        stop: set it to stop; the messages in flight are acknowledged before returning.
    """
    if not speed > 0 or math.isinf(speed):
        raise ValueError("demo speed must be a finite number > 0")
    if registry_out is not None:
        write_demo_registry(
            registry_out, speed=speed, seed=seed, lamps=lamps, waterlevel=waterlevel
        )
    plan = demo_plan(
        prefix=prefix,
        speed=speed,
        seed=seed,
        lamps=lamps,
        waterlevel=waterlevel,
        start_ms=int(time.time() * 1000),
    )
    sink = MqttSink(
        BrokerOptions(
            host=host,
            port=port,
            protocol="3.1.1",
            client_id="streetwatch-demo-fleet",
            connections=2,
        ),
        reconnect=True,
    )
    try:
        await sink.open()
        await play(generate(plan), sink, speed=1.0, stop=stop)
    finally:
        with contextlib.suppress(Exception):
            await sink.close()
