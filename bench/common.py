"""Shared pieces of the benchmarks: process sampling and a QoS 1 backlog publisher."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import orjson
import paho.mqtt.client as mqtt

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class ProcStats:
    cpu_s: float
    peak_rss_mb: float


def proc_stats(pid: int) -> ProcStats:
    """CPU seconds (user+sys) and peak RSS (VmHWM) of a live process, from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
    hwm = 0.0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024
    return ProcStats(cpu, hwm)


def lamp_payload(i: int, t0: int) -> bytes:
    """The same reading shape as the peer's loadgen (unique device timestamps)."""
    return orjson.dumps(
        {
            "ts": t0 + i,
            "seq": i,
            "voltage": 221.5,
            "current": 0.41,
            "power": 88.0,
            "power_factor": 0.95,
            "energy": 1234.5,
            "dim": 100,
            "on": True,
        }
    )


def recent_t0() -> int:
    """A day ago, in ms: well inside ingest.max_age, and never in the future."""
    return time.time_ns() // 1_000_000 - 86_400_000


def publish_backlog(
    port: int,
    n: int,
    *,
    clients: int = 4,
    devices: int = 5000,
    prefix: str = "city/jining",
    t0: int | None = None,
) -> float:
    """Publish n QoS 1 lamp readings over several connections; wait for every PUBACK. Returns s.

    Timestamps start at t0 (default: a day ago; the service refuses readings older than
    ingest.max_age, 30 days by default, so a fixed date would stop working a month later)."""
    if t0 is None:
        t0 = recent_t0()
    acked = [0] * clients

    def worker(k: int) -> None:
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{k}", protocol=mqtt.MQTTv5
        )
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)

        def on_publish(cl: object, ud: object, mid: int, rc: object, props: object) -> None:
            acked[k] += 1

        c.on_publish = on_publish
        c.connect("127.0.0.1", port)
        c.loop_start()
        mine = range(k, n, clients)
        for i in mine:
            dev = f"L{i % devices:05d}"
            c.publish(f"{prefix}/lamp/{dev}/telemetry", lamp_payload(i, t0), qos=1)
        while acked[k] < len(mine):
            time.sleep(0.01)
        c.loop_stop()
        c.disconnect()

    t = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - t
