"""A store answer is a commit only when the store says so in its own words; limits keep data."""

from __future__ import annotations

import asyncio
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ingest.deadletter import DeadLetterLog
from ingest.errors import RetryableStoreError, ServerLimitError
from ingest.metrics import IngestMetrics
from ingest.spool import Spool
from ingest.stores.influx_v1 import InfluxV1Store
from ingest.writer import Writer
from streetwatch.config import InfluxConfig

LINES = [f"lamp,device=L{i} on=true {1795600000000 + i}".encode() for i in range(20)]

LOGIN_PAGE = b"<html><body><form action=/login>Password: <input type=password></form></body></html>"


class Answer(http.server.BaseHTTPRequestHandler):
    answer: ClassVar[tuple[int, dict[str, str], bytes]] = (200, {}, b"")
    posts: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).posts.append(self.path)
        status, headers, body = type(self).answer
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, type[Answer]]]:
    handler: Any = type("H", (Answer,), {"answer": (200, {}, b""), "posts": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()


def v1(url: str) -> InfluxV1Store:
    return InfluxV1Store(InfluxConfig(url=url, create_database=False, gzip=False))


async def test_a_proxys_200_login_page_is_not_a_commit(
    http_server: tuple[str, type[Answer]],
) -> None:
    url, handler = http_server
    handler.answer = (200, {"Content-Type": "text/html"}, LOGIN_PAGE)
    store = v1(url)
    with pytest.raises(RetryableStoreError, match="X-Influxdb-Version"):
        await store.write(LINES)
    await store.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        (204, {}, b""),
        (204, {"X-Influxdb-Version": "1.6.7"}, b""),
        (200, {"X-Influxdb-Version": "1.8.10"}, b""),
    ],
)
async def test_influxdbs_own_answers_are_commits(
    http_server: tuple[str, type[Answer]], answer: tuple[int, dict[str, str], bytes]
) -> None:
    url, handler = http_server
    handler.answer = answer
    store = v1(url)
    await store.write(LINES)
    await store.aclose()


@pytest.mark.parametrize(
    "message",
    [
        "partial write: max-series-per-database limit exceeded: (1000000) dropped=20",
        "partial write: max-values-per-tag limit exceeded (100000/100000): "
        'measurement="lamp" tag="device" value="L9" dropped=1',
    ],
)
async def test_a_400_naming_a_server_limit_is_kept_not_dead_lettered(
    http_server: tuple[str, type[Answer]], message: str
) -> None:
    url, handler = http_server
    handler.answer = (
        400,
        {"Content-Type": "application/json"},
        b'{"error":"%s"}' % message.encode().replace(b'"', b'\\"'),
    )
    store = v1(url)
    with pytest.raises(ServerLimitError, match="limit exceeded"):
        await store.write(LINES)
    await store.aclose()


async def make_writer(
    tmp_path: Path, store: Any, **kw: float
) -> tuple[Writer, Spool, DeadLetterLog]:
    spool = Spool(tmp_path / "spool", max_bytes=10**8, segment_bytes=10**6, fsync_interval_s=0.001)
    spool.open()
    spool.start()
    spool.append(LINES)
    await spool.durable()
    dl = DeadLetterLog(tmp_path / "dl.jsonl", max_bytes=10**6, backups=1, max_payload_chars=1000)
    writer = Writer(
        spool,
        store,
        dl,
        IngestMetrics(),
        batch_lines=100,
        batch_interval_s=0.01,
        retry_min_s=0.01,
        retry_max_s=0.05,
        retry_after_max_s=kw.get("retry_after_max_s", 60.0),
    )
    return writer, spool, dl


async def test_the_spool_keeps_everything_while_a_proxy_answers_200(
    tmp_path: Path, http_server: tuple[str, type[Answer]]
) -> None:
    url, handler = http_server
    handler.answer = (200, {"Content-Type": "text/html"}, LOGIN_PAGE)
    store = v1(url)
    writer, spool, _ = await make_writer(tmp_path, store)
    task = asyncio.create_task(writer.run())
    deadline = time.monotonic() + 10
    while len(handler.posts) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert spool.pending_bytes > 0
    assert writer.failing and "X-Influxdb-Version" in (writer.reason or "")
    handler.answer = (204, {"X-Influxdb-Version": "1.6.7"}, b"")  # the URL is fixed
    while spool.pending_bytes and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert spool.pending_bytes == 0 and not writer.failing
    task.cancel()
    await spool.aclose()
    await store.aclose()


