"""Rule engine cost per reading with every standard rule on, over a realistic fleet.

790 lamps on 40 cabinets (rated 100–250 W, reporting every 300 s) and 40 waterlogging points
(every 60 s): a night of readings, with a few faults (dark lamps, a sag, a storm at one point) so
that rules change state as they would. Prints figures; never asserts timing.

    .venv/bin/python bench/bench_rules.py [--hours 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devices.location import LocationConfig
from devices.messages import Observation
from devices.registry import Device, Registry
from rules.config import RulesConfig
from rules.engine import RuleEngine
from rules.testing import RecordingSink, lamp, water

CST = dt.timezone(dt.timedelta(hours=8))
START = int(dt.datetime(2024, 7, 1, 20, 30, tzinfo=CST).timestamp() * 1000)
CLASSES = ("expressway", "main", "secondary", "branch")


def fleet() -> Registry:
    rnd = random.Random(1)
    devices = [
        Device(
            f"L{i:04d}",
            "lamp",
            road=f"路{i // 40}",
            road_class=CLASSES[(i // 40) % 4],
            cabinet=f"C{i // 20:02d}",
            rated_w=float(rnd.choice([100, 150, 200, 250])),
            report_interval_s=300,
        )
        for i in range(790)
    ]
    devices += [
        Device(f"W{i:02d}", "waterlevel", road=f"路{i}", point=f"积水点{i}", report_interval_s=60)
        for i in range(40)
    ]
    return Registry(devices)


def night(registry: Registry, hours: float) -> list[Observation]:
    rnd = random.Random(2)
    end = START + int(hours * 3_600_000)
    out: list[Observation] = []
    for device in registry:
        interval = int(device.report_interval_s * 1000)
        t = START + rnd.randrange(interval)
        depth = 0.0
        while t < end:
            if device.kind == "lamp":
                rated = device.rated_w or 150.0
                dark = device.device_id.endswith("7") and t > START + 3_600_000
                volts = 190.0 if device.cabinet == "C05" else 220.0 + rnd.uniform(-4, 4)
                out.append(
                    lamp(
                        device.device_id,
                        t,
                        received=t + 150,
                        on=not dark,
                        dim=100.0,
                        power=0.0 if dark else rated * rnd.uniform(0.93, 1.05),
                        voltage=volts,
                        current=0.0 if dark else rated / volts,
                        power_factor=0.95,
                        energy=1000.0 + (t - START) / 3.6e6,
                        temperature=45.0,
                        rssi=-80.0,
                    )
                )
            else:
                if device.device_id == "W03":
                    depth = min(60.0, depth + rnd.uniform(0, 2.5))
                out.append(
                    water(
                        device.device_id,
                        t,
                        round(depth, 1),
                        received=t + 150,
                        rain_mm=0.0,
                        battery=85.0,
                        rssi=-90.0,
                    )
                )
            t += interval
    out.sort(key=lambda o: o.received_ms)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    registry = fleet()
    observations = night(registry, args.hours)
    print(
        f"fleet: {len(registry.by_kind('lamp'))} lamps, {len(registry.by_kind('waterlevel'))} "
        f"water points; {len(observations)} readings over {args.hours:g} h of event time"
    )
    best = float("inf")
    for run in range(args.repeat):
        sink = RecordingSink()
        engine = RuleEngine(RulesConfig(), LocationConfig(), registry, sink)
        gc.collect()
        started = time.perf_counter()
        observe = engine.observe
        last_tick = observations[0].received_ms
        for obs in observations:
            observe(obs)
            if obs.received_ms - last_tick >= 1000:  # the app's 1 s tick, on the simulated wall
                last_tick = obs.received_ms
                engine.tick(last_tick)
        elapsed = time.perf_counter() - started
        per = elapsed / len(observations) * 1e6
        best = min(best, per)
        stats = engine.stats()
        print(
            f"run {run + 1}: {per:.2f} µs per reading ({len(observations) / elapsed:,.0f}/s), "
            f"{stats['conditions']} conditions, {stats['timers']} timers queued"
        )
    print(
        f"best: {best:.2f} µs per reading with all {len(RulesConfig().all_rules())} standard rules on"
    )
    save_started = time.perf_counter()
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        engine = RuleEngine(
            RulesConfig(), LocationConfig(), registry, RecordingSink(), Path(tmp) / "s.sqlite"
        )
        for obs in observations:
            engine.observe(obs)
        save_started = time.perf_counter()
        engine.save_state()
        full = time.perf_counter() - save_started
        later = int(args.hours * 3_600_000) + 60_000
        for obs in observations[:100]:  # 100 fresh readings: the few seconds between two saves
            ts = (obs.ts_ms or 0) + later
            engine.observe(
                Observation(
                    obs.kind,
                    obs.device_id,
                    obs.channel,
                    obs.data.model_copy(update={"ts": ts}),
                    ts + 150,
                )
            )
        small_started = time.perf_counter()
        engine.save_state()
        small = time.perf_counter() - small_started
        engine.close()
    print(
        f"save_state: {full * 1000:.1f} ms with every device changed, {small * 1000:.1f} ms after 100 readings"
    )


if __name__ == "__main__":
    main()
