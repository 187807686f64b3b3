"""The stores at their boundaries: v1 and v2 HTTP requests, and the embedded SQLite store."""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from ingest.errors import AuthError, BatchTooLargeError, RejectedBatchError, RetryableStoreError
from ingest.lineprotocol import to_line
from ingest.stores.influx_v1 import InfluxV1Store
from ingest.stores.influx_v2 import InfluxV2Store
from ingest.stores.sqlite import SqliteStore
from streetwatch.config import InfluxConfig

LINES = [
    to_line(
        ("lamp", {"device": "L1", "road": "洸河路"}, {"on": True, "power": 88.0}, 1795600000000)
    ).encode(),
    to_line(("waterlevel", {"device": "W1"}, {"depth_cm": 12.5}, 1795600000001)).encode(),
]


class Recorder(http.server.BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, Any]]] = []
    answer: ClassVar[tuple[int, dict[str, str], bytes]] = (204, {}, b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        type(self).requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status, headers, payload = type(self).answer
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[Recorder]]]:
    handler = type("H", (Recorder,), {"requests": [], "answer": (204, {}, b"")})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()


async def test_v2_write_request_url_params_auth_and_gzip_body(
    server: tuple[str, type[Recorder]],
) -> None:
    url, rec = server
    store = InfluxV2Store(
        InfluxConfig(url=url, api="v2", org="jining", bucket="streetwatch", token="s3cret")
    )
    await store.start()
    await store.write(LINES)
    await store.aclose()
    (req,) = rec.requests
    parsed = urlparse(req["path"])
    assert parsed.path == "/api/v2/write"
    assert parse_qs(parsed.query) == {
        "org": ["jining"],
        "bucket": ["streetwatch"],
        "precision": ["ms"],
    }
    assert req["headers"]["Authorization"] == "Token s3cret"
    assert req["headers"]["Content-Encoding"] == "gzip"
    assert gzip.decompress(req["body"]).decode().splitlines() == [x.decode() for x in LINES]


@pytest.mark.parametrize(
    ("status", "headers", "error"),
    [
        (400, {}, RejectedBatchError),
        (413, {}, BatchTooLargeError),
        (401, {}, AuthError),
        (429, {"Retry-After": "7"}, RetryableStoreError),
        (503, {"Retry-After": "2"}, RetryableStoreError),
        (500, {}, RetryableStoreError),
    ],
)
async def test_v2_errors_are_classified(
    server: tuple[str, type[Recorder]], status: int, headers: dict[str, str], error: type[Exception]
) -> None:
    url, rec = server
    rec.answer = (
        status,
        {"Content-Type": "application/json", **headers},
        b'{"code":"x","message":"nope"}',
    )
    store = InfluxV2Store(InfluxConfig(url=url, api="v2", org="o", bucket="b", token="t"))
    with pytest.raises(error) as info:
        await store.write(LINES)
    if "Retry-After" in headers:
        assert info.value.retry_after == float(headers["Retry-After"])  # type: ignore[attr-defined]
    await store.aclose()


async def test_v1_write_request_db_rp_basic_auth_and_gzip(
    server: tuple[str, type[Recorder]],
) -> None:
    url, rec = server
    store = InfluxV1Store(
        InfluxConfig(
            url=url,
            database="city",
            retention_policy="autogen",
            username="sw",
            password="pw",
            create_database=False,
        )
    )
    await store.write(LINES)
    await store.aclose()
    (req,) = rec.requests
    parsed = urlparse(req["path"])
    assert parsed.path == "/write"
    assert parse_qs(parsed.query) == {"db": ["city"], "rp": ["autogen"], "precision": ["ms"]}
    assert req["headers"]["Authorization"].startswith("Basic ")
    assert gzip.decompress(req["body"]).decode().splitlines() == [x.decode() for x in LINES]


async def test_v1_400_carries_the_servers_message(server: tuple[str, type[Recorder]]) -> None:
    url, rec = server
    rec.answer = (
        400,
        {"Content-Type": "application/json"},
        b'{"error":"partial write: field type conflict"}',
    )
    store = InfluxV1Store(InfluxConfig(url=url, create_database=False))
    with pytest.raises(RejectedBatchError, match="field type conflict"):
        await store.write(LINES)
    await store.aclose()


async def test_v1_unreachable_is_retryable() -> None:
    store = InfluxV1Store(
        InfluxConfig(url="http://127.0.0.1:9", create_database=False, timeout_s=1)
    )
    with pytest.raises(RetryableStoreError):
        await store.write(LINES)
    await store.aclose()


async def test_sqlite_store_keeps_one_point_per_series_and_time(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "points.sqlite")
    await store.start()
    await store.write(LINES)
    await store.write(LINES)  # redelivered
    rows = store.query("SELECT measurement, device, tags, ts, fields FROM points ORDER BY ts")
    assert len(rows) == 2
    assert rows[0][:2] == ("lamp", "L1") and '"road":"洸河路"' in rows[0][2]
    assert rows[0][4] == '{"on":true,"power":88.0}'
    await store.aclose()