async def test_server_limits_keep_the_data_and_say_why(
    tmp_path: Path, http_server: tuple[str, type[Answer]]
) -> None:
    url, handler = http_server
    handler.answer = (
        400,
        {"Content-Type": "application/json"},
        b'{"error":"partial write: max-series-per-database limit exceeded: (1000000) dropped=20"}',
    )
    store = v1(url)
    writer, spool, dl = await make_writer(tmp_path, store)
    task = asyncio.create_task(writer.run())
    deadline = time.monotonic() + 10
    while len(handler.posts) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert dl.written == 0  # not bad data: nothing dead-lettered
    assert spool.pending_bytes > 0
    assert writer.failing and "max-series-per-database" in (writer.reason or "")
    handler.answer = (204, {}, b"")  # the operator raised the limit
    while spool.pending_bytes and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert spool.pending_bytes == 0
    task.cancel()
    await spool.aclose()
    await store.aclose()


class AskForever:
    def __init__(self) -> None:
        self.calls = 0

    async def write(self, lines: list[bytes]) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RetryableStoreError("busy", status=503, retry_after=3600.0)


async def test_retry_after_is_capped(tmp_path: Path) -> None:
    store = AskForever()
    writer, spool, _ = await make_writer(tmp_path, store, retry_after_max_s=0.05)
    task = asyncio.create_task(writer.run())
    deadline = time.monotonic() + 10
    while spool.pending_bytes and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert store.calls == 2 and spool.pending_bytes == 0
    task.cancel()
    await spool.aclose()


class Surprising:
    """A store that fails once with an error class the writer has no rule for."""

    def __init__(self) -> None:
        self.calls = 0
        self.stored: list[bytes] = []

    async def write(self, lines: list[bytes]) -> None:
        self.calls += 1
        if self.calls == 1:
            raise KeyError("corrupt store index")
        self.stored.extend(lines)


async def test_a_writer_that_dies_is_restarted_counted_and_reported(tmp_path: Path) -> None:
    store = Surprising()
    writer, spool, _ = await make_writer(tmp_path, store)
    real_commit = spool.commit
    fail_commit = [True]

    def commit(batch: Any) -> None:
        if fail_commit and store.calls == 2:
            fail_commit.clear()
            raise OSError(28, "No space left on device")  # writing the checkpoint
        real_commit(batch)

    spool.commit = commit  # type: ignore[method-assign]
    task = asyncio.create_task(writer.run())
    deadline = time.monotonic() + 10
    seen_reasons: set[str] = set()
    while (spool.pending_bytes or writer.reason) and time.monotonic() < deadline:
        if writer.reason:
            seen_reasons.add(writer.reason)
        await asyncio.sleep(0.005)
    assert spool.pending_bytes == 0 and writer.reason is None and not writer.failing
    assert writer.metrics.writer_restarts == 2
    assert any("corrupt store index" in r for r in seen_reasons)
    assert store.stored[: len(LINES)] == LINES
    task.cancel()
    await spool.aclose()


async def test_v2_a_proxys_200_page_is_not_a_commit(
    http_server: tuple[str, type[Answer]],
) -> None:
    from ingest.stores.influx_v2 import InfluxV2Store

    url, handler = http_server
    handler.answer = (200, {"Content-Type": "text/html"}, LOGIN_PAGE)
    store = InfluxV2Store(InfluxConfig(url=url, api="v2", org="o", bucket="b", token="t"))
    with pytest.raises(RetryableStoreError, match="X-Influxdb-Version"):
        await store.write(LINES)
    handler.answer = (204, {}, b"")
    await store.write(LINES)
    handler.answer = (200, {"X-Influxdb-Version": "v2.7.11"}, b"")
    await store.write(LINES)
    await store.aclose()
