"""The daily report: made each morning at `reports.daily_at` (local), kept so it reads the same when
asked again, served as JSON and print-ready HTML, and sent to `reports.send_to` (apprise).

The report dated D covers the night that started on D − 1 (its lighting rate by road against
target), the cases raised on D − 1, the waterlogging points that went over level 1 on D − 1 with their
peak, and the devices offline longest when it was made. A report asked for before its time (or for a
day whose night is not over) is made on the spot and marked `provisional`, and not kept.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from alerts.model import rfc3339
from figures.config import ReportsConfig

if TYPE_CHECKING:
    from figures.service import Figures

log = logging.getLogger("streetwatch.reports")

SCHEMA = """
CREATE TABLE IF NOT EXISTS daily_reports (
    date TEXT PRIMARY KEY,
    made_at INTEGER NOT NULL,
    body TEXT NOT NULL,
    sent_at INTEGER
);
"""


class DailyReports:
    def __init__(
        self,
        figures: Figures,
        config: ReportsConfig,
        path: Path,
        *,
        store_caught_up: Callable[[], bool] = lambda: True,
    ) -> None:
        """Args:
        figures: where the numbers come from.
        config: the `reports` section.
        path: the SQLite file reports are kept in.
        store_caught_up: False while the point store is behind (a backlog still in the spool, the
            store failing): a report made then is provisional and not kept, and the morning job
            tries again every quarter hour until noon.
        """
        self.figures = figures
        self.config = config
        self.path = path
        self.store_caught_up = store_caught_up
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._making = asyncio.Lock()
        self.scheduler: Any = None

    # ---- storage ----------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            self._db = db
        return self._db

    def stored(self, date: dt.date) -> dict[str, Any] | None:
        with self._lock:
            row = (
                self._conn()
                .execute("SELECT body FROM daily_reports WHERE date = ?", (date.isoformat(),))
                .fetchone()
            )
        return orjson.loads(row[0]) if row else None

    def _keep(self, report: dict[str, Any]) -> dict[str, Any]:
        """Keep the first report made for a date; a racing second one yields to it."""
        with self._lock:
            db = self._conn()
            db.execute(
                "INSERT OR IGNORE INTO daily_reports (date, made_at, body) VALUES (?, ?, ?)",
                (report["date"], self.figures.clock(), orjson.dumps(report).decode()),
            )
            row = db.execute(
                "SELECT body FROM daily_reports WHERE date = ?", (report["date"],)
            ).fetchone()
        kept: dict[str, Any] = orjson.loads(row[0])
        return kept

    def due_at(self, date: dt.date) -> int:
        hours, minutes = (int(x) for x in self.config.daily_at.split(":"))
        when = dt.datetime.combine(date, dt.time(hours, minutes), self.figures.sun.tz)
        return int(when.timestamp() * 1000)

    # ---- making -----------------------------------------------------------------------------

    async def get(self, date: dt.date) -> dict[str, Any]:
        """The kept report of `date`, or one made now (kept if its time has come)."""
        kept = await asyncio.to_thread(self.stored, date)
        if kept is not None:
            return kept
        async with self._making:
            kept = await asyncio.to_thread(self.stored, date)
            if kept is not None:
                return kept
            report = await self.make(date)
            if report["provisional"]:
                return report
            return await asyncio.to_thread(self._keep, report)

    async def make(self, date: dt.date) -> dict[str, Any]:
        figures = self.figures
        now = figures.clock()
        night = date - dt.timedelta(days=1)
        lighting = await figures.lighting(night)
        cases = await figures.cases(night)
        flood = await self._flood_peaks(night)
        offline = await self._offline_longest(now)
        return {
            "date": date.isoformat(),
            "made_at": rfc3339(now),
            "provisional": (
                now < self.due_at(date)
                or not lighting["overall"]["complete"]
                or not self.store_caught_up()
            ),
            "night": {
                "date": lighting["date"],
                "from": lighting["from"],
                "to": lighting["to"],
                "overall": lighting["overall"],
                "by_class": lighting["by_class"],
                "by_road": lighting["by_road"],
            },
            "cases": cases,
            "flood": flood,
            "offline": offline,
        }

    async def _flood_peaks(self, day: dt.date) -> list[dict[str, Any]]:
        figures = self.figures
        start, end = figures.day_span(day)
        got = await figures.reader.points("waterlevel", ("depth_cm",), start, end)
        out: list[dict[str, Any]] = []
        for d in figures.registry.by_kind("waterlevel"):
            levels = figures.levels_of(d)
            rows = [
                (ts, float(r["depth_cm"]))
                for ts, r in got.get(d.device_id, [])
                if r.get("depth_cm") is not None
            ]
            if not rows or not levels:
                continue
            peak_ts, peak = max(rows, key=lambda r: (r[1], -r[0]))
            if peak < levels[0]:
                continue
            first = next(ts for ts, v in rows if v >= levels[0])
            above_ms = 0
            for (t0, v0), (t1, _) in itertools.pairwise(rows):
                if v0 >= levels[0]:
                    above_ms += t1 - t0
            out.append(
                {
                    "device": d.device_id,
                    "point": d.point,
                    "road": d.road,
                    "peak_cm": peak,
                    "peak_at": rfc3339(peak_ts),
                    "level": sum(1 for at in levels if peak >= at),
                    "first_over_level1": rfc3339(first),
                    "minutes_over_level1": round(above_ms / 60_000),
                }
            )
        out.sort(key=lambda x: -x["peak_cm"])
        return out

    async def _offline_longest(self, now: int) -> list[dict[str, Any]]:
        online = (await self.figures.online())["devices"]
        rows = []
        for d in self.figures.registry:
            state = online.get(d.device_id) or {}
            if state.get("online"):
                continue
            rows.append(
                {
                    "device": d.device_id,
                    "kind": d.kind,
                    "road": d.road,
                    "last_seen": state.get("last_seen"),
                }
            )
        # Never heard first, then the oldest last reading.
        rows.sort(key=lambda r: (r["last_seen"] is not None, r["last_seen"] or "", r["device"]))
        return rows[: self.config.offline_top]

    # ---- the morning job --------------------------------------------------------------------

    async def run_daily(self) -> dict[str, Any] | None:
        """Make (or read) today's report and send it once to `reports.send_to`."""
        date = self.figures.today()
        report = await self.get(date)
        if report.get("provisional") or not self.config.send_to:
            return report
        await self.send(report)
        return report

    async def send(self, report: dict[str, Any]) -> bool:
        date = report["date"]
        with self._lock:
            row = (
                self._conn()
                .execute("SELECT sent_at FROM daily_reports WHERE date = ?", (date,))
                .fetchone()
            )
        if row is not None and row[0] is not None:
            return False  # sent before (a restart after 08:00 must not send it twice)
        from figures.report_html import render_text

        title, body = render_text(report)
        ok = await asyncio.to_thread(_apprise_send, self.config.send_to, title, body)
        if ok:
            with self._lock:
                self._conn().execute(
                    "UPDATE daily_reports SET sent_at = ? WHERE date = ?",
                    (self.figures.clock(), date),
                )
        else:
            log.warning("daily report %s: sending to reports.send_to failed", date)
        return ok

    def start(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        hours, minutes = (int(x) for x in self.config.daily_at.split(":"))
        self.scheduler = AsyncIOScheduler(timezone=self.figures.settings.location.timezone)
        # At daily_at, then every quarter hour until noon: the job is idempotent (kept once, sent
        # once), and a report that could not be kept yet (store behind) is made again.
        self.scheduler.add_job(
            self._job,
            "cron",
            hour=f"{hours}-{max(hours, 11)}",
            minute=f"{minutes % 15}-59/15",
            id="daily-report",
            name="daily report",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=6 * 3600,  # down at 08:00: still make it when back that morning
        )
        self.scheduler.start()

    async def _job(self) -> None:
        try:
            await self.run_daily()
        except Exception:
            log.exception("daily report failed")

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _apprise_send(urls: list[str], title: str, body: str) -> bool:
    import apprise

    sender = apprise.Apprise()
    for url in urls:
        sender.add(url)
    return bool(sender.notify(title=title, body=body))
