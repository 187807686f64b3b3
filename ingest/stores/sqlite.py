"""The embedded store: the same points as InfluxDB would hold, in one SQLite file.

A point's identity is (measurement, tag set, timestamp), as in InfluxDB, so a redelivered reading
replaces itself instead of doubling.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import orjson

from ingest.errors import RetryableStoreError
from ingest.lineprotocol import parse_line

SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    measurement TEXT NOT NULL,
    device TEXT NOT NULL,
    tags TEXT NOT NULL,
    ts INTEGER NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (measurement, tags, ts)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS points_device_ts ON points (device, ts);
"""


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk when it returns, because the spool deletes its copy then
        # (NORMAL in WAL mode may lose the last commits on power loss).
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def _write_sync(self, rows: list[tuple[str, str, str, int, str]]) -> None:
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO points (measurement, device, tags, ts, fields) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    async def write(self, lines: list[bytes]) -> None:
        points = [parse_line(line.decode("utf-8")) for line in lines]
        rows = [
            (
                m,
                tags.get("device", ""),
                orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode(),
                ts,
                orjson.dumps(fields).decode(),
            )
            for m, tags, fields, ts in points
        ]
        try:
            await asyncio.to_thread(self._write_sync, rows)
        except sqlite3.OperationalError as exc:  # locked / disk full: keep the data, retry
            raise RetryableStoreError(f"SQLite write failed: {exc}") from exc

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        assert self._db is not None
        return list(self._db.execute(sql, args))

    async def aclose(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
