"""Simulator load mode against a private Mosquitto: achieved QoS 1 rate and ack latency.

    python bench/bench_simulator.py [--duration 20] [--rates 30000,max] [--processes 1,2]

Starts a Mosquitto with the shipped deploy/mosquitto.conf on a free port (tests.servers), runs
`simulate --rate` for each rate × process count (16 connections, 1000 in flight each, 5000 lamps),
and prints sent, acked, achieved msg/s and ack-latency percentiles. No subscriber: this is what the
publisher and the broker sustain; a subscribing service adds its own cost on the broker.
Also times the fleet stream itself (generation only) and the aiomqtt path (`--speed max`).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from simulator.clock import parse_start  # noqa: E402
from simulator.fleet import generate_fleet  # noqa: E402
from simulator.load import LoadOptions, run_load  # noqa: E402
from simulator.publish import BrokerOptions, MqttSink, percentile, play  # noqa: E402
from simulator.stream import RunPlan, generate  # noqa: E402
from tests.servers import Mosquitto  # noqa: E402


def _rate(text: str) -> float:
    return math.inf if text == "max" else float(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--rates", default="30000,max")
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sw-bench-sim-"))
    mosq = Mosquitto(tmp / "mosquitto").start()
    try:
        print(f"Mosquitto on 127.0.0.1:{mosq.port}; {args.duration:.0f} s per run")
        for procs in (int(p) for p in args.processes.split(",")):
            for rate in (_rate(r) for r in args.rates.split(",")):
                result = run_load(
                    LoadOptions(
                        port=mosq.port,
                        rate=rate,
                        duration_s=args.duration,
                        connections=args.connections,
                        processes=procs,
                    )
                )
                pct = result.percentiles()
                target = "max" if math.isinf(rate) else f"{rate:,.0f}"
                print(
                    f"load  target {target:>7} msg/s  processes {procs}  sent {result.sent:>9,}  "
                    f"acked {result.acked:>9,}  achieved {result.rate:>9,.0f} msg/s  ack "
                    + "  ".join(f"p{q:g} {v * 1000:.1f} ms" for q, v in pct.items())
                )
        # The fleet stream: 790 lamps + 12 points, 12 simulated hours.
        plan = RunPlan(
            fleet=generate_fleet(),
            start_ms=parse_start("2026-07-15T18:00+08:00"),
            duration_s=12 * 3600,
        )
        t = time.perf_counter()
        messages = list(generate(plan))
        gen_s = time.perf_counter() - t
        print(
            f"stream  {len(messages):,} messages (a 12 h night of 802 devices) generated in "
            f"{gen_s:.1f} s: {len(messages) / gen_s:,.0f} msg/s"
        )
        sink = MqttSink(BrokerOptions(port=mosq.port, connections=4, window=100))

        async def publish() -> None:
            await sink.open()
            await play(messages, sink, speed=math.inf)

        t = time.perf_counter()
        asyncio.run(publish())
        pub_s = time.perf_counter() - t
        lat = sorted(sink.stats.latencies)
        print(
            f"aiomqtt --speed max  {sink.stats.acked:,} acked in {pub_s:.1f} s: "
            f"{sink.stats.acked / pub_s:,.0f} msg/s  ack p50 {percentile(lat, 50) * 1000:.1f} ms  "
            f"p99 {percentile(lat, 99) * 1000:.1f} ms"
        )
    finally:
        mosq.stop()


if __name__ == "__main__":
    main()
