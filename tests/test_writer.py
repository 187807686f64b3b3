"""The writer's error handling against a fake store: split, bisect, wait, never drop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from ingest.deadletter import DeadLetterLog
from ingest.errors import AuthError, BatchTooLargeError, RejectedBatchError, RetryableStoreError
from ingest.metrics import IngestMetrics
from ingest.spool import Spool
from ingest.writer import Writer


class FakeStore:
    def __init__(self) -> None:
        self.stored: list[bytes] = []
        self.calls: list[int] = []
        self.failures: list[Exception] = []
        self.bad: set[bytes] = set()
        self.max_lines: int | None = None

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def write(self, lines: list[bytes]) -> None:
        self.calls.append(len(lines))
        if self.failures:
            raise self.failures.pop(0)
        if self.max_lines is not None and len(lines) > self.max_lines:
            raise BatchTooLargeError("too big", status=413)
        bad = [line for line in lines if line in self.bad]
        if bad:
            raise RejectedBatchError(
                f"unable to parse '{bad[0].decode()}': invalid field", status=400
            )
        self.stored.extend(lines)


async def run_writer(
    tmp_path: Path, store: FakeStore, lines: list[bytes]
) -> tuple[Writer, DeadLetterLog]:
    spool = Spool(tmp_path / "spool", max_bytes=10**8, segment_bytes=10**6, fsync_interval_s=0.001)
    spool.open()
    spool.start()
    spool.append(lines)
    await spool.durable()
    dl = DeadLetterLog(tmp_path / "dl.jsonl", max_bytes=10**6, backups=1, max_payload_chars=1000)
    writer = Writer(
        spool,
        store,
        dl,
        IngestMetrics(),
        batch_lines=100,
        batch_interval_s=0.01,
        retry_min_s=0.001,
        retry_max_s=0.01,
    )
    task = asyncio.create_task(writer.run())
    for _ in range(400):
        await asyncio.sleep(0.01)
        if spool.pending_bytes == 0 and writer.idle.is_set():
            break
    task.cancel()
    await spool.aclose()
    return writer, dl


LINES = [f"lamp,device=L{i} on=true {i}".encode() for i in range(250)]


async def test_network_errors_and_5xx_are_retried_until_written(tmp_path: Path) -> None:
    store = FakeStore()
    store.failures = [RetryableStoreError("down")] * 5 + [
        RetryableStoreError("503", status=503, retry_after=0.01)
    ]
    writer, _ = await run_writer(tmp_path, store, LINES)
    assert sorted(store.stored) == sorted(LINES)
    assert writer.metrics.value("streetwatch_points_written_total") == 250


async def test_auth_errors_keep_the_data(tmp_path: Path) -> None:
    store = FakeStore()
    store.failures = [AuthError("bad token", status=401)]
    await run_writer(tmp_path, store, LINES[:10])
    assert store.stored == LINES[:10]


async def test_413_splits_the_batch(tmp_path: Path) -> None:
    store = FakeStore()
    store.max_lines = 30
    await run_writer(tmp_path, store, LINES)
    assert sorted(store.stored) == sorted(LINES)
    assert max(store.calls) == 100 and min(store.calls) <= 30


async def test_400_dead_letters_only_the_offending_lines(tmp_path: Path) -> None:
    store = FakeStore()
    store.bad = {LINES[17], LINES[160]}
    await run_writer(tmp_path, store, LINES)
    assert sorted(store.stored) == sorted(set(LINES) - store.bad)
    records = [orjson.loads(x) for x in (tmp_path / "dl.jsonl").read_text().splitlines()]
    assert sorted(r["item"]["line"] for r in records) == sorted(x.decode() for x in store.bad)
    assert all(
        r["reason"] == "store_rejected" and "unable to parse" in r["detail"] for r in records
    )
