"""Soak: `streetwatch run` for an hour at 2,000 msg/s with the storm scenario on top.

Real Mosquitto, real influxd, the service as a subprocess. Every `--sample` seconds it records the
service's RSS, spool size, lag (end to end: how long ago the newest reading now queryable in
InfluxDB was published) and open file descriptors, writes them to a CSV and draws them
as a PNG (matplotlib: `pip install -e '.[bench]'`). At the end every reading of the load is checked
in InfluxDB (lost / doubled). Flat lines are the goal.

    scripts/soak --duration 60m --rate 2000 --png docs/soak.png
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.faults.cluster import Cluster, open_fds, rss_mb
from tests.faults.load import LedgerLoad
from tests.faults.verify import verify

FIELDS = ["minute", "rss_mb", "spool_mb", "lag_s", "open_fds", "acked", "written"]


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


def _lag_s(cluster: Cluster, load: LedgerLoad, timeline: list[tuple[float, int]]) -> float:
    """End to end: now minus when the newest reading of device F0000 now in InfluxDB was made."""
    series = cluster.influx.query('SELECT last("on") FROM "lamp" WHERE "device" = \'F0000\'')
    if not series or not timeline:
        return 0.0
    ts = int(series[0]["values"][0][0])
    k = (ts - load.ledger.t0_ms) * load.ledger.devices  # that reading's identity
    made = next((when for when, generated in timeline if generated > k), timeline[-1][0])
    return max(0.0, time.monotonic() - made)


def draw(rows: list[dict[str, float]], png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    minutes = [r["minute"] for r in rows]
    for ax, key, label in zip(
        axes,
        ["rss_mb", "spool_mb", "lag_s", "open_fds"],
        ["RSS (MB)", "spool (MB)", "lag (s)", "open fds"],
        strict=True,
    ):
        ax.plot(minutes, [r[key] for r in rows], marker=".")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("minutes")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=90)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", default="60m")
    p.add_argument("--rate", type=float, default=2000.0)
    p.add_argument("--sample", default="60s")
    p.add_argument("--storm-at", default="5m", help="start the storm scenario after this long")
    p.add_argument("--storm-speed", default="20", help="storm scenario speed (10 h at 20x: 30 min)")
    p.add_argument("--png", default="docs/soak.png")
    p.add_argument("--csv", default=None, help="default: the PNG's name with .csv")
    p.add_argument("--workdir", default=None)
    args = p.parse_args(argv)
    duration, sample, storm_at = (
        _seconds(args.duration),
        _seconds(args.sample),
        _seconds(args.storm_at),
    )
    png = Path(args.png)
    csv_path = Path(args.csv) if args.csv else png.with_suffix(".csv")
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="streetwatch-soak-"))
    cluster = Cluster(workdir).start()
    load = LedgerLoad(host="127.0.0.1", port=cluster.broker.port, rate=args.rate).start()
    storm: subprocess.Popen[bytes] | None = None
    rows: list[dict[str, float]] = []
    timeline: list[tuple[float, int]] = []  # (when, readings generated so far)
    t0 = time.monotonic()
    storm_log = open(workdir / "storm.log", "wb")  # noqa: SIM115 - closed at the end
    try:
        next_sample = t0
        while time.monotonic() - t0 < duration:
            now = time.monotonic()
            if storm is None and now - t0 >= storm_at:
                storm = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "streetwatch.cli",
                        "simulate",
                        "--scenario",
                        "storm",
                        "--speed",
                        args.storm_speed,
                        "--port",
                        str(cluster.broker.port),
                        "--no-progress",
                    ],
                    stdout=storm_log,
                    stderr=subprocess.STDOUT,
                )
            if now >= next_sample:
                pid = cluster.svc.proc.pid  # type: ignore[union-attr]
                health = cluster.svc.health()
                written = cluster.svc.metric("streetwatch_points_written_total")
                acked = load.stats.acked
                row = {
                    "minute": round((now - t0) / 60, 2),
                    "rss_mb": round(rss_mb(pid), 1),
                    "spool_mb": round(float(health["spool_bytes"]) / 2**20, 2),  # type: ignore[arg-type]
                    "lag_s": round(_lag_s(cluster, load, timeline), 2),
                    "open_fds": open_fds(pid),
                    "acked": acked,
                    "written": written,
                }
                rows.append(row)
                print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
                with csv_path.open("w", newline="") as fh:
                    w = csv.DictWriter(fh, FIELDS)
                    w.writeheader()
                    w.writerows(rows)
                next_sample += sample
            timeline.append((time.monotonic(), load.stats.generated))
            time.sleep(0.2)
        stats = load.stop(drain_timeout=300)
        cluster.wait_drained(timeout=600)
        verdict = verify(cluster.influx, load.ledger, load.acked_map)
        storm_rc = storm.poll() if storm is not None else None
        title = (
            f"soak {args.duration} at {args.rate:.0f} msg/s + storm: published {verdict.published}, "
            f"lost {verdict.lost}, doubled {verdict.doubled}"
        )
        print(title, f"storm exit={storm_rc}", f"load={stats}", flush=True)
        draw(rows, png, title)
        for key in FIELDS[1:5]:
            series = [r[key] for r in rows]
            print(f"{key}: first {series[0]} last {series[-1]} max {max(series)}")
        return 0 if verdict.ok else 1
    finally:
        if storm is not None and storm.poll() is None:
            storm.terminate()
            storm.wait(10)
        storm_log.close()
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
