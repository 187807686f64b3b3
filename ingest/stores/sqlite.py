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

from ingest.errors import RejectedBatchError, RetryableStoreError
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

    def _write_sync(self, lines: list[bytes]) -> None:
        rows = _rows(lines)
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO points (measurement, device, tags, ts, fields) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )

    async def write(self, lines: list[bytes]) -> None:
        # Parsing runs in the worker thread too: 5000 lines parsed on the event loop held it
        # ~100 ms (alerts and the API waited).
        try:
            await asyncio.to_thread(self._write_sync, lines)
        except sqlite3.OperationalError as exc:  # locked / disk full: keep the data, retry
            raise RetryableStoreError(f"SQLite write failed: {exc}") from exc

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        assert self._db is not None
        return list(self._db.execute(sql, args))

    async def aclose(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _rows(lines: list[bytes]) -> list[tuple[str, str, str, int, str]]:
    rows = []
    for line in lines:
        try:
            m, tags, fields, ts = parse_line(line.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            # Not a line we wrote: the writer bisects down to it and dead-letters it.
            raise RejectedBatchError(f"unparseable line: {exc}") from exc
        rows.append(
            (
                m,
                tags.get("device", ""),
                orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode(),
                ts,
                orjson.dumps(fields).decode(),
            )
        )
    return rows
