"""`/api/v2/write` through influxdb-client (InfluxDB 1.8+, 2.x, 3.x): org, bucket, token.

The client's batching WriteApi can drop data on exit and after retries, so it is used in
synchronous mode only: we batch ourselves and treat HTTP 204 as the commit. The blocking call runs
in a daemon thread of its own so the event loop keeps taking messages, and so shutdown never waits
for it: a server that accepts and never answers holds the call for the whole `timeout_s` (30 s),
and both asyncio's default executor and `concurrent.futures` join their threads at exit, which
would break the 10 s SIGTERM promise. An abandoned write is harmless: its batch is not committed in
the spool, so it is written again on the next start (a replayed point is the same point).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from influxdb_client.service.write_service import WriteService
from urllib3.exceptions import HTTPError as Urllib3Error

from ingest.errors import RetryableStoreError
from ingest.stores.base import classify_http_error

if TYPE_CHECKING:
    from streetwatch.config import InfluxConfig

T = TypeVar("T")


async def in_daemon_thread(fn: Callable[[], T]) -> T:
    """Run a blocking call in a new daemon thread; cancelling the await abandons the call."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, exc: BaseException | None) -> None:
        if future.done():  # cancelled meanwhile: nobody waits for this answer
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = fn()
        except BaseException as exc:
            error = exc
        # The loop may be gone (the service stopped while this call hung): nobody to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=target, name="influxdb-v2-write", daemon=True).start()
    return await future


class InfluxV2Store:
    def __init__(self, config: InfluxConfig) -> None:
        self.config = config
        token = config.token
        if token is None and config.username:
            token = f"{config.username}:{config.password or ''}"  # InfluxDB 1.8 compatibility form
        self._client = InfluxDBClient(
            url=config.url,
            token=token or "",
            org=config.org or "-",
            timeout=int(config.timeout_s * 1000),
            enable_gzip=config.gzip,
            retries=0,  # retries are ours: classified, with backoff, never dropping
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._write_service = WriteService(self._client.api_client)

    async def start(self) -> None:
        return None

    def _write_sync(self, body: bytes) -> None:
        # The write service itself (not WriteApi.write), because only it tells the status and
        # headers: a commit is 204, or a 2xx carrying InfluxDB's own version header; a proxy's
        # 200 page is not one (the spool would drop points the database never saw).
        _, status, headers = self._write_service.post_write_with_http_info(
            org=self.config.org or "-",
            bucket=self.config.bucket,
            body=body,
            precision=WritePrecision.MS,
            content_type="text/plain; charset=utf-8",
            _return_http_data_only=False,
        )
        if status != 204 and not (headers or {}).get("X-Influxdb-Version"):
            raise RetryableStoreError(
                f"{self.config.url} answered HTTP {status} without InfluxDB's X-Influxdb-Version "
                "header: not InfluxDB (a proxy or a login page?); check influxdb.url",
                status=status,
            )

    async def write(self, lines: list[bytes]) -> None:
        body = b"\n".join(lines)
        try:
            await in_daemon_thread(lambda: self._write_sync(body))
        except ApiException as exc:
            headers: Any = exc.headers or {}
            raise classify_http_error(
                int(exc.status or 0), str(exc.body or exc.reason or ""), headers.get("Retry-After")
            ) from exc
        except (Urllib3Error, OSError) as exc:
            raise RetryableStoreError(f"InfluxDB unreachable: {exc!r}") from exc

    async def aclose(self) -> None:
        # Closing waits for a hung write's connection; give it a moment, never the whole timeout.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(in_daemon_thread(self._client.close), timeout=1.0)
