"""The alert store: SQLite (WAL) with an audit trail, and the one door every change goes through.

Every transition — a condition from the rule engine, a person's ack/dispatch/resolve/close, an SLA
reminder or overdue mark — is computed by `lifecycle`/`sla`, committed here in one small transaction
(the alert row and its audit row together), and only then handed to the outlets. So an outlet never
shows a state the store does not have, and the audit trail has every change with who, when and note.

Why synchronous SQLite on the event loop: the rule engine calls `on_condition` on the ingest hot path,
and a condition change is rare next to readings (a raise, a level change, a clear). One small WAL commit
with `synchronous=NORMAL` costs tens of microseconds and does not fsync (fsync happens at checkpoints):
cheaper than a hand-off to a writer thread, and the caller sees the stored alert at once. The price is
that a power cut (not a process crash) may lose the last transactions; the rule engine re-raises live
conditions, so an alert cannot be lost for good that way.

The open alerts (one per (rule, device); a partial unique index enforces it in SQLite too) are kept in
memory, so the hot path reads nothing from disk. Closed alerts stay in the file for the negative list.

The audit sequence doubles as an outbox: an outlet that must not miss changes across a crash (MQTT)
keeps a cursor (`get_cursor`/`set_cursor`) and asks `changed_since` at start.
"""

from __future__ import annotations

import builtins
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import orjson

from alerts import lifecycle
from alerts.errors import AlertNotFound, AlertStoreError
from alerts.model import OPEN_STATES, STATES, Alert, Change, Outcome, as_state, wall_ms
from alerts.outlets import AlertOutlet
from alerts.sla import SlaPolicy, evaluate
from rules.signals import SEVERITIES, Condition

log = logging.getLogger("streetwatch.alerts")

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    device TEXT NOT NULL,
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    raised_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    overdue INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL
);
-- The contract's promise, kept by the database as well: one open alert per (rule, device).
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open ON alerts (rule, device) WHERE state != 'closed';
CREATE INDEX IF NOT EXISTS alerts_updated ON alerts (updated_at);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, updated_at);
-- Every filter of GET /api/alerts has an index, so a big table is never scanned per request.
CREATE INDEX IF NOT EXISTS alerts_rule ON alerts (rule, updated_at);
CREATE INDEX IF NOT EXISTS alerts_rule_device ON alerts (rule, device, updated_at);
CREATE INDEX IF NOT EXISTS alerts_device ON alerts (device, updated_at);
CREATE INDEX IF NOT EXISTS alerts_severity ON alerts (severity, updated_at);
CREATE INDEX IF NOT EXISTS alerts_overdue ON alerts (overdue, updated_at);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: outlets keep cursors on it
    alert_id TEXT NOT NULL,
    action TEXT NOT NULL,
    at INTEGER NOT NULL,
    who TEXT NOT NULL,
    state_from TEXT,
    state_to TEXT NOT NULL,
    note TEXT,
    event_at INTEGER,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS audit_alert ON audit (alert_id, seq);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""

OPEN = "open"  # `state` filter alias: every state but closed


class TxHook(Protocol):
    """Called inside the transaction of each change, after its audit row (`change.seq` is set), on
    the store's connection: rows it writes commit or roll back with the change (the notice outbox).
    Must not commit, and must not raise (an exception rolls the change back)."""

    def __call__(
        self, db: sqlite3.Connection, previous: Alert | None, alert: Alert, change: Change
    ) -> None: ...


def _new_id() -> str:
    return uuid.uuid4().hex


