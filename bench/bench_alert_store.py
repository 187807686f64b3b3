"""The alert store with a big history: list queries per filter, the stream's bounded catch-up, and
the retention purge. Prints figures; asserts nothing.

    .venv/bin/python -m bench.bench_alert_store --closed 200000 --open 2000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson

from alerts.model import Alert, wall_ms
from alerts.store import AlertStore
from alerts.testing import cond

RULES = ("water_level", "lamp_dark", "device_offline", "battery_low")
SEVERITIES = ("critical", "major", "minor", "warning")


def fill(path: Path, closed: int, open_: int) -> None:
    """Closed alerts written straight into the file (fast); open ones through the store."""
    store = AlertStore(path).open()
    db = store._conn()
    now = wall_ms()
    db.execute("BEGIN")
    for i in range(closed):
        at = now - (i % 800) * 86_400_000 - i
        alert = Alert(
            id=uuid.uuid4().hex,
            rule=RULES[i % 4],
            device=f"D{i % 5000:05d}",
            kind="lamp",
            severity=SEVERITIES[i % 4],  # type: ignore[arg-type]
            state="closed",
            message="m",
            raised_at=at,
            updated_at=at,
            opened_at=at,
        )
        db.execute(
            "INSERT INTO alerts (id, rule, device, state, severity, raised_at, updated_at, overdue,"
            " data) VALUES (?, ?, ?, 'closed', ?, ?, ?, 0, ?)",
            (
                alert.id,
                alert.rule,
                alert.device,
                alert.severity,
                at,
                at,
                orjson.dumps(alert.to_record()).decode(),
            ),
        )
        for action in ("raised", "cleared", "closed"):
            db.execute(
                "INSERT INTO audit (alert_id, action, at, who, state_to) VALUES (?, ?, ?, 'x', 'closed')",
                (alert.id, action, at),
            )
    db.execute("COMMIT")
    for i in range(open_):
        store.on_condition(cond(device=f"W{i:05d}", at=now + i))
    store.shutdown()


def timed(fn: Callable[[], object], runs: int = 20) -> float:
    took = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        took.append(time.perf_counter() - t0)
    return statistics.median(took) * 1000


def probe_lock(store: AlertStore, work: Callable[[], object]) -> list[float]:
    """Run `work` in a thread while timing how long taking the store's lock waits (what the rule
    engine on the event loop would feel)."""
    waits: list[float] = []
    worker = threading.Thread(target=work)
    worker.start()
    while worker.is_alive():
        t = time.perf_counter()
        with store._lock:
            pass
        waits.append(time.perf_counter() - t)
        time.sleep(0.005)
    worker.join()
    return waits or [0.0]


def probe_writes(store: AlertStore, work: Callable[[], object]) -> list[float]:
    """Run `work` in a thread while timing alert changes (a raise or clear, committed)."""
    took: list[float] = []
    worker = threading.Thread(target=work)
    worker.start()
    i = 0
    while worker.is_alive():
        i += 1
        c = cond(device="probe", at=wall_ms() + i, active=bool(i % 2))
        t = time.perf_counter()
        store.on_condition(c)
        took.append(time.perf_counter() - t)
        time.sleep(0.005)
    worker.join()
    return took or [0.0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--closed", type=int, default=200_000)
    parser.add_argument("--open", type=int, default=2_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alerts.sqlite"
        t0 = time.perf_counter()
        fill(path, args.closed, args.open)
        print(f"filled {args.closed} closed + {args.open} open in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        store = AlertStore(path).open()
        print(f"open (loads the open alerts): {(time.perf_counter() - t0) * 1000:.0f} ms")
        for label, kw in [
            ("no filter", {}),
            ("state=open", {"state": "open"}),
            ("state=closed", {"state": "closed"}),
            ("rule", {"rule": "lamp_dark"}),
            ("device", {"device": "D00042"}),
            ("severity", {"severity": "critical"}),
            ("since (1 day)", {"since": wall_ms() - 86_400_000}),
            ("overdue", {"overdue": True}),
        ]:
            ms = timed(lambda kw=kw: store.list(limit=1000, **kw))  # type: ignore[misc]
            print(f"list {label:<14} limit 1000: {ms:7.2f} ms (median of 20)")
        seq = store.last_seq()
        waits = probe_lock(
            store, lambda: timed(lambda: store.changed_since(seq - 5000, limit=1001), runs=5)
        )
        ms = timed(lambda: store.changed_since(seq - 5000, limit=1001), runs=5)
        print(
            f"stream catch-up, 5000 changes behind, bounded to 1001 alerts: {ms:.1f} ms; the"
            f" store's lock meanwhile waited max {max(waits) * 1000:.2f} ms"
        )
        t0 = time.perf_counter()
        purged = 0

        def purge() -> None:
            nonlocal purged
            purged = store.purge_closed(wall_ms() - 400 * 86_400_000)

        waits = probe_writes(store, purge)
        took = time.perf_counter() - t0
        print(
            f"retention (400 days): {purged} closed alerts purged in {took:.2f} s; a change meanwhile took"
            f" p50 {statistics.median(waits) * 1000:.2f} ms, max {max(waits) * 1000:.1f} ms"
        )
        store.shutdown()


if __name__ == "__main__":
    main()
