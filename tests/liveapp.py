"""The service's HTTP app, wired exactly as `streetwatch.app.Service` wires it, served by uvicorn on a
free port in a thread of its own, with only the alert lifecycle started (no broker, no InfluxDB):
fast enough for browser tests, real enough that the page talks to the real routes and SSE stream."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from alerts.model import Alert
from alerts.service import Alerting
from alerts.store import AlertStore
from alerts.testing import cond
from streetwatch.app import Service
from streetwatch.config import _deep_merge, load_settings
from tests.servers import free_port

T = TypeVar("T")

REGISTRY = """device_id,kind,road,road_class,cabinet,rated_w,point,report_interval_s
LD-0231,lamp,洸河路,main,C1,150,,300
WL-017,waterlevel,运河路,main,,,运河路下穿,60
WL-022,waterlevel,建设路,main,,,建设路下穿,60
"""


class LiveApp:
    """`with LiveApp(tmp_path, token=...) as app:` → `app.url`, `app.store`, `app.raise_alert(...)`.

    Stopping closes the alert lifecycle first (its hub ends every SSE stream) and the HTTP server
    after, as the service does; `stop()` returns how long that took."""

    def __init__(
        self,
        data_dir: Path,
        *,
        token: str | None = "t",
        port: int | None = None,
        http: dict[str, Any] | None = None,
        alerts: dict[str, Any] | None = None,
        overrides: dict[str, Any] | None = None,
        registry_csv: str = REGISTRY,
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        registry = data_dir / "registry.csv"
        registry.write_text(registry_csv, encoding="utf-8")
        self.port = port or free_port()
        base: dict[str, Any] = {
            "storage": {"data_dir": str(data_dir), "backend": "sqlite"},
            "registry": {"path": str(registry)},
            "http": {"token": token, "port": self.port, **(http or {})},
            "alerts": {"mqtt": {"enabled": False}, "sla": {"enabled": False}, **(alerts or {})},
            "rules": {"enabled": False},
        }
        settings = load_settings(overrides=_deep_merge(base, overrides or {}), env={})
        self.service = Service(settings)
        self.alerting: Alerting = self.service.alerting
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="liveapp", daemon=True)

    @property
    def store(self) -> AlertStore:
        return self.alerting.store

    def start(self) -> LiveApp:
        self._thread.start()
        if not self._ready.wait(15) or self._error is not None:
            raise RuntimeError(f"the app did not start: {self._error!r}")
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.alerting.start()
        if self.service.notifier is not None:
            await self.service.notifier.start()
        config = uvicorn.Config(
            self.service.http_app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        serving = asyncio.create_task(self._server.serve())
        while not self._server.started and not serving.done():
            await asyncio.sleep(0.01)
        self._ready.set()
        await serving

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the app's event loop (where the rule engine calls the store) and return."""
        assert self._loop is not None
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(5)

    def raise_alert(self, **kw: Any) -> Alert:
        """A condition from the rule engine (alerts.testing.cond's arguments); the open alert."""
        c = cond(**kw)
        self.call(lambda: self.store.on_condition(c))
        found = self.store.find_open(c.rule, c.device)
        assert found is not None
        return found

    def stop(self) -> None:
        if self._loop is None or not self._thread.is_alive():
            return

        async def shut() -> None:
            if self.service.notifier is not None:
                await self.service.notifier.aclose()
            await self.alerting.aclose()  # ends the SSE streams
            assert self._server is not None
            self._server.should_exit = True

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        self._thread.join(10)
        assert not self._thread.is_alive(), "the HTTP server did not stop"

    def __enter__(self) -> LiveApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
