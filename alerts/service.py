"""Wiring of the alert lifecycle: what the app calls.

    alerting = Alerting(settings, registry)       # no I/O here
    engine = RuleEngine(..., sink=alerting.sink)  # the rule engine's ConditionSink
    app.include_router(alerting.router)           # /api/alerts...
    app.include_router(alerting.stream_router)    # /api/alerts/stream (server-sent events)
    await alerting.start()                        # open the store, scheduler, MQTT publisher
    ...
    await alerting.aclose()                       # flush and stop (a few seconds at most)

Start it before the rule engine runs and close it after the engine stopped (sink first, source last:
conditions arriving before `start()` are dropped and counted, never raised into the engine).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alerts.api import build_router
from alerts.auth import Credentials
from alerts.model import STATES, wall_ms
from alerts.mqtt_outlet import CURSOR, MqttOutlet
from alerts.outlets import Fanout, Hub
from alerts.sla import SlaPolicy
from alerts.store import AlertStore
from alerts.stream import build_stream_router
from devices.registry import Registry
from rules.signals import Condition, ConditionSink

if TYPE_CHECKING:
    from streetwatch.config import Settings

log = logging.getLogger("streetwatch.alerts")


def _road_lookup(registry: Registry) -> Callable[[str, str], str | None]:
    """Road of a device; for a cabinet, the road its lamps share (None when they disagree)."""
    cabinets: dict[str, str | None] = {}

    def road_of(kind: str, device: str) -> str | None:
        found = registry.get(device)
        if found is not None:
            return found.road
        if kind == "cabinet":
            if device not in cabinets:
                roads = {d.road for d in registry.by_cabinet(device) if d.road}
                cabinets[device] = roads.pop() if len(roads) == 1 else None
            return cabinets[device]
        return None

    return road_of


class RestartedEngine(Protocol):
    """What `Alerting.resume` needs of the rule engine (rules.engine.RuleEngine)."""

    def open_conditions(self) -> list[Condition]: ...

    def align(self, told: Iterable[Condition]) -> int: ...


class _DisabledSink:
    """alerts.enabled: false: the rule engine may still run; its conditions go nowhere."""

    def on_condition(self, condition: Condition) -> None:
        return None


class Alerting:
    """The alert lifecycle, its store, outlets, time limits and HTTP routes.

    Attributes:
        sink: the `ConditionSink` to hand to the rule engine.
        router: the FastAPI APIRouter (`/api/alerts...`) to mount on the app.
        stream_router: `GET /api/alerts/stream` (server-sent events, `alerts.stream`); mount it too.
        store: the `AlertStore` (list/get/history and ack/dispatch/resolve/close).
        outlets: the `Fanout` every change goes to; add outlets (SSE, crew notices) here.
        hub: the in-memory broadcast (already in `outlets`); `hub.subscribe()` for SSE.
        mqtt: the MQTT outlet, or None when alerts.mqtt.enabled is false.
        collector: a Prometheus collector; `registry.register(alerting.collector)`.
    """

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.settings = settings
        self.config = config = settings.alerts
        self.enabled = config.enabled
        self.outlets = Fanout()
        self.hub = Hub(maxsize=config.subscriber_queue)
        self.outlets.add(self.hub)
        path = Path(config.db_file)
        if not path.is_absolute():
            path = Path(settings.storage.data_dir) / path
        self.policy = SlaPolicy.from_config(config.sla)
        self.store = AlertStore(
            path,
            outlet=self.outlets,
            policy=self.policy,
            clock=clock,
            road_of=_road_lookup(registry),
        )
        self.sink: ConditionSink = self.store if self.enabled else _DisabledSink()
        # Named tokens (http.tokens) and the older http.token (as `operator`): the audit trail's
        # `who` is the matching credential's name. Other routers (CLI, ack links) may reuse it.
        self.credentials = Credentials(settings.http.tokens, legacy=settings.http.token)
        self.router = build_router(
            self.store,
            credentials=self.credentials,
            default_limit=config.default_limit,
            max_limit=config.max_limit,
            enabled=self.enabled,
        )
        self.stream_router = build_stream_router(
            self.store,
            self.hub,
            replay_max=config.max_limit,
            enabled=self.enabled,
            max_clients=config.max_stream_clients,
        )
        self.mqtt: MqttOutlet | None = None
        if self.enabled and config.mqtt.enabled:
            self.mqtt = MqttOutlet(
                settings.mqtt,
                config.mqtt,
                on_flushed=lambda seq: self.store.set_cursor(CURSOR, seq),
            )
        self.scheduler: AsyncIOScheduler | None = None
        self.clock = clock
        self.purged = 0  # closed alerts purged by the retention job since start
        self.collector = _AlertsCollector(self)
        self.started = False

    async def start(self) -> None:
        """Open the store, catch up on time limits, start the SLA scheduler and the MQTT publisher."""
        if not self.enabled or self.started:
            return
        self.store.open()
        self.hub.open()
        if self.mqtt is not None:
            cursor = self.store.get_cursor(CURSOR)
            if cursor is None:
                # First start with this store: publish every open alert once, then follow changes.
                self.mqtt.recover((a, 0) for a in self.store.open_alerts())
                self.store.set_cursor(CURSOR, self.store.last_seq())
            else:
                self.mqtt.recover(self.store.changed_since(cursor))
            self.outlets.add(self.mqtt)
            await self.mqtt.start()
        self.scheduler = AsyncIOScheduler(timezone=self.settings.location.timezone)
        if self.config.retention_days is not None:
            # Daily, in the small hours, and once soon after start (catching up after downtime).
            self.scheduler.add_job(
                self.purge,
                "cron",
                hour=3,
                minute=30,
                id="alerts-retention",
                name="alert retention",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
            self.scheduler.add_job(self.purge, "date", id="alerts-retention-start")
        if self.config.sla.enabled:
            self.store.sweep_sla()  # limits that passed while the service was down
            self.scheduler.add_job(
                self._sla_tick,
                "interval",
                seconds=self.config.sla.check_interval_s,
                id="alerts-sla",
                name="alert time limits",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        self.scheduler.start()
        self.started = True

    async def purge(self) -> int:
        """Closed alerts older than alerts.retention_days go, with their audit trail (a worker
        thread does the deleting: a first purge of a big table must not hold up the loop)."""
        days = self.config.retention_days
        if days is None or not self.store.is_open:
            return 0
        cutoff = self.clock() - int(days * 86_400_000)
        try:
            n = await asyncio.to_thread(self.store.purge_closed, cutoff)
        except Exception:
            log.exception("alert retention failed")
            return 0
        self.purged += n
        if n:
            log.info("alert retention: %d closed alerts older than %g days purged", n, days)
        return n

    async def _sla_tick(self) -> None:
        # A coroutine job: AsyncIOScheduler runs it on the event loop, next to the store's users
        # (a plain function would go to a thread pool).
        try:
            changes = self.store.sweep_sla()
        except Exception:
            log.exception("alert time-limit check failed")
            return
        if changes:
            log.info("alert time limits: %d changes", len(changes))

    def resume(self, engine: RestartedEngine) -> int:
        """After the rule engine restored its state (`engine.load_state()`): the engine takes the
        store's word where it is newer (alerts raised or cleared after the last state save, or a
        missing state file), then the store raises what only the engine knew. A restart never
        clears an alert. Returns the alert changes made."""
        if not self.started:
            return 0
        held = engine.open_conditions()
        engine.align(self.store.told(also=[(c.rule, c.device) for c in held]))
        return self.store.reconcile(engine.open_conditions())

    def reconcile(self, held: Iterable[Condition], at_ms: int | None = None) -> int:
        """Raise what `held` (the engine's open conditions) has and the store misses; never
        clears. `resume(engine)` is the whole restart step (the engine takes the store's word
        first); this older form is kept for callers that have only the conditions."""
        if not self.started:
            return 0
        return self.store.reconcile(held, at_ms)

    async def aclose(self, timeout: float = 1.5) -> None:
        """Stop the scheduler, flush the MQTT queue (up to `timeout` s), close the store.

        The store is closed even if this is cancelled (e.g. by a caller's wait_for); what the broker
        did not acknowledge is published after the next start (the MQTT cursor)."""
        try:
            if self.scheduler is not None:
                self.scheduler.shutdown(wait=False)
                self.scheduler = None
            if self.mqtt is not None:
                self.outlets.remove(self.mqtt)
                await self.mqtt.aclose(timeout)
        finally:
            self.hub.close()
            self.store.shutdown()
            self.started = False


class _AlertsCollector(Collector):
    """Read at scrape time, so the hot path pays nothing for metrics."""

    def __init__(self, alerting: Alerting) -> None:
        self._a = alerting

    def collect(self) -> Iterator[Metric]:
        a = self._a
        by_state = GaugeMetricFamily(
            "streetwatch_alerts_open", "Open alerts by state", labels=["state"]
        )
        counts = dict.fromkeys(STATES[:-1], 0)
        overdue = 0
        if a.store.is_open:
            for alert in a.store.open_alerts():
                counts[alert.state] = counts.get(alert.state, 0) + 1
                overdue += bool(alert.overdue)
        for state, n in counts.items():
            by_state.add_metric([state], n)
        yield by_state
        yield GaugeMetricFamily(
            "streetwatch_alerts_overdue_open", "Open alerts that passed a time limit", value=overdue
        )
        yield CounterMetricFamily(
            "streetwatch_alerts_sink_errors",
            "Conditions the alert store failed to take",
            value=a.store.sink_errors + a.store.dropped_before_open,
        )
        yield CounterMetricFamily(
            "streetwatch_alerts_purged",
            "Closed alerts purged by the retention job (alerts.retention_days)",
            value=a.purged,
        )
        slots = getattr(a.stream_router, "stream_slots", None)
        if slots is not None:
            yield GaugeMetricFamily(
                "streetwatch_alerts_streams_open", "Live alert streams open", value=slots.open
            )
            yield CounterMetricFamily(
                "streetwatch_alerts_streams_refused",
                "Live alert streams refused (alerts.max_stream_clients)",
                value=slots.refused,
            )
        yield CounterMetricFamily(
            "streetwatch_alerts_outlet_errors", "Outlet failures", value=a.outlets.errors
        )
        m = a.mqtt
        if m is not None:
            yield GaugeMetricFamily(
                "streetwatch_alerts_mqtt_connected",
                "1 while the alert publisher is connected",
                value=int(m.connected),
            )
            yield GaugeMetricFamily(
                "streetwatch_alerts_mqtt_queued",
                "Alert changes waiting for the broker",
                value=m.queued,
            )
            yield CounterMetricFamily(
                "streetwatch_alerts_mqtt_published",
                "Alert messages acknowledged by the broker",
                value=m.published,
            )
            yield CounterMetricFamily(
                "streetwatch_alerts_mqtt_failed",
                "Alert changes that could not be published at all (logged and skipped)",
                value=m.failed,
            )
            yield CounterMetricFamily(
                "streetwatch_alerts_mqtt_dropped",
                "Superseded alert changes dropped by queue compaction",
                value=m.dropped,
            )
