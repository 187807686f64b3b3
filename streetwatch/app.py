"""Wires the pipeline (imported by nobody but the CLI and tests).

Stages are started sink-first (store, spool, writer, rules/alerts, HTTP) and stopped source-first
(MQTT first, so in-flight messages drain into the spool before anything behind it stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from alerts.auth import Credentials
from devices.catalog import set_language
from devices.registry import load_registry
from ingest.deadletter import DeadLetterLog
from ingest.decode import Decoder
from ingest.health import ingest_health
from ingest.metrics import IngestMetrics
from ingest.pipeline import ObservationSink, Pipeline
from ingest.receiver import MqttReceiver
from ingest.spool import Spool
from ingest.stores import make_store
from ingest.writer import Writer
from streetwatch.access import harden
from streetwatch.config import Settings
from streetwatch.errors import ConfigError
from streetwatch.http import create_app

log = logging.getLogger("streetwatch")


class Service:
    """The whole running service. `start()` / `stop()`; everything else is wiring."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        try:
            self.registry = load_registry(settings.registry.path)
        except Exception as exc:
            raise ConfigError(f"registry.path: {exc}") from exc
        data_dir = settings.data_dir
        self.metrics = IngestMetrics()
        self.deadletter = DeadLetterLog(
            data_dir / "deadletter.jsonl",
            max_bytes=settings.deadletter.max_bytes,
            backups=settings.deadletter.backups,
            max_payload_chars=settings.deadletter.max_payload_chars,
            max_per_minute=settings.deadletter.max_per_minute,
            per_topic_per_minute=settings.deadletter.per_topic_per_minute,
        )
        st = settings.storage
        self.spool = Spool(
            data_dir / "spool",
            max_bytes=st.spool_max_bytes,
            segment_bytes=st.spool_segment_bytes,
            fsync_interval_s=st.fsync_interval_ms / 1000.0,
            on_size=self.metrics.spool_bytes.set,
        )
        self.store = make_store(settings)
        self.writer = Writer(
            self.spool,
            self.store,
            self.deadletter,
            self.metrics,
            batch_lines=st.batch_lines,
            batch_interval_s=st.batch_interval_s,
            retry_min_s=st.retry_min_s,
            retry_max_s=st.retry_max_s,
            retry_after_max_s=st.retry_after_max_s,
        )
        self.http_app = create_app(self.metrics.registry, self.health)
        harden(
            self.http_app,
            allowed_hosts=settings.http.allowed_hosts,
            bind_host=settings.http.host,
            credentials=Credentials(settings.http.tokens, legacy=settings.http.token),
            read_token_required=settings.http.read_token_required,
        )
        sinks: list[ObservationSink] = []
        self.alerting: Any = None
        self.notifier: Any = None  # crew notices (notify/), wired with the alerts
        set_language(settings.notify.language)  # rule names in the API (devices/catalog)
        self.engine: Any = None
        if settings.alerts.enabled:
            from alerts.service import Alerting

            self.alerting = Alerting(settings, self.registry)
            self.http_app.include_router(self.alerting.router)
            self.http_app.include_router(self.alerting.stream_router)
            self.metrics.registry.register(self.alerting.collector)
            from notify.errors import NotifyConfigError
            from notify.service import Notifier

            try:
                self.notifier = Notifier(settings, self.registry, self.alerting)
            except NotifyConfigError as exc:
                raise ConfigError(str(exc)) from exc
            self.http_app.include_router(self.notifier.page_router)
            self.metrics.registry.register(self.notifier.collector)
            if settings.rules.enabled:
                from rules.engine import RuleEngine

                self.engine = RuleEngine(
                    settings.rules,
                    settings.location,
                    self.registry,
                    self.alerting.sink,
                    state_path=data_dir / "rules-state.sqlite",
                    language=settings.notify.language,
                )
                sinks.append(self.engine)
                self.metrics.registry.register(_EngineCollector(self.engine))
        self.figures: Any = None
        self.reports: Any = None
        if settings.figures.enabled:
            self._mount_figures()
        self.decoder = Decoder(
            settings.mqtt.topic_prefix, settings.mqtt.max_payload_bytes, settings.ingest.max_age
        )
        self.pipeline = Pipeline(
            self.decoder, self.registry, self.spool, self.deadletter, self.metrics, sinks
        )
        self.receiver = MqttReceiver(settings.mqtt, self.pipeline, self.metrics)
        # Whether the rules' clock may let the wall clock run (see _hold_clock).
        self._hearing = False
        self._backlog = True
        if self.engine is not None:
            self.receiver.on_link = self._on_link
        self._tasks: list[asyncio.Task[Any]] = []
        self._http: uvicorn.Server | None = None
        self._state_write: asyncio.Future[None] | None = None  # the rule-state save in flight
        self.started = time.time()

    def _mount_figures(self) -> None:
        from figures.api import build_router
        from figures.report import DailyReports
        from figures.service import Figures

        self.figures = Figures(self.settings, self.registry)
        if self.settings.reports.enabled:
            self.reports = DailyReports(
                self.figures,
                self.settings.reports,
                self.settings.data_dir / "reports.sqlite",
                # A report is kept only once what was acknowledged overnight is in the store:
                # nothing waits in the spool longer than the writer's ordinary lag (a small
                # backlog left after an outage is the oldest readings, last night's).
                store_caught_up=lambda: (
                    not self.writer.failing
                    and self.spool.oldest_age_s()
                    < max(10.0, 10 * self.settings.storage.batch_interval_s)
                ),
            )
        self.http_app.include_router(build_router(self.figures, self.reports))

    def health(self) -> dict[str, Any]:
        mqtt_up = self.receiver.connected.is_set()
        # The writer's own flag: collecting /metrics here would run every collector per probe.
        store_up = not self.writer.failing
        ingest = ingest_health(self, self.settings)
        return {
            "status": "ok" if mqtt_up and store_up and not ingest["reasons"] else "degraded",
            "mqtt_connected": mqtt_up,
            "store_up": store_up,
            "spool_bytes": self.spool.pending_bytes,
            "spool_full": self.spool.full,
            "registered_devices": len(self.registry),
            "uptime_s": round(time.time() - self.started, 1),
            **ingest,
        }

    async def start(self) -> None:
        # Before anything else: a gmqtt that would ack before the spool's fsync must not start.
        await self.receiver.check_seam()
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.spool.open()
        self.spool.start()
        await self.store.start()
        self._spawn(self.writer.run(), "writer")
        if self.alerting is not None:
            await self.alerting.start()
        if self.engine is not None:
            self.engine.load_state()
            if self.alerting is not None:
                # Rule state and alert store are saved separately; after a crash they may
                # disagree. Whichever heard last wins; a restart never clears an alert.
                self.alerting.resume(self.engine)
            # Until the first connection (and its backlog) is in, silence is ours, not the devices'.
            self.engine.link(False, time.time_ns() // 1_000_000)
            self._spawn(self._tick_loop(), "rules-tick")
        if self.reports is not None:
            self.reports.start()
        if self.notifier is not None:
            await self.notifier.start()
        http = self.settings.http
        if http.enabled:
            config = uvicorn.Config(
                self.http_app, host=http.host, port=http.port, log_level="warning", lifespan="off"
            )
            self._http = _HttpServer(config)
            self._spawn(self._http.serve(), "http")
        self._spawn(self.receiver.run(), "mqtt")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s died", task.get_name(), exc_info=task.exception())

    async def _tick_loop(self) -> None:
        last_save = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            try:
                # While our own broker link is down or catching up, silence is ours, not the
                # devices': the engine's clock holds the wall clock back (rules/clock.py).
                self._hold_clock()
                self.engine.tick(time.time_ns() // 1_000_000)
                if time.monotonic() - last_save > 1:
                    await self._save_rule_state(limit=500)
                    last_save = time.monotonic()
            except Exception:
                log.exception("rule tick failed")

    def _on_link(self, up: bool, session_kept: bool) -> None:
        if up:
            self._backlog = session_kept
        self._hold_clock()

    def _hold_clock(self) -> None:
        """Tell the rules' clock whether we hear the devices: not while our broker link is down,
        nor while a full spool holds acks back (the broker queues for us then, as in an outage)."""
        hearing = self.receiver.connected.is_set() and not self.spool.full
        if hearing != self._hearing:
            self._hearing = hearing
            self.engine.link(hearing, time.time_ns() // 1_000_000, backlog=self._backlog)
            self._backlog = True

    async def _save_rule_state(self, limit: int | None) -> None:
        """Serialise up to `limit` changed devices here, write them in a worker thread: a full
        save of thousands of busy devices blocked the loop ~100 ms (seen as alert latency)."""
        batch = self.engine.prepare_state(limit)
        if batch is None:
            return
        # Shielded: a stop that cancels the tick loop must not leave the write running unseen in
        # its thread while the final save starts another on the same file (stop() waits for it).
        self._state_write = asyncio.ensure_future(asyncio.to_thread(self.engine.write_state, batch))
        self._state_write.add_done_callback(lambda f: self._state_written(f, batch))
        await asyncio.shield(self._state_write)

    def _state_written(self, done: asyncio.Future[None], batch: Any) -> None:
        if done.cancelled() or done.exception() is not None:
            self.engine.requeue_state(batch)  # saved next time, by the loop or the final save

    async def wait_drained(self, timeout: float) -> bool:
        """Wait until the spool is empty (everything stored); True if it got there."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.spool.pending_bytes == 0 and self.writer.idle.is_set():
                return True
            await asyncio.sleep(0.05)
        return False

    async def stop(self) -> None:
        """Source first: stop MQTT, let the writer drain briefly, keep the rest in the spool."""
        await self.receiver.stop(timeout=2.0)
        await self.wait_drained(timeout=3.0)
        for task in self._tasks:
            if task.get_name() != "http":
                task.cancel()
        await asyncio.gather(
            *(t for t in self._tasks if t.get_name() != "http"), return_exceptions=True
        )
        await self.spool.aclose()
        with contextlib.suppress(Exception):
            await self.store.aclose()
        if self.engine is not None:
            if self._state_write is not None:
                # A save in flight when the tick loop was cancelled: let it finish first.
                await asyncio.gather(self._state_write, return_exceptions=True)
            with contextlib.suppress(Exception):
                self.engine.save_state()
            with contextlib.suppress(Exception):
                self.engine.close()
        if self.notifier is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.notifier.aclose(), timeout=2.0)
        if self.alerting is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.alerting.aclose(), timeout=2.0)
        if self._http is not None:
            self._http.should_exit = True
            await asyncio.gather(
                *(t for t in self._tasks if t.get_name() == "http"), return_exceptions=True
            )
        if self.reports is not None:
            with contextlib.suppress(Exception):
                self.reports.close()
        if self.figures is not None:
            with contextlib.suppress(Exception):
                await self.figures.aclose()
        self.deadletter.close()


async def run_service(settings: Settings, ready: asyncio.Event | None = None) -> int:
    """`streetwatch run`: until SIGTERM/SIGINT, then a clean stop within 10 s, exit 0."""
    service = Service(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await service.start()
    # Everything built at start (config, registry, rule bindings, imported modules) lives for the
    # whole run: keep it out of the collector's full passes, whose pauses showed up as alert latency.
    gc.freeze()
    log.info(
        "streetwatch running: broker %s:%s, store %s, http %s:%s",
        settings.mqtt.host,
        settings.mqtt.port,
        settings.storage.backend if settings.storage.backend == "sqlite" else settings.influxdb.url,
        settings.http.host,
        settings.http.port,
    )
    if ready is not None:
        ready.set()
    await stop.wait()
    log.info("stopping: no new messages; spooling what was acknowledged")
    await service.stop()
    log.info("stopped")
    return 0


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: SIGTERM belongs to run_service, which stops MQTT
    first and the HTTP server last (uvicorn would otherwise stop itself first and re-raise)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _EngineCollector:
    """The rule engine's counters on /metrics (read at scrape time)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "streetwatch_rules",
            "Rule engine counters (observed, duplicate, late, …)",
            labels=["stat"],
        )
        for name, value in sorted(self.engine.stats().items()):
            if isinstance(value, int | float):
                family.add_metric([name], float(value))
        yield family
