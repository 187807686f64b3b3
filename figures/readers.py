"""Reading points back: one small interface (`PointReader`), one reader per store.

The writers live in `ingest.stores`; the readers are here so the figures never reach into the
write path. Each answers the same three questions, in epoch milliseconds and plain Python values:

- `points`: every point of a measurement in [start, end), by device, with the fields asked for;
- `last`: each device's newest point since a time;
- `aggregate`: mean/min/max of one numeric field per time step (steps aligned to the epoch, so
  every store buckets alike), for one device or all of them.

`InfluxV1Reader` speaks InfluxQL over `/query`; `InfluxV2Reader` speaks Flux through
influxdb-client's query API; `SqliteReader` reads the embedded store's file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import orjson

from figures.errors import StoreReadError
from ingest.stores.influx_v1 import http_client

if TYPE_CHECKING:
    from streetwatch.config import InfluxConfig, Settings

# device -> [(ts ms, {field: value})], oldest first
Points = dict[str, list[tuple[int, dict[str, Any]]]]
# (bucket start ms, mean, min, max, count)
Bucket = tuple[int, float, float, float, int]


class PointReader(Protocol):
    async def points(
        self,
        measurement: str,
        fields: Sequence[str],
        start_ms: int,
        end_ms: int,
        device: str | None = None,
    ) -> Points: ...

    async def last(
        self, measurement: str, fields: Sequence[str], since_ms: int
    ) -> dict[str, tuple[int, dict[str, Any]]]: ...

    async def aggregate(
        self,
        measurement: str,
        field: str,
        start_ms: int,
        end_ms: int,
        step_ms: int,
        device: str | None = None,
        boolean: bool = False,
    ) -> list[Bucket]:
        """Mean/min/max/count per epoch-aligned step, computed by the store where it can (a
        whole fleet's day must not be pulled into the service). `boolean`: true counts 1."""
        ...

    async def aclose(self) -> None: ...


def make_reader(settings: Settings) -> PointReader:
    """The reader for the store the service writes to."""
    if settings.storage.backend == "sqlite":
        return SqliteReader(settings.data_dir / "points.sqlite")
    if settings.influxdb.api == "v2":
        return InfluxV2Reader(settings.influxdb)
    return InfluxV1Reader(settings.influxdb)


def buckets_of(rows: Sequence[tuple[int, float]], start_ms: int, step_ms: int) -> list[Bucket]:
    """Mean/min/max per epoch-aligned step of (ts, value) rows (for stores that cannot do it)."""
    acc: dict[int, list[float]] = {}
    for ts, value in rows:
        b = ts // step_ms * step_ms
        got = acc.get(b)
        if got is None:
            acc[b] = [value, value, value, 1.0]
        else:
            got[0] += value
            got[1] = min(got[1], value)
            got[2] = max(got[2], value)
            got[3] += 1
    return [(b, s / n, lo, hi, int(n)) for b, (s, lo, hi, n) in sorted(acc.items())]


# ---- InfluxDB 1.x: InfluxQL over /query --------------------------------------------------------


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxV1Reader:
    def __init__(
        self, config: InfluxConfig, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self._client = http_client(config, transport)

    async def _query(self, q: str) -> list[dict[str, Any]]:
        # Chunked: a plain answer is cut at the server's `[http] max-row-limit` (marked only by a
        # `partial` flag), and a night's readings read short count as dark lamps. A chunked
        # answer is every row, as a stream of JSON documents, a series continuing across them.
        params = {
            "db": self.config.database,
            "q": q,
            "epoch": "ms",
            "chunked": "true",
            "chunk_size": "10000",
        }
        if self.config.retention_policy:
            params["rp"] = self.config.retention_policy
        try:
            resp = await self._client.get("/query", params=params)
        except httpx.HTTPError as exc:
            raise StoreReadError(f"InfluxDB unreachable: {exc!r}") from exc
        if resp.status_code != 200:
            raise StoreReadError(f"InfluxDB /query answered {resp.status_code}: {resp.text[:300]}")
        series: list[dict[str, Any]] = []
        for chunk in resp.content.splitlines():
            if not chunk.strip():
                continue
            try:
                body = orjson.loads(chunk)
            except orjson.JSONDecodeError:
                body = None
            if not isinstance(body, dict):
                raise StoreReadError(f"InfluxDB /query answered {resp.text[:300]!r}")
            if "error" in body:
                raise StoreReadError(f"InfluxDB query failed: {body['error']}")
            for result in body.get("results") or []:
                if "error" in result:
                    if "database not found" in str(result["error"]):
                        return []
                    raise StoreReadError(f"InfluxDB query failed: {result['error']}")
                series += result.get("series") or []
        return series

    @staticmethod
    def _where(start_ms: int, end_ms: int, device: str | None) -> str:
        where = f"time >= {int(start_ms)}ms AND time < {int(end_ms)}ms"
        if device is not None:
            where += f" AND {_ident('device')} = {_literal(device)}"
        return where

    async def points(
        self,
        measurement: str,
        fields: Sequence[str],
        start_ms: int,
        end_ms: int,
        device: str | None = None,
    ) -> Points:
        cols = ", ".join(_ident(f) for f in fields)
        q = (
            f"SELECT {cols} FROM {_ident(measurement)} WHERE {self._where(start_ms, end_ms, device)}"
            f" GROUP BY {_ident('device')}"
        )
        out: Points = {}
        for s in await self._query(q):
            dev = (s.get("tags") or {}).get("device", "")
            names = s["columns"]
            rows = out.setdefault(dev, [])
            for values in s.get("values") or []:
                rec = dict(zip(names, values, strict=False))
                ts = int(rec.pop("time"))
                rows.append((ts, rec))
        for rows in out.values():
            rows.sort(key=lambda r: r[0])
        return out

    async def last(
        self, measurement: str, fields: Sequence[str], since_ms: int
    ) -> dict[str, tuple[int, dict[str, Any]]]:
        cols = ", ".join(_ident(f) for f in fields)
        q = (
            f"SELECT {cols} FROM {_ident(measurement)} WHERE time >= {int(since_ms)}ms"
            f" GROUP BY {_ident('device')} ORDER BY time DESC LIMIT 1"
        )
        out: dict[str, tuple[int, dict[str, Any]]] = {}
        for s in await self._query(q):
            dev = (s.get("tags") or {}).get("device", "")
            for values in (s.get("values") or [])[:1]:
                rec = dict(zip(s["columns"], values, strict=False))
                ts = int(rec.pop("time"))
                if dev not in out or out[dev][0] < ts:
                    out[dev] = (ts, rec)
        return out

    async def aggregate(
        self,
        measurement: str,
        field: str,
        start_ms: int,
        end_ms: int,
        step_ms: int,
        device: str | None = None,
        boolean: bool = False,
    ) -> list[Bucket]:
        f = _ident(field)
        where = self._where(start_ms, end_ms, device)
        group = f" GROUP BY time({int(step_ms)}ms) fill(none)"
        if boolean:
            # InfluxQL has no mean of a boolean: count all, and count the true ones.
            source = f"SELECT count({f}) FROM {_ident(measurement)} WHERE {where}"
            counts: dict[int, list[int]] = {}
            for i, q in enumerate((source + group, f"{source} AND {f} = true{group}")):
                for s in await self._query(q):
                    for t, n in s.get("values") or []:
                        if n:
                            counts.setdefault(int(t), [0, 0])[i] += int(n)
            return [
                (t, lit / n, 1.0 if lit == n else 0.0, 1.0 if lit else 0.0, n)
                for t, (n, lit) in sorted(counts.items())
                if n
            ]
        q = (
            f"SELECT mean({f}), min({f}), max({f}), count({f}) FROM {_ident(measurement)}"
            f" WHERE {where}{group}"
        )
        out: list[Bucket] = []
        for s in await self._query(q):
            for t, mean, lo, hi, n in s.get("values") or []:
                if n:
                    out.append((int(t), float(mean), float(lo), float(hi), int(n)))
        return out

    async def aclose(self) -> None:
        await self._client.aclose()


# ---- InfluxDB 2.x/3.x (and 1.8+ with Flux): influxdb-client's query API ------------------------


def _flux_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def _flux_time(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class InfluxV2Reader:
    def __init__(self, config: InfluxConfig) -> None:
        from influxdb_client import InfluxDBClient

        self.config = config
        token = config.token
        if token is None and config.username:
            token = f"{config.username}:{config.password or ''}"
        self._client = InfluxDBClient(
            url=config.url,
            token=token or "",
            org=config.org or "-",
            timeout=int(config.timeout_s * 1000),
            retries=0,
        )
        self._api = self._client.query_api()

    def _run(self, flux: str) -> list[tuple[str, int, str, Any]]:
        """(device, ts ms, field, value) per record."""
        try:
            tables = self._api.query(flux, org=self.config.org or "-")
        except Exception as exc:  # the client raises ApiException, urllib3 and socket errors
            raise StoreReadError(f"InfluxDB query failed: {exc}") from exc
        out: list[tuple[str, int, str, Any]] = []
        for table in tables:
            for rec in table.records:
                when = rec.get_time()
                ts = int(when.timestamp() * 1000) if when is not None else 0
                out.append(
                    (str(rec.values.get("device", "")), ts, rec.get_field(), rec.get_value())
                )
        return out

    def _base(
        self,
        measurement: str,
        fields: Sequence[str],
        start_ms: int,
        end_ms: int,
        device: str | None,
    ) -> str:
        ors = " or ".join(f"r._field == {_flux_str(f)}" for f in fields)
        flux = (
            f"from(bucket: {_flux_str(self.config.bucket)})"
            f" |> range(start: {_flux_time(start_ms)}, stop: {_flux_time(end_ms)})"
            f" |> filter(fn: (r) => r._measurement == {_flux_str(measurement)})"
            f" |> filter(fn: (r) => {ors})"
        )
        if device is not None:
            flux += f" |> filter(fn: (r) => r.device == {_flux_str(device)})"
        return flux

    async def points(
        self,
        measurement: str,
        fields: Sequence[str],
        start_ms: int,
        end_ms: int,
        device: str | None = None,
    ) -> Points:
        flux = self._base(measurement, fields, start_ms, end_ms, device)
        rows = await asyncio.to_thread(self._run, flux)
        merged: dict[str, dict[int, dict[str, Any]]] = {}
        for dev, ts, field, value in rows:
            merged.setdefault(dev, {}).setdefault(ts, {})[field] = value
        return {dev: sorted(by_ts.items()) for dev, by_ts in merged.items()}

    async def last(
        self, measurement: str, fields: Sequence[str], since_ms: int
    ) -> dict[str, tuple[int, dict[str, Any]]]:
        now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000) + 3_600_000
        flux = self._base(measurement, fields, since_ms, now_ms, None) + " |> last()"
        rows = await asyncio.to_thread(self._run, flux)
        newest: dict[str, int] = {}
        for dev, ts, _, _ in rows:
            newest[dev] = max(ts, newest.get(dev, ts))
        out: dict[str, tuple[int, dict[str, Any]]] = {}
        for dev, ts, field, value in rows:
            if ts == newest[dev]:
                out.setdefault(dev, (ts, {}))[1][field] = value
        return out

    async def aggregate(
        self,
        measurement: str,
        field: str,
        start_ms: int,
        end_ms: int,
        step_ms: int,
        device: str | None = None,
        boolean: bool = False,
    ) -> list[Bucket]:
        got = await self.points(measurement, [field], start_ms, end_ms, device)
        rows = [
            (ts, float(rec[field]))
            for series in got.values()
            for ts, rec in series
            if isinstance(rec.get(field), int | float)
        ]
        return buckets_of(rows, start_ms, step_ms)

    async def aclose(self) -> None:
        await asyncio.to_thread(self._client.close)


# ---- the embedded store: SQLite ----------------------------------------------------------------


def _json_path(field: str) -> str:
    return '$."' + field.replace('"', '""') + '"'


class SqliteReader:
    """Reads `points.sqlite` through its own connection (WAL: readers never block the writer)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is None:
            if not self.path.exists():
                return None  # nothing written yet
            self._db = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, check_same_thread=False
            )
            self._db.execute("PRAGMA busy_timeout=2000")
        return self._db

    def _rows(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            db = self._conn()
            if db is None:
                return []
            try:
                return list(db.execute(sql, tuple(args)))
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []
                raise StoreReadError(f"SQLite read failed: {exc}") from exc

    async def points(
        self,
        measurement: str,
        fields: Sequence[str],
        start_ms: int,
        end_ms: int,
        device: str | None = None,
    ) -> Points:
        sql = "SELECT device, ts, fields FROM points WHERE measurement = ? AND ts >= ? AND ts < ?"
        args: list[Any] = [measurement, start_ms, end_ms]
        if device is not None:
            sql += " AND device = ?"
            args.append(device)
        rows = await asyncio.to_thread(self._rows, sql + " ORDER BY ts", args)
        out: Points = {}
        wanted = set(fields)
        for dev, ts, text in rows:
            data = orjson.loads(text)
            rec = {k: v for k, v in data.items() if k in wanted}
            if rec:
                out.setdefault(dev, []).append((int(ts), rec))
        return out

    async def last(
        self, measurement: str, fields: Sequence[str], since_ms: int
    ) -> dict[str, tuple[int, dict[str, Any]]]:
        # SQLite returns the bare columns of the row that holds max(ts).
        sql = (
            "SELECT device, max(ts), fields FROM points WHERE measurement = ? AND ts >= ?"
            " GROUP BY device"
        )
        rows = await asyncio.to_thread(self._rows, sql, [measurement, since_ms])
        wanted = set(fields)
        out: dict[str, tuple[int, dict[str, Any]]] = {}
        for dev, ts, text in rows:
            data = orjson.loads(text)
            out[dev] = (int(ts), {k: v for k, v in data.items() if k in wanted})
        return out

    async def aggregate(
        self,
        measurement: str,
        field: str,
        start_ms: int,
        end_ms: int,
        step_ms: int,
        device: str | None = None,
        boolean: bool = False,
    ) -> list[Bucket]:
        inner = (
            "SELECT ts, json_extract(fields, ?) AS v FROM points"
            " WHERE measurement = ? AND ts >= ? AND ts < ?"
        )
        args: list[Any] = [_json_path(field), measurement, start_ms, end_ms]
        if device is not None:
            inner += " AND device = ?"
            args.append(device)
        sql = (
            f"SELECT (ts / ?) * ? AS b, avg(v), min(v), max(v), count(v) FROM ({inner})"
            " WHERE v IS NOT NULL GROUP BY b ORDER BY b"
        )
        rows = await asyncio.to_thread(self._rows, sql, [step_ms, step_ms, *args])
        return [(int(b), float(m), float(lo), float(hi), int(n)) for b, m, lo, hi, n in rows]

    async def aclose(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
