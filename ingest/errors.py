"""Errors of the `ingest` package.

IngestError
├── SpoolError            the local spool cannot be opened or written (disk full, corrupt head)
├── SpoolFull             the spool reached storage.spool_max_bytes; acks wait, nothing is dropped
├── MqttSeamError         the installed gmqtt does not take the receiver's ack hook (refuse to start)
└── StoreError            a store answered with an error
    ├── RetryableStoreError   network error, 5xx, 429/503 (retry_after set when the server said)
    ├── RejectedBatchError    400/422: the points themselves are bad (message from the server)
    ├── BatchTooLargeError    413: split the batch and try again
    ├── AuthError             401/403: keep the data, wait for the operator to fix credentials
    └── ServerLimitError      400 naming a server limit (max series, max values per tag): keep
                              the data, retry slowly, say so in /healthz until the operator acts
"""

from __future__ import annotations


class IngestError(Exception):
    """Base of every error raised by `ingest`."""


class SpoolError(IngestError):
    """The spool's files cannot be used."""


class SpoolFull(IngestError):
    """The spool is at its size limit."""


class MqttSeamError(IngestError):
    """gmqtt does not behave as the batching ack hook needs: starting could ack before the fsync."""


class StoreError(IngestError):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetryableStoreError(StoreError):
    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class RejectedBatchError(StoreError):
    """The server refused the points (HTTP 400/422); `message` is the server's explanation."""


class BatchTooLargeError(StoreError):
    """HTTP 413."""


class AuthError(StoreError):
    """HTTP 401/403: credentials are wrong; data is kept and retried slowly."""


class ServerLimitError(StoreError):
    """The server refused points because one of its own limits is reached, not because they are
    bad (InfluxDB 1.x `max-series-per-database`, `max-values-per-tag`): keep them and retry."""
