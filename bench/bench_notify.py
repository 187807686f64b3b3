"""Crew notices through a receiver outage: delivered / expected, duplicates, time to deliver after
the receiver came back, and the other crew's delivery time while the first crew's receiver is dead.

    python bench/bench_notify.py [--alerts 20] [--down 60] [--retry-min 5] [--retry-max 300]

The real alert store, outbox and workers (the service's HTTP app, alert lifecycle and notifier, as
the tests wire them), two crews with apprise json:// receivers on local ports. Crew A's receiver is
down for --down seconds while alerts are raised for both crews, then comes back.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from alerts.model import wall_ms  # noqa: E402
from notify.receiver import JsonReceiver  # noqa: E402
from tests.liveapp import LiveApp  # noqa: E402
from tests.notify_support import REGISTRY  # noqa: E402
from tests.servers import free_port  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=20, help="per crew")
    parser.add_argument("--down", type=float, default=60.0, help="crew A's receiver down, s")
    parser.add_argument("--retry-min", type=float, default=5.0)
    parser.add_argument("--retry-max", type=float, default=60.0)
    parser.add_argument("--max-per-minute", type=int, default=100)
    args = parser.parse_args()

    a, b = JsonReceiver(free_port()), JsonReceiver(free_port()).start()
    notify = {
        "retry_min_s": args.retry_min,
        "retry_max_s": args.retry_max,
        "max_per_minute": args.max_per_minute,
        "digest_wait_s": 2.0,
        "crews": [
            {"name": "A", "urls": [a.url()], "roads": ["洸河路"]},
            {"name": "B", "urls": [b.url()], "roads": ["红星路"]},
        ],
    }
    with tempfile.TemporaryDirectory() as tmp:
        live = LiveApp(Path(tmp) / "data", overrides={"notify": notify}, registry_csv=REGISTRY)
        with live:
            ids_a, ids_b, b_lat = [], [], []
            devs_a = [f"A-{i:03d}" for i in range(args.alerts)]
            devs_b = [f"B-{i:03d}" for i in range(args.alerts)]
            t0 = time.monotonic()
            step = args.down * 0.8 / max(1, args.alerts)
            for i in range(args.alerts):
                ids_a.append(
                    live.raise_alert(
                        rule="lamp_dark",
                        device=f"A-{i:03d}",
                        kind="lamp",
                        road="洸河路",
                        at=wall_ms(),
                    ).id
                )
                raised = time.monotonic()
                ids_b.append(
                    live.raise_alert(
                        rule="lamp_dark",
                        device=f"B-{i:03d}",
                        kind="lamp",
                        road="红星路",
                        at=wall_ms(),
                    ).id
                )
                b.wait(lambda got, d=f"B-{i:03d}": any(d in n["message"] for n in got), 120)
                b_lat.append(time.monotonic() - raised)
                time.sleep(max(0.0, step - (time.monotonic() - raised)))
            time.sleep(max(0.0, args.down - (time.monotonic() - t0)))
            up = time.monotonic()
            a.start()
            a.wait(lambda got: all(any(i in n["message"] for n in got) for i in devs_a), 3600)
            took = time.monotonic() - up
            time.sleep(3.0)
            failed = sum(w.failed for w in live.service.notifier.workers.values())
        a.stop()
        b.stop()
    for name, rx, ids in (("A", a, devs_a), ("B", b, devs_b)):
        # A digest names each change by device, rule and short id; a single notice by all of it.
        named = Counter(i for n in rx.received for i in ids if i in n["message"])
        print(
            f"crew {name}: delivered {len(named)}/{len(ids)}, duplicates "
            f"{sum(named.values()) - len(named)}, {len(rx.received)} messages"
        )
    print(
        f"crew A's receiver down {args.down:g} s ({failed} failed attempts): every notice delivered"
        f" {took:.1f} s after it came back (retry {args.retry_min:g}…{args.retry_max:g} s)"
    )
    print(
        f"crew B while A was dead: median {statistics.median(b_lat) * 1000:.0f} ms, "
        f"max {max(b_lat) * 1000:.0f} ms from raise to its receiver"
    )


if __name__ == "__main__":
    main()
