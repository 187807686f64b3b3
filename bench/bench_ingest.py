"""End-to-end ingest throughput by backlog drain, into a real InfluxDB 1.x.

    python bench/bench_ingest.py [N]        (default 100000)

1. Start a private Mosquitto (the shipped deploy/mosquitto.conf) and influxd on free ports.
2. Start `streetwatch run` once to register its persistent session, then stop it (SIGTERM).
3. Publish N QoS 1 lamp readings (unique device timestamps) while it is down.
4. Start it and time until all N points are in InfluxDB. Print readings/s, CPU s, peak RSS.
5. On the same backlog, a bare gmqtt client that only acks: the ceiling of the broker + client.
Run `python ../shared/peer/nodered-drain N` right before or after, for the peer's figure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import proc_stats, publish_backlog  # noqa: E402
from tests.servers import InfluxDB, Mosquitto  # noqa: E402
from tests.service import ServiceProcess  # noqa: E402


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 100_000
    tmp = Path(tempfile.mkdtemp(prefix="sw-bench-"))
    mosq = Mosquitto(tmp / "mosquitto").start()
    influx = InfluxDB(tmp / "influxdb").start()
    influx.create_database()
    env = {
        "STREETWATCH_MQTT__PORT": str(mosq.port),
        "STREETWATCH_INFLUXDB__URL": influx.url,
        "STREETWATCH_LOG__LEVEL": "WARNING",
        **({"STREETWATCH_ALERTS__ENABLED": "false"} if "--no-rules" in sys.argv else {}),
    }
    try:
        svc = ServiceProcess(tmp / "data", env).start()
        svc.terminate()
        pub_s = publish_backlog(mosq.port, n)
        print(f"backlog: {n} QoS 1 readings queued in {pub_s:.1f} s ({n / pub_s:,.0f} msg/s)")

        svc = ServiceProcess(tmp / "data", env)
        t0 = time.perf_counter()
        svc.start(wait_connected=False)
        assert svc.proc is not None
        pid = svc.proc.pid
        stats = proc_stats(pid)
        first: float | None = None
        startup_cpu = 0.0
        while True:
            stats = proc_stats(pid)
            try:
                if first is None and svc.metric("streetwatch_messages_received_total") > 0:
                    first = time.perf_counter()
                    startup_cpu = stats.cpu_s
                if svc.metric("streetwatch_points_written_total") >= n:
                    break
            except OSError:
                pass
            time.sleep(0.02)
        took = time.perf_counter() - t0
        first = first or t0
        stored = influx.count("lamp")
        rejected = svc.metric('streetwatch_rejected_total{reason="not_json"}')
        svc.terminate()
        print(
            f"streetwatch: {n} readings drained into InfluxDB in {took:.2f} s = "
            f"{n / took:,.0f} readings/s; CPU {stats.cpu_s:.1f} s; peak RSS {stats.peak_rss_mb:.0f} MB; "
            f"points stored {stored}; lost {n - stored}; dead-lettered {rejected:.0f}"
        )
        print(
            f"  of which start-up (process start → first message): {first - t0:.2f} s, "
            f"{startup_cpu:.1f} CPU s; after it: {n / (took - (first - t0)):,.0f} "
            f"readings/s, {(stats.cpu_s - startup_cpu) / n * 1e6:.0f} CPU µs per reading"
        )

        # The ceiling: same broker, same backlog, a client that only acks.
        bare = [sys.executable, str(REPO / "bench" / "bare_drain.py"), str(mosq.port), str(n)]
        subprocess.run([*bare, "register"], check=True)
        publish_backlog(mosq.port, n, t0=1795700000000)
        out = subprocess.run([*bare, "drain"], check=True, capture_output=True, text=True)
        bare_s = float(out.stdout.strip())
        print(f"bare gmqtt client (ack only, the ceiling): {n / bare_s:,.0f} msg/s")
        print(f"streetwatch / ceiling: {bare_s / took:.2f}")
    finally:
        mosq.stop()
        influx.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
