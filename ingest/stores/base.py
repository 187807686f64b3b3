"""The store seam and the HTTP error classification shared by the InfluxDB stores.

Classification follows Telegraf's outputs: 400/422 → the points are bad (dead-letter them, go on);
413 → split the batch; 429/503 → wait `Retry-After`; other 5xx and network errors → retry with
backoff; 401/403 → keep the data and retry slowly until the operator fixes the credentials.
"""

from __future__ import annotations

import email.utils
import re
import time
from typing import TYPE_CHECKING, Protocol

from ingest.errors import (
    AuthError,
    BatchTooLargeError,
    RejectedBatchError,
    RetryableStoreError,
    ServerLimitError,
    StoreError,
)

if TYPE_CHECKING:
    from streetwatch.config import Settings


class PointStore(Protocol):
    """Stores batches of line-protocol lines. `write` returns only once the store committed them."""

    async def start(self) -> None: ...

    async def write(self, lines: list[bytes]) -> None: ...

    async def aclose(self) -> None: ...


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# InfluxDB 1.x: "max-series-per-database limit exceeded", "max-values-per-tag limit exceeded";
# 2.x/Cloud: "series cardinality limit", "... limit reached".
_SERVER_LIMIT = re.compile(
    r"max-series-per-database|max-values-per-tag|limit exceeded|cardinality limit", re.IGNORECASE
)


def classify_http_error(status: int, message: str, retry_after: str | None = None) -> StoreError:
    text = message.strip()[:2000] or f"HTTP {status}"
    if status in (400, 422) and _SERVER_LIMIT.search(text):
        # A partial write refused by a server limit: the points are fine, the server is full.
        return ServerLimitError(text, status=status)
    if status in (400, 422):
        return RejectedBatchError(text, status=status)
    if status == 413:
        return BatchTooLargeError(text, status=status)
    if status in (401, 403):
        return AuthError(text, status=status)
    if status in (429, 503):
        return RetryableStoreError(text, status=status, retry_after=parse_retry_after(retry_after))
    if status >= 500:
        return RetryableStoreError(text, status=status)
    # Any other 4xx: most likely a configuration problem (wrong path or database): keep retrying.
    return RetryableStoreError(text, status=status)


def make_store(settings: Settings) -> PointStore:
    if settings.storage.backend == "sqlite":
        from ingest.stores.sqlite import SqliteStore

        return SqliteStore(settings.data_dir / "points.sqlite")
    if settings.influxdb.api == "v2":
        from ingest.stores.influx_v2 import InfluxV2Store

        return InfluxV2Store(settings.influxdb)
    from ingest.stores.influx_v1 import InfluxV1Store

    return InfluxV1Store(settings.influxdb)
