"""End-to-end ingest throughput by backlog drain, into a real InfluxDB 1.x.

    python bench/bench_ingest.py [N] [--runs R] [--no-rules]        (default N = 100000)

1. Start a private Mosquitto (the shipped deploy/mosquitto.conf) and influxd on free ports.
2. Start `streetwatch run` once to register its persistent session, then stop it (SIGTERM).
3. Publish N QoS 1 lamp readings (unique device timestamps) while it is down.
4. Start it and time until all N points are in InfluxDB. Print readings/s, CPU s, peak RSS.
5. On the same backlog, a bare gmqtt client that only acks: the ceiling of the broker + client.
Run `python ../shared/peer/nodered-drain N` right before or after, for the peer's figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import proc_stats, publish_backlog, recent_t0  # noqa: E402
from tests.servers import InfluxDB, Mosquitto  # noqa: E402
from tests.service import ServiceProcess  # noqa: E402


def drain_once(n: int, tmp: Path, extra_env: dict[str, str], k: int) -> float:
    """Queue n readings while the service is down, start it, time until all are in InfluxDB.

    Each run gets a fresh broker and influxd: a dropped database keeps influxd busy deleting and
    compacting in the background, which made every later run slower than the one before."""
    with (
        Mosquitto(tmp / f"mosquitto-{k}").start() as mosq,
        InfluxDB(tmp / f"influxdb-{k}").start() as influx,
    ):
        influx.create_database()
        env = {
            "STREETWATCH_MQTT__PORT": str(mosq.port),
            "STREETWATCH_INFLUXDB__URL": influx.url,
            **extra_env,
        }
        return _drain(n, tmp / f"data-{k}", mosq, influx, env, k)


def _drain(
    n: int, data: Path, mosq: Mosquitto, influx: InfluxDB, env: dict[str, str], k: int
) -> float:
    ServiceProcess(data, env).start().terminate()  # registers the persistent session
    pub_s = publish_backlog(mosq.port, n, t0=recent_t0() - 20 * n + k * 10 * n)
    print(f"run {k + 1}: backlog of {n} QoS 1 readings queued in {pub_s:.1f} s")
    svc = ServiceProcess(data, env)
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
    rejected = sum(
        float(line.split()[-1])
        for line in svc.metrics().splitlines()
        if line.startswith("streetwatch_rejected_total")
    )
    svc.terminate()
    print(
        f"  streetwatch: {n} readings drained into InfluxDB in {took:.2f} s = "
        f"{n / took:,.0f} readings/s; CPU {stats.cpu_s:.1f} s; peak RSS {stats.peak_rss_mb:.0f} MB; "
        f"points stored {stored}; lost {n - stored}; dead-lettered {rejected:.0f}"
    )
    print(
        f"  of which start-up (process start → first message): {first - t0:.2f} s, "
        f"{startup_cpu:.1f} CPU s; after it: {n / (took - (first - t0)):,.0f} "
        f"readings/s, {(stats.cpu_s - startup_cpu) / n * 1e6:.0f} CPU µs per reading"
    )
    return took


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("n", nargs="?", type=int, default=100_000, help="readings in the backlog")
    ap.add_argument("--runs", type=int, default=1, help="drains to time (the machine drifts)")
    ap.add_argument("--no-rules", action="store_true", help="alerts and rules off")
    args = ap.parse_args()
    n = args.n
    tmp = Path(tempfile.mkdtemp(prefix="sw-bench-"))
    env = {
        "STREETWATCH_LOG__LEVEL": "WARNING",
        **({"STREETWATCH_ALERTS__ENABLED": "false"} if args.no_rules else {}),
    }
    times = [drain_once(n, tmp, env, k) for k in range(args.runs)]
    mosq = Mosquitto(tmp / "mosquitto-bare").start()
    try:
        best, median = min(times), statistics.median(times)
        print(
            f"streetwatch over {args.runs} run(s): median {n / median:,.0f} readings/s, "
            f"best {n / best:,.0f} readings/s (from process start)"
        )
        # The ceiling: same broker, a backlog of the same size, a client that only acks.
        bare = [sys.executable, str(REPO / "bench" / "bare_drain.py"), str(mosq.port), str(n)]
        subprocess.run([*bare, "register"], check=True)
        publish_backlog(mosq.port, n, t0=recent_t0())
        out = subprocess.run([*bare, "drain"], check=True, capture_output=True, text=True)
        bare_s = float(out.stdout.strip())
        print(f"bare gmqtt client (ack only, the ceiling): {n / bare_s:,.0f} msg/s")
        print(f"streetwatch (median) / ceiling: {bare_s / median:.2f}")
    finally:
        mosq.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
