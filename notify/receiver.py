"""A small local receiver for apprise `json://` notices: the demo prints what it gets, tests count it.

    with JsonReceiver(port) as rx:          # json://127.0.0.1:{port}/hook
        ...; rx.received                    # [{"title": …, "message": …, "path": …, "at": …}, …]

`stop()` closes the port (a receiver that is down), `start()` opens the same port again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


class JsonReceiver:
    def __init__(
        self,
        port: int,
        *,
        host: str = "127.0.0.1",
        on_notice: Callable[[dict[str, Any]], None] | None = None,
        max_bytes: int | None = None,
    ) -> None:
        self.host = host
        # Refuse (413) a title and message longer than this many UTF-8 bytes, as chat bots do
        # (a WeCom bot takes 2048 bytes, DingTalk about 20000).
        self.max_bytes = max_bytes
        self.refused = 0
        self.port = port
        self.on_notice = on_notice
        self.received: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "hook") -> str:
        return f"json://{self.host}:{self.port}/{path}"

    def start(self) -> JsonReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    data = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    self.send_response(400)
                    self.end_headers()
                    return
                size = len(str(data.get("title", "")).encode()) + len(
                    str(data.get("message", "")).encode()
                )
                if receiver.max_bytes is not None and size > receiver.max_bytes:
                    with receiver.cond:
                        receiver.refused += 1
                    self.send_response(413)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                notice = {
                    "title": data.get("title", ""),
                    "message": data.get("message", ""),
                    "path": self.path,
                    "at": time.time(),
                }
                with receiver.cond:
                    receiver.received.append(notice)
                    receiver.cond.notify_all()
                if receiver.on_notice is not None:
                    receiver.on_notice(notice)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="json-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def wait(self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"receiver on {self.port}: {len(self.received)} notices")
                self.cond.wait(left)

    def __enter__(self) -> JsonReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
