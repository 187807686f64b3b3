"""InfluxDB 1.x `/write` (Debian's influxdb 1.6 and any 1.x): line protocol, precision ms, gzip."""

from __future__ import annotations

import asyncio
import gzip
import logging
from typing import TYPE_CHECKING

import httpx

from ingest.errors import RetryableStoreError
from ingest.stores.base import classify_http_error

if TYPE_CHECKING:
    from streetwatch.config import InfluxConfig

log = logging.getLogger(__name__)


def http_client(
    config: InfluxConfig, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The HTTP client for an InfluxDB 1.x server (the store's writes, the figures' queries)."""
    auth = (config.username, config.password or "") if config.username else None
    return httpx.AsyncClient(
        base_url=config.url.rstrip("/"),
        auth=auth,
        timeout=config.timeout_s,
        transport=transport,
        # Plain http needs no CA bundle: loading one costs ~45 ms of start-up for nothing.
        verify=not config.url.startswith("http://"),
    )


class InfluxV1Store:
    def __init__(
        self, config: InfluxConfig, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self._client = http_client(config, transport)
        self._params = {"db": config.database, "precision": "ms"}
        if config.retention_policy:
            self._params["rp"] = config.retention_policy
        self._db_ready = not config.create_database

    async def start(self) -> None:
        # A server that accepts and never answers must not hold the service's start (no MQTT,
        # no HTTP, SIGTERM unheard) for the whole timeout: the first write tries again.
        try:
            await asyncio.wait_for(self._ensure_database(), timeout=min(5.0, self.config.timeout_s))
        except TimeoutError:
            log.warning(
                "InfluxDB at %s did not answer CREATE DATABASE; will retry", self.config.url
            )

    async def _ensure_database(self) -> None:
        if self._db_ready:
            return
        try:
            resp = await self._client.post(
                "/query", data={"q": f'CREATE DATABASE "{self.config.database}"'}
            )
        except httpx.HTTPError as exc:
            log.warning("InfluxDB not reachable yet at %s: %s", self.config.url, exc)
            return
        if resp.status_code < 300:
            self._db_ready = True
        else:
            log.warning("CREATE DATABASE answered %s: %s", resp.status_code, resp.text[:200])

    async def write(self, lines: list[bytes]) -> None:
        await self._ensure_database()
        body = b"\n".join(lines) + b"\n"
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.config.gzip:
            # Level 1: most of the gain for little CPU; zlib releases the GIL, so in a worker
            # thread it runs on the other core while the loop keeps taking messages.
            body = await asyncio.to_thread(gzip.compress, body, 1)
            headers["Content-Encoding"] = "gzip"
        try:
            resp = await self._client.post(
                "/write", params=self._params, content=body, headers=headers
            )
        except httpx.HTTPError as exc:
            raise RetryableStoreError(f"InfluxDB unreachable: {exc!r}") from exc
        if resp.status_code == 204:
            return
        if 200 <= resp.status_code < 300:
            # A commit only in InfluxDB's own words: a proxy or a web server in front of the
            # wrong host answers 200 with a page, and taking that as a commit would delete the
            # spool's copy of points the database never saw.
            if resp.headers.get("X-Influxdb-Version"):
                return
            raise RetryableStoreError(
                f"{self.config.url} answered HTTP {resp.status_code} without InfluxDB's "
                "X-Influxdb-Version header: not InfluxDB (a proxy or a login page?); check "
                f"influxdb.url. Body: {resp.text[:200]!r}",
                status=resp.status_code,
            )
        message = _error_message(resp)
        if resp.status_code == 404 and "database not found" in message:
            self._db_ready = not self.config.create_database
        raise classify_http_error(resp.status_code, message, resp.headers.get("Retry-After"))

    async def aclose(self) -> None:
        await self._client.aclose()


def _error_message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
        if isinstance(data, dict) and "error" in data:
            return str(data["error"])
    except ValueError:
        pass
    return resp.text