class AlertStore:
    """Alerts, their audit trail, and the transitions people and the rule engine make.

    Args:
        path: the SQLite file (created with its directory on `open()`).
        outlet: receives every committed change (normally a `Fanout`).
        policy: SLA limits; due times are set when an alert opens or changes severity.
        clock: wall clock in ms; tests inject one to move time without sleeping.
        road_of: road of a device for conditions that carry none (from the registry).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        outlet: AlertOutlet | None = None,
        policy: SlaPolicy | None = None,
        clock: Callable[[], int] = wall_ms,
        road_of: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.outlet = outlet
        self.policy = policy or SlaPolicy.none()
        self.clock = clock
        self._road_of = road_of
        self._db: sqlite3.Connection | None = None
        # The HTTP layer may run in a thread pool (and TestClient runs the app in its own thread).
        self._lock = threading.RLock()
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()  # one query at a time on the reader connection
        self._open_by_key: dict[tuple[str, str], Alert] = {}
        self._open_by_id: dict[str, Alert] = {}
        self.sink_errors = 0
        self.dropped_before_open = 0
        # Extra tables (created on open) and hooks run inside each change's transaction.
        self.schemas: builtins.list[str] = []
        self.tx_hooks: builtins.list[TxHook] = []

    # ---- opening and closing ------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._db is not None

    def open(self) -> AlertStore:
        if self._db is not None:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=2000")
            db.executescript(SCHEMA)
            for script in self.schemas:
                db.executescript(script)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                db.close()
                raise AlertStoreError(
                    f"{self.path} was written by a newer streetwatch (schema {version})"
                )
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            rows = db.execute("SELECT data FROM alerts WHERE state != 'closed'").fetchall()
            # A second connection for the big reads (lists, the stream's catch-up, histories):
            # WAL readers never block the writer, so they run without the store's lock, and the
            # rule engine's changes (on the event loop) never wait for a long query.
            reader = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            reader.execute("PRAGMA query_only=1")
            reader.execute("PRAGMA busy_timeout=2000")
        except sqlite3.Error as exc:
            raise AlertStoreError(f"cannot open the alert store {self.path}: {exc}") from exc
        with self._lock, self._read_lock:
            self._db = db
            self._reader = reader
            for (data,) in rows:
                saved = Alert.from_record(orjson.loads(data))
                alert = self.policy.refit(saved)  # the time limits of the config in force
                if alert is not saved:
                    self._rewrite(alert)
                self._remember(alert)
        return self

    def _rewrite(self, alert: Alert) -> None:
        """Store a new reading of an alert that is not a change of it (no audit row, no outlet)."""
        self._conn().execute(
            "UPDATE alerts SET data = ? WHERE id = ?",
            (orjson.dumps(alert.to_record()).decode(), alert.id),
        )

    def shutdown(self) -> None:
        with self._lock, self._read_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            if self._db is not None:
                self._db.close()
                self._db = None
            self._open_by_key.clear()
            self._open_by_id.clear()

    def _read(self, sql: str, args: Sequence[Any] = ()) -> builtins.list[Any]:
        """Rows of a read-only query on the reader connection (not under the store's lock)."""
        with self._read_lock:
            if self._reader is None:
                raise AlertStoreError(
                    "the alert store is not open (call open() / Alerting.start())"
                )
            try:
                return self._reader.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise AlertStoreError(f"alert store {self.path}: {exc}") from exc

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise AlertStoreError("the alert store is not open (call open() / Alerting.start())")
        return self._db

    # ---- the rule engine's side (ConditionSink) -----------------------------------------------

    def on_condition(self, condition: Condition) -> None:
        """Take a condition from the rule engine. Never raises into the engine: a failure is logged
        and counted (the engine's next change of this condition is taken as usual)."""
        if self._db is None:
            self.dropped_before_open += 1
            log.warning(
                "alert store not open: condition %s/%s dropped", condition.rule, condition.device
            )
            return
        try:
            with self._lock:
                current = self._open_by_key.get((condition.rule, condition.device))
                road = None
                if condition.road is None and self._road_of is not None:
                    road = self._road_of(condition.kind, condition.device)
                outcome = lifecycle.on_condition(
                    current,
                    condition,
                    now=self.clock(),
                    policy=self.policy,
                    new_id=_new_id,
                    road=road,
                )
                if outcome is None:
                    return
                alert, change = self._commit(outcome)
                self._hand_out(alert, change)
        except Exception:
            self.sink_errors += 1
            log.exception("alert store failed on condition %s/%s", condition.rule, condition.device)
            return

    def told(self, also: Iterable[tuple[str, str]] = ()) -> builtins.list[Condition]:
        """The last condition the store took per (rule, device), as the rule engine would have
        said it: every open alert, and for each key in `also` without one, its latest closed alert
        (so a restarted engine whose saved state is older than a clear and a close learns of them).
        """
        out: builtins.list[Condition] = []
        with self._lock:
            alerts = builtins.list(self._open_by_id.values())
            for rule, device in also:
                if (rule, device) not in self._open_by_key:
                    latest = self.latest(rule, device)
                    if latest is not None:
                        alerts.append(latest)
        for alert in alerts:
            out.append(
                Condition(
                    rule=alert.rule,
                    device=alert.device,
                    kind=alert.kind,
                    active=alert.condition_active,
                    severity=alert.severity,
                    at_ms=alert.condition_at,
                    message=alert.message,
                    level=alert.level,
                    value=alert.value,
                    road=alert.road,
                    extra=dict(alert.extra),
                )
            )
        return out

    def latest(self, rule: str, device: str) -> Alert | None:
        """The most recently updated alert of (rule, device), open or closed."""
        with self._lock:
            found = self._open_by_key.get((rule, device))
            if found is not None:
                return found
            row = (
                self._conn()
                .execute(
                    "SELECT data FROM alerts WHERE rule = ? AND device = ?"
                    " ORDER BY updated_at DESC LIMIT 1",
                    (rule, device),
                )
                .fetchone()
            )
        return None if row is None else Alert.from_record(orjson.loads(row[0]))

    def reconcile(self, held: Iterable[Condition], at_ms: int | None = None) -> int:
        """Raise what the rule engine holds raised and the store misses (call after the engine
        restored its state and took the store's word, `RuleEngine.align`). Never clears: an alert
        the engine does not hold stays open until a reading (or the absence of one) decides.
        `at_ms` is kept for callers of the older form. Returns the changes made."""
        before = self.last_seq() if self.is_open else 0
        for condition in held:
            if not self.is_open:
                break
            # Only news: what the store has not taken yet. An open alert is not updated by a
            # restart (a changed config shows on its next change), and a condition a person
            # closed is not raised again.
            latest = self.latest(condition.rule, condition.device)
            if latest is not None and latest.condition_at >= condition.at_ms:
                continue
            self.on_condition(condition)
        return self.last_seq() - before if self.is_open else 0

    # ---- people's side ------------------------------------------------------------------------

    def ack(self, alert_id: str, who: str, note: str | None = None) -> Alert:
        return self._act(
            alert_id, lambda a, now: lifecycle.acknowledge(a, who=who, note=note, now=now)
        )

    def dispatch(self, alert_id: str, who: str, assignee: str, note: str | None = None) -> Alert:
        return self._act(
            alert_id,
            lambda a, now: lifecycle.dispatch(a, who=who, assignee=assignee, note=note, now=now),
        )

    def resolve(
        self, alert_id: str, who: str, note: str | None = None, *, force: bool = False
    ) -> Alert:
        """Refused (ConditionStillPresent) while the condition is present, unless `force`."""
        return self._act(
            alert_id,
            lambda a, now: lifecycle.resolve(a, who=who, note=note, now=now, force=force),
        )

    def close(self, alert_id: str, who: str, note: str | None = None) -> Alert:
        return self._act(alert_id, lambda a, now: lifecycle.close(a, who=who, note=note, now=now))

    def act(
        self,
        action: str,
        alert_id: str,
        *,
        who: str,
        note: str | None = None,
        assignee: str | None = None,
        force: bool = False,
        shown_as: str | None = None,
    ) -> Alert:
        """One person's or system's action on an alert, as a named principal: `who` is the name
        of the credential that was checked (an HTTP token's name, a crew's name for a signed ack
        link), and goes into the audit trail as is. `shown_as` is a name the caller typed, kept
        beside it only as a display note. `action`: ack, dispatch, resolve or close.

        Raises AlertNotFound, InvalidTransition (ConditionStillPresent for resolve without
        `force`), ValueError for bad input (dispatch without assignee, force without a note)."""

        def step(a: Alert, now: int) -> Outcome:
            if action == "ack":
                out = lifecycle.acknowledge(a, who=who, note=note, now=now)
            elif action == "dispatch":
                out = lifecycle.dispatch(a, who=who, assignee=assignee or "", note=note, now=now)
            elif action == "resolve":
                out = lifecycle.resolve(a, who=who, note=note, now=now, force=force)
            elif action == "close":
                out = lifecycle.close(a, who=who, note=note, now=now)
            else:
                raise ValueError(f"unknown action {action!r}; one of ack, dispatch, resolve, close")
            if shown_as and shown_as != who:
                change = replace(out.change, detail={**out.change.detail, "shown_as": shown_as})
                out = Outcome(out.alert, change)
            return out

        return self._act(alert_id, step)

    def _act(self, alert_id: str, step: Callable[[Alert, int], Outcome]) -> Alert:
        with self._lock:
            self._conn()
            current = self._open_by_id.get(alert_id)
            if current is None:
                found = self.get(alert_id)
                if found is None:
                    raise AlertNotFound(alert_id)
                current = found  # closed: the lifecycle refuses with InvalidTransition
            alert, change = self._commit(step(current, self.clock()))
            self._hand_out(alert, change)
        return alert

    # ---- time limits --------------------------------------------------------------------------

    def sweep_sla(self, now: int | None = None) -> list[Change]:
        """Reminders, escalations and overdue marks due at `now` (default: the store's clock)."""
        now = self.clock() if now is None else now
        done: list[tuple[Alert, Change]] = []
        with self._lock:
            if self._db is None:
                return []
            for alert in list(self._open_by_id.values()):
                # Several steps may be due at once (after downtime): reminder, overdue, escalations.
                for _ in range(8):
                    outcome = evaluate(alert, now, self.policy)
                    if outcome is None:
                        break
                    alert, change = self._commit(outcome)
                    self._hand_out(alert, change)
                    done.append((alert, change))
        return [change for _, change in done]

    # ---- reading ------------------------------------------------------------------------------

    def get(self, alert_id: str) -> Alert | None:
        with self._lock:
            cached = self._open_by_id.get(alert_id)
            if cached is not None:
                return cached
        rows = self._read("SELECT data FROM alerts WHERE id = ?", (alert_id,))
        return None if not rows else Alert.from_record(orjson.loads(rows[0][0]))

    def find_open(self, rule: str, device: str) -> Alert | None:
        with self._lock:
            return self._open_by_key.get((rule, device))

    def open_alerts(self) -> list[Alert]:
        with self._lock:
            return sorted(self._open_by_id.values(), key=lambda a: (a.raised_at, a.id))

    def list(
        self,
        state: str | Sequence[str] | None = None,
        rule: str | None = None,
        device: str | None = None,
        severity: str | None = None,
        since: int | None = None,
        limit: int = 100,
        *,
        overdue: bool | None = None,
    ) -> list[Alert]:
        """Alerts, most recently updated first. `state` may be one state, several (a list or a
        comma-separated string) or `open` (every state but closed); `since` (ms) keeps alerts updated
        at or after it; `overdue` keeps alerts that did (True) or did not (False) pass a limit."""
        where: list[str] = []
        args: list[Any] = []
        states = _states(state)
        if states is not None:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += states
        for column, value in (("rule", rule), ("device", device), ("severity", severity)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if severity is not None and severity not in SEVERITIES:
            raise ValueError(f"unknown severity {severity!r}; one of {', '.join(SEVERITIES)}")
        if since is not None:
            where.append("updated_at >= ?")
            args.append(since)
        if overdue is not None:
            where.append("overdue = ?")
            args.append(int(overdue))
        sql = "SELECT data FROM alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY updated_at DESC, id LIMIT ?"
        args.append(max(0, int(limit)))
        rows = self._read(sql, args)
        return [Alert.from_record(orjson.loads(data)) for (data,) in rows]

    def history(self, alert_id: str) -> builtins.list[Change]:
        """The audit trail of one alert, oldest first. AlertNotFound if there is no such alert."""
        rows = self._read(
            "SELECT seq, alert_id, action, at, who, state_from, state_to, note, event_at,"
            " detail FROM audit WHERE alert_id = ? ORDER BY seq",
            (alert_id,),
        )
        if not rows and self.get(alert_id) is None:
            raise AlertNotFound(alert_id)
        return [_change_from_row(row) for row in rows]

    # ---- retention ----------------------------------------------------------------------------

    def purge_closed(self, before_ms: int, batch: int = 50, pause_s: float = 0.002) -> int:
        """Delete closed alerts last changed before `before_ms`, with their audit trail, a small
        batch per transaction under the store's lock, `pause_s` apart, so the rule engine's
        changes (on the event loop) wait for one batch at most. (A connection of its own, without
        the lock, was worse: the store's commits then wait in SQLite's busy handler, which backs
        off in long sleeps.) Open alerts are never touched. Returns how many were deleted."""
        total = 0
        while True:
            with self._lock:
                if self._db is None:
                    return total
                db = self._db
                ids = [
                    row[0]
                    for row in db.execute(
                        "SELECT id FROM alerts WHERE state = 'closed' AND updated_at < ? LIMIT ?",
                        (before_ms, batch),
                    )
                ]
                if not ids:
                    return total
                marks = ",".join("?" * len(ids))
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.execute(f"DELETE FROM audit WHERE alert_id IN ({marks})", ids)
                    db.execute(f"DELETE FROM alerts WHERE id IN ({marks})", ids)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            total += len(ids)
            time.sleep(pause_s)

    # ---- the outbox side: cursors of outlets that must not miss a change ----------------------

    def last_seq(self) -> int:
        with self._lock:
            row = self._conn().execute("SELECT max(seq) FROM audit").fetchone()
        return int(row[0] or 0)

    def get_cursor(self, name: str) -> int | None:
        with self._lock:
            row = self._conn().execute("SELECT seq FROM cursors WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def set_cursor(self, name: str, seq: int) -> None:
        with self._lock:
            if self._db is None:
                return  # closing: the next start catches up from the older cursor
            self._db.execute(
                "INSERT INTO cursors (name, seq) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET seq = max(seq, excluded.seq)",
                (name, seq),
            )

    def changed_since(self, seq: int, limit: int | None = None) -> builtins.list[tuple[Alert, int]]:
        """The current state of every alert changed after audit `seq`, with its latest seq,
        in the order of those latest changes; at most `limit` of them (the earliest)."""
        sql = (
            "SELECT a.data, m.seq FROM (SELECT alert_id, max(seq) AS seq FROM audit "
            "WHERE seq > ? GROUP BY alert_id) AS m JOIN alerts AS a ON a.id = m.alert_id "
            "ORDER BY m.seq"
        )
        args: builtins.list[Any] = [seq]
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(0, limit))
        rows = self._read(sql, args)
        return [(Alert.from_record(orjson.loads(data)), int(s)) for data, s in rows]

    # ---- internals ----------------------------------------------------------------------------

    def _remember(self, alert: Alert) -> None:
        key = (alert.rule, alert.device)
        if alert.is_open:
            self._open_by_key[key] = alert
            self._open_by_id[alert.id] = alert
        else:
            self._open_by_id.pop(alert.id, None)
            if (held := self._open_by_key.get(key)) is not None and held.id == alert.id:
                del self._open_by_key[key]

    def _commit(self, outcome: Outcome) -> tuple[Alert, Change]:
        """Store the alert and its audit row in one transaction; then update the open set."""
        alert, change = outcome.alert, outcome.change
        db = self._conn()
        data = orjson.dumps(alert.to_record()).decode()
        detail = orjson.dumps(dict(change.detail)).decode() if change.detail else None
        previous = self._open_by_id.get(alert.id)
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO alerts (id, rule, device, state, severity, raised_at, updated_at,"
                " overdue, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                " state = excluded.state, severity = excluded.severity,"
                " updated_at = excluded.updated_at, overdue = excluded.overdue, data = excluded.data",
                (
                    alert.id,
                    alert.rule,
                    alert.device,
                    alert.state,
                    alert.severity,
                    alert.raised_at,
                    alert.updated_at,
                    int(bool(alert.overdue)),
                    data,
                ),
            )
            cursor = db.execute(
                "INSERT INTO audit (alert_id, action, at, who, state_from, state_to, note,"
                " event_at, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    change.alert_id,
                    change.action,
                    change.at,
                    change.who,
                    change.state_from,
                    change.state_to,
                    change.note,
                    change.event_at,
                    detail,
                ),
            )
            change = replace(change, seq=int(cursor.lastrowid or 0))
            for hook in self.tx_hooks:
                hook(db, previous, alert, change)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._remember(alert)
        return alert, change

    def _hand_out(self, alert: Alert, change: Change) -> None:
        # Called with the lock held, right after the commit: outlets see changes in seq order
        # whichever thread made them (they must not block, so the lock is held for microseconds).
        if self.outlet is not None:
            try:
                self.outlet.publish(alert, change)
            except Exception:  # outlets must not raise; if one does, the change is still stored
                log.exception("alert outlet failed on %s", change.action)


def _states(state: str | Sequence[str] | None) -> list[str] | None:
    if state is None:
        return None
    names = [s.strip() for s in state.split(",")] if isinstance(state, str) else list(state)
    out: list[str] = []
    for name in names:
        if not name:
            continue
        if name == OPEN:
            out += sorted(OPEN_STATES)
        elif name in STATES:
            out.append(name)
        else:
            raise ValueError(f"unknown state {name!r}; one of {', '.join(STATES)} or open")
    return out or None


def _change_from_row(row: tuple[Any, ...]) -> Change:
    seq, alert_id, action, at, who, state_from, state_to, note, event_at, detail = row
    return Change(
        alert_id=alert_id,
        action=action,
        at=at,
        who=who,
        state_from=None if state_from is None else as_state(state_from),
        state_to=as_state(state_to),
        note=note,
        event_at=event_at,
        detail=orjson.loads(detail) if detail else {},
        seq=seq,
    )
