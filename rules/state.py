"""Rule state on disk (SQLite), so a restart resumes durations half-way, hysteresis and open alerts.

One row per device that has anything worth keeping, one per open group, and the clock. A save writes
only the devices touched since the previous save, in one transaction: cheap enough to call every few
seconds, and a crash leaves the previous complete save.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from rules.errors import RuleStateError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (device TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS groups (rule TEXT NOT NULL, key TEXT NOT NULL, body BLOB NOT NULL,
                                   PRIMARY KEY (rule, key));
"""


class StateFile:
    """The SQLite file at `path` (created on first save)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Writes may run in a worker thread (the service saves off the event loop); the
                # engine never lets two of them overlap.
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
            except sqlite3.Error as exc:
                raise RuleStateError(f"rule state {self.path}: {exc}") from exc
            self._db = db
        return self._db

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> tuple[dict[str, Any], Iterator[tuple[str, Any]], list[tuple[str, str, Any]]]:
        """(meta, devices as (id, body), groups as (rule, key, body))."""
        db = self._connect()
        try:
            meta = {k: orjson.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
            version = meta.get("version", SCHEMA_VERSION)
            if version != SCHEMA_VERSION:
                raise RuleStateError(
                    f"rule state {self.path}: schema version {version}, expected {SCHEMA_VERSION}"
                )
            devices = [
                (d, orjson.loads(b)) for d, b in db.execute("SELECT device, body FROM devices")
            ]
            groups = [
                (r, k, orjson.loads(b))
                for r, k, b in db.execute("SELECT rule, key, body FROM groups")
            ]
        except (sqlite3.Error, orjson.JSONDecodeError) as exc:
            raise RuleStateError(f"rule state {self.path}: {exc}") from exc
        return meta, iter(devices), groups

    def write(
        self,
        meta: dict[str, Any],
        devices: Iterable[tuple[str, dict[str, Any] | None]],
        groups: Iterable[tuple[str, str, dict[str, Any]]],
    ) -> None:
        """Upsert changed devices (None body: delete), replace groups and meta, atomically."""
        self.write_encoded(encode(meta, devices, groups))

    def write_encoded(self, enc: EncodedState) -> None:
        """Write what `encode` produced (safe to call from a worker thread)."""
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", enc.meta)
            db.executemany(
                "INSERT OR REPLACE INTO devices (device, body) VALUES (?, ?)", enc.upserts
            )
            db.executemany("DELETE FROM devices WHERE device = ?", enc.deletes)
            db.execute("DELETE FROM groups")
            db.executemany("INSERT INTO groups (rule, key, body) VALUES (?, ?, ?)", enc.groups)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise RuleStateError(f"rule state {self.path}: {exc}") from exc

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


@dataclass(slots=True)
class EncodedState:
    """Rows ready for SQLite: everything serialised, nothing shared with the live engine."""

    meta: list[tuple[str, str]]
    upserts: list[tuple[str, bytes]]
    deletes: list[tuple[str]]
    groups: list[tuple[str, str, bytes]]


def encode(
    meta: dict[str, Any],
    devices: Iterable[tuple[str, dict[str, Any] | None]],
    groups: Iterable[tuple[str, str, dict[str, Any]]],
) -> EncodedState:
    """Serialise in the caller's thread, so a worker thread never reads live rule state."""
    upserts: list[tuple[str, bytes]] = []
    deletes: list[tuple[str]] = []
    for device, body in devices:
        if body is None:
            deletes.append((device,))
        else:
            upserts.append((device, orjson.dumps(body)))
    return EncodedState(
        meta=[
            (k, orjson.dumps(v).decode()) for k, v in {**meta, "version": SCHEMA_VERSION}.items()
        ],
        upserts=upserts,
        deletes=deletes,
        groups=[(r, k, orjson.dumps(b)) for r, k, b in groups],
    )
