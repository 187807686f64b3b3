"""Publish → alert latency through the real broker, under background load.

    python bench/bench_alert_latency.py [--rate 5000] [--probes 200]

Starts a private Mosquitto, InfluxDB and `streetwatch run` (rules and alerts on). Background: QoS 1
waterlevel readings at --rate msg/s from 2,000 dry points (they raise nothing), sent over raw
sockets by two light processes. Probes: a lamp
publishes `lampFailure raised`; the latency is from its publish to the alert arriving on
`{prefix}/alerts/lamp_fault/{device}` at a subscriber (one process, one clock).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.servers import InfluxDB, Mosquitto  # noqa: E402
from tests.service import ServiceProcess  # noqa: E402


async def _raw_load(port: int, rate: float, k: int) -> None:
    """QoS 1 readings at `rate` msg/s over a raw MQTT 3.1.1 socket: the load costs almost no CPU,
    so what the probes measure is the service, not the load generator competing for the cores."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    cid = f"bg-{k}".encode()
    var = b"\x00\x04MQTT\x04\x02\x00\x3c"
    body = var + len(cid).to_bytes(2, "big") + cid
    writer.write(b"\x10" + bytes([len(body)]) + body)
    await reader.readexactly(4)  # CONNACK

    async def drain_acks() -> None:
        while True:
            await reader.readexactly(4)  # PUBACKs

    acks = asyncio.create_task(drain_acks())
    loop = asyncio.get_running_loop()
    start = loop.time()
    i = 0
    tick = 0.01
    while True:
        due = int((loop.time() - start) * rate)
        packets = []
        while i < due:
            topic = f"city/jining/waterlevel/BG{k}-{i % 1000}/telemetry".encode()
            payload = b'{"ts":%d,"depth_cm":0.0,"battery":90.0}' % (time.time_ns() // 1_000_000)
            mid = i % 65535 + 1
            rest = len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big") + payload
            n = len(rest)
            length = bytes([n]) if n < 128 else bytes([(n & 0x7F) | 0x80, n >> 7])
            packets.append(b"\x32" + length + rest)
            i += 1
        writer.write(b"".join(packets))
        await asyncio.sleep(tick)
        if acks.done():
            return


def background(port: int, rate: float, k: int) -> None:
    asyncio.run(_raw_load(port, rate, k))


def main() -> None:
    if sys.argv[1:2] == ["--background"]:
        background(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=5000)
    ap.add_argument("--probes", type=int, default=200)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sw-latency-"))
    mosq = Mosquitto(tmp / "mosquitto").start()
    influx = InfluxDB(tmp / "influxdb").start()
    svc = ServiceProcess(
        tmp / "data",
        {
            "STREETWATCH_MQTT__PORT": str(mosq.port),
            "STREETWATCH_INFLUXDB__URL": influx.url,
            "STREETWATCH_LOG__LEVEL": "WARNING",
        },
    ).start()
    arrived: dict[str, float] = {}
    cond = threading.Condition()

    def on_message(client: object, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.payload:
            with cond:
                arrived.setdefault(msg.topic, time.perf_counter())
                cond.notify_all()

    sub = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="latency-sub", protocol=mqtt.MQTTv5
    )
    sub.on_message = on_message
    sub.connect("127.0.0.1", mosq.port)
    sub.subscribe("city/jining/alerts/lamp_fault/#", qos=1)
    sub.loop_start()
    probe = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id="latency-probe", protocol=mqtt.MQTTv5
    )
    probe.connect("127.0.0.1", mosq.port)
    probe.loop_start()

    # The background load runs in its own processes: publisher threads in this process would
    # compete with the probe's subscriber for the GIL and show up as alert latency.
    clients = 2
    loaders = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--background",
                str(mosq.port),
                str(args.rate / clients),
                str(k),
            ]
        )
        for k in range(clients)
    ]
    time.sleep(2.0)  # let the background load settle
    received_before = svc.metric("streetwatch_messages_received_total")
    t_load = time.perf_counter()
    latencies: list[float] = []
    tag = int(time.time())
    try:
        for i in range(args.probes):
            device = f"P{tag}-{i}"
            topic = f"city/jining/alerts/lamp_fault/{device}"
            now = time.time_ns() // 1_000_000
            t0 = time.perf_counter()
            probe.publish(
                f"city/jining/lamp/{device}/event",
                orjson.dumps({"ts": now, "event": "lampFailure", "state": "raised"}),
                qos=1,
            )
            with cond:
                cond.wait_for(lambda topic=topic: topic in arrived, timeout=10)  # type: ignore[misc]
            if topic in arrived:
                latencies.append((arrived[topic] - t0) * 1000)
            time.sleep(0.05)
        load_rate = (svc.metric("streetwatch_messages_received_total") - received_before) / (
            time.perf_counter() - t_load
        )
    finally:
        for proc in loaders:
            proc.terminate()
            proc.wait()
        sub.loop_stop()
        probe.loop_stop()
        svc.terminate()
        mosq.stop()
        influx.stop()
    latencies.sort()
    if not latencies:
        print("no alert arrived")
        return
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"background load taken by the service: {load_rate:,.0f} msg/s (asked {args.rate:,.0f})\n"
        f"publish → alert on MQTT, {len(latencies)}/{args.probes} probes: "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
