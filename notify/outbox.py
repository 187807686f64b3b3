"""The notice outbox: a table in the alert store, written in the same transaction as the alert change.

    alert change ──(one SQLite transaction)──▶ alerts row + audit row + one outbox row per channel
    channel worker ──▶ reads its queued rows ──▶ sends ──▶ marks them sent (or failed / given up)

So a crash between the commit and the send loses no notice (the rows are there at the next start), and
a notice marked sent is never sent again. The one window left: a crash after the receiver answered
and before the row is marked sent repeats that one notice on that channel.

The identity of a notice is (audit seq of the change, crew, channel): a change is queued once per
channel, whatever happens to the process.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS notify_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    seq INTEGER NOT NULL,          -- audit seq of the alert change (0 for a test notice)
    crew TEXT NOT NULL,
    channel TEXT NOT NULL,         -- stable id of the crew's URL (scheme + hash; never the URL)
    alert_id TEXT NOT NULL,
    event TEXT NOT NULL,           -- raised, up, reminder, escalation, cleared
    created_at INTEGER NOT NULL,   -- wall ms
    payload TEXT NOT NULL,         -- JSON: title, body, line, road
    state TEXT NOT NULL DEFAULT 'queued',  -- queued, sent, given_up
    attempts INTEGER NOT NULL DEFAULT 0,
    sent_at INTEGER,
    message INTEGER,               -- id of the first row of the message that carried it (digests)
    last_error TEXT,
    UNIQUE (seq, crew, channel)
);
CREATE INDEX IF NOT EXISTS notify_outbox_queued
    ON notify_outbox (crew, channel, id) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS notify_outbox_done ON notify_outbox (created_at) WHERE state != 'queued';
"""


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    alert_id: str
    event: str
    created_at: int
    attempts: int
    title: str
    body: str
    line: str
    road: str | None


def insert(
    db: sqlite3.Connection,
    *,
    seq: int,
    crew: str,
    channel: str,
    alert_id: str,
    event: str,
    created_at: int,
    payload: dict[str, Any],
) -> None:
    """Called inside the alert store's transaction (its connection): no commit here."""
    db.execute(
        "INSERT OR IGNORE INTO notify_outbox (seq, crew, channel, alert_id, event, created_at,"
        " payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (seq, crew, channel, alert_id, event, created_at, orjson.dumps(payload).decode()),
    )


class Outbox:
    """The workers' side: its own connection to the alert store's file (WAL: readers never wait)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # the metrics collector reads from the scrape thread

    def open(self) -> Outbox:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript(SCHEMA)
        self._db = db
        return self

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the outbox is not open")
        return self._db

    def queued(self, crew: str, channel: str, limit: int = 200) -> list[Row]:
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT id, alert_id, event, created_at, attempts, payload FROM notify_outbox"
                    " WHERE state = 'queued' AND crew = ? AND channel = ? ORDER BY id LIMIT ?",
                    (crew, channel, limit),
                )
                .fetchall()
            )
        out = []
        for id_, alert_id, event, created_at, attempts, payload in rows:
            data = orjson.loads(payload)
            out.append(
                Row(
                    id=id_,
                    alert_id=alert_id,
                    event=event,
                    created_at=created_at,
                    attempts=attempts,
                    title=data.get("title", ""),
                    body=data.get("body", ""),
                    line=data.get("line", ""),
                    road=data.get("road"),
                )
            )
        return out

    def _update(self, sql: str, args: list[Any], ids: list[int]) -> None:
        marks = ",".join("?" * len(ids))
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(f"{sql} WHERE state = 'queued' AND id IN ({marks})", [*args, *ids])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def mark_sent(self, ids: list[int], at: int) -> None:
        self._update(
            "UPDATE notify_outbox SET state = 'sent', sent_at = ?, message = ?", [at, ids[0]], ids
        )

    def mark_failed(self, ids: list[int], error: str) -> None:
        self._update(
            "UPDATE notify_outbox SET attempts = attempts + 1, last_error = ?", [error[:500]], ids
        )

    def give_up(self, ids: list[int], error: str) -> None:
        self._update(
            "UPDATE notify_outbox SET state = 'given_up', last_error = ?", [error[:500]], ids
        )

    def move(self, crew: str, channel: str, to: list[str], why: str) -> int:
        """A channel no longer configured: its queued notices are queued for each of `to` (the
        crew's channels now; a channel that already has a change keeps its own row) and given up
        here with `why`, in one transaction. Returns how many were waiting."""
        with self._lock:
            db = self._conn()
            db.execute("BEGIN IMMEDIATE")
            try:
                for new in to:
                    db.execute(
                        "INSERT OR IGNORE INTO notify_outbox (seq, crew, channel, alert_id, event,"
                        " created_at, payload) SELECT seq, crew, ?, alert_id, event, created_at,"
                        " payload FROM notify_outbox WHERE state = 'queued' AND crew = ?"
                        " AND channel = ? ORDER BY id",
                        (new, crew, channel),
                    )
                cur = db.execute(
                    "UPDATE notify_outbox SET state = 'given_up', last_error = ?"
                    " WHERE state = 'queued' AND crew = ? AND channel = ?",
                    (why[:500], crew, channel),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return cur.rowcount

    def sent_since(self, crew: str, channel: str, since_ms: int) -> list[int]:
        """When each message of the channel sent at or after `since_ms` went (wall ms, oldest
        first; a digest is one message)."""
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT max(sent_at) FROM notify_outbox WHERE crew = ? AND channel = ?"
                    " AND state = 'sent' AND sent_at >= ? GROUP BY message ORDER BY 1",
                    (crew, channel, since_ms),
                )
                .fetchall()
            )
        return [int(at) for (at,) in rows]

    def stats(self) -> dict[tuple[str, str], tuple[int, int | None]]:
        """(crew, channel) → (queued, oldest queued created_at)."""
        with self._lock:
            if self._db is None:
                return {}
            rows = self._db.execute(
                "SELECT crew, channel, count(*), min(created_at) FROM notify_outbox"
                " WHERE state = 'queued' GROUP BY crew, channel"
            ).fetchall()
        return {(c, ch): (n, oldest) for c, ch, n, oldest in rows}

    def purge(self, before_ms: int) -> int:
        with self._lock:
            cur = self._conn().execute(
                "DELETE FROM notify_outbox WHERE state != 'queued' AND created_at < ?",
                (before_ms,),
            )
        return cur.rowcount

    def all_rows(self) -> list[dict[str, Any]]:
        """Everything (for tests and `notify` tooling)."""
        with self._lock:
            cur = self._conn().execute(
                "SELECT id, seq, crew, channel, alert_id, event, state, attempts, sent_at,"
                " message, last_error FROM notify_outbox ORDER BY id"
            )
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
