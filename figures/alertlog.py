"""Reading the alert store for figures: its own read-only SQLite connection (WAL readers never
block the alert lifecycle's writes), alerts as `alerts.model.Alert`."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import orjson

from alerts.model import Alert
from figures.errors import StoreReadError


class AlertLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[Alert]:
        with self._lock:
            if self._db is None:
                if not self.path.exists():
                    return []
                self._db = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, check_same_thread=False
                )
                self._db.execute("PRAGMA busy_timeout=2000")
            try:
                rows = self._db.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []
                raise StoreReadError(f"alert store read failed: {exc}") from exc
        return [Alert.from_record(orjson.loads(data)) for (data,) in rows]

    async def raised_between(self, start_ms: int, end_ms: int) -> list[Alert]:
        """Alerts raised (event time) in [start, end)."""
        return await asyncio.to_thread(
            self._rows,
            "SELECT data FROM alerts WHERE raised_at >= ? AND raised_at < ? ORDER BY raised_at, id",
            (start_ms, end_ms),
        )

    async def overlapping(self, rule: str, start_ms: int, end_ms: int) -> list[Alert]:
        """Alerts of `rule` whose condition may have been present in [start, end)."""
        return await asyncio.to_thread(
            self._rows,
            "SELECT data FROM alerts WHERE rule = ? AND raised_at < ?"
            " AND (state != 'closed' OR updated_at >= ?) ORDER BY raised_at",
            (rule, end_ms, start_ms),
        )

    async def trails(self, alert_ids: list[str]) -> dict[str, list[tuple[str, str, int, int]]]:
        """Each alert's audit trail, in order: (action, who, at, event_at or at)."""
        return await asyncio.to_thread(self._trails, alert_ids)

    def _trails(self, alert_ids: list[str]) -> dict[str, list[tuple[str, str, int, int]]]:
        out: dict[str, list[tuple[str, str, int, int]]] = {}
        with self._lock:
            if self._db is None:
                return out
            for i in range(0, len(alert_ids), 500):
                ids = alert_ids[i : i + 500]
                marks = ",".join("?" * len(ids))
                try:
                    rows = self._db.execute(
                        "SELECT alert_id, action, who, at, coalesce(event_at, at) FROM audit"
                        f" WHERE alert_id IN ({marks}) ORDER BY seq",
                        tuple(ids),
                    ).fetchall()
                except sqlite3.OperationalError as exc:
                    if "no such table" in str(exc):
                        return out
                    raise StoreReadError(f"alert store read failed: {exc}") from exc
                for alert_id, action, who, at, event_at in rows:
                    out.setdefault(alert_id, []).append((action, who, int(at), int(event_at)))
        return out

    async def open_alerts(self) -> list[Alert]:
        return await asyncio.to_thread(
            self._rows, "SELECT data FROM alerts WHERE state != 'closed' ORDER BY raised_at", ()
        )

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
