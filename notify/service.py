"""Crew notices, wired onto the alert lifecycle.

    notifier = Notifier(settings, registry, alerting)   # before alerting.start(): hooks the store
    app.include_router(notifier.page_router)            # /a/{id}: the one-tap ack page
    await alerting.start(); await notifier.start()      # per-channel workers
    ...
    await notifier.aclose(); await alerting.aclose()

Inside each alert change's transaction, `_on_commit` decides whether the change makes a notice
(raise, level or severity up, reminder, escalation, clear), picks the crews, renders the text and
queues one outbox row per channel. After the commit, `publish` (an alert outlet) wakes the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alerts.model import Alert, Change
from devices.catalog import phrase
from devices.registry import Registry
from notify import links
from notify.errors import NotifyConfigError
from notify.outbox import SCHEMA, Outbox, insert
from notify.routing import ESCALATION, FALLBACK, RANK, Router, Target
from notify.sender import AppriseSender, Sender, message_bytes, valid_url
from notify.text import Place, Writer
from notify.worker import ChannelWorker, wall_ms
from rules.signals import Condition

if TYPE_CHECKING:
    from alerts.service import Alerting
    from streetwatch.config import Settings

log = logging.getLogger("streetwatch.notify")

CHANNEL_RULE = "notify_channel_down"


def notice_event(previous: Alert | None, alert: Alert, change: Change) -> str | None:
    """Which notice an alert change makes, if any (acknowledged, dispatched, closed make none)."""
    action = change.action
    if action in ("raised", "reactivated"):
        return "raised"
    if action == "updated" and previous is not None:
        worse = RANK.get(alert.severity, 0) > RANK.get(previous.severity, 0)
        higher = (alert.level or 0) > (previous.level or 0)
        return "up" if worse or higher else None
    if action == "reminded":
        return "reminder"
    if action in ("overdue", "escalated"):
        return "escalation"
    if action in ("cleared", "resolved") and change.state_from != "cleared":
        return "cleared"
    return None


def check_urls(settings: Settings) -> None:
    """Every apprise URL must parse: a typo fails the start with the key named."""
    config = settings.notify
    for i, crew in enumerate(config.crews):
        for j, url in enumerate(crew.urls):
            if not valid_url(url):
                raise NotifyConfigError(
                    f"notify.crews[{i}].urls[{j}] (crew {crew.name}): not an apprise URL this"
                    f" installation can send to: {url.split('://')[0]}://…"
                )
    for key in ("fallback", "escalate_to"):
        for j, url in enumerate(getattr(config, key)):
            if not valid_url(url):
                raise NotifyConfigError(f"notify.{key}[{j}]: not an apprise URL: {url[:12]}…")


class Notifier:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        alerting: Alerting,
        *,
        sender: Sender | None = None,
    ) -> None:
        self.settings = settings
        self.config = config = settings.notify
        self.registry = registry
        self.alerting = alerting
        self.store = alerting.store
        self.enabled = config.enabled and alerting.enabled
        if self.enabled:
            check_urls(settings)
        self.router = Router(config)
        self.writer = Writer(
            language=config.language,
            timezone=settings.location.timezone,
            base_url=config.base_url,
            map_url=config.map_url,
        )
        self.sender: Sender = sender or AppriseSender()
        self.outbox = Outbox(self.store.path)
        self.workers: dict[tuple[str, str], ChannelWorker] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirty: set[tuple[str, str]] = set()
        self.queued = 0  # notices queued since start
        self.lost = 0  # changes whose notices could not be queued (a bug; counted, logged)
        if self.enabled:
            self.store.schemas.append(SCHEMA)
            self.store.tx_hooks.append(self._on_commit)
            alerting.outlets.add(self)
        from notify.page import build_page_router

        self.page_router = build_page_router(self)
        self.collector = _NotifyCollector(self)

    # ---- inside the alert store's transaction ------------------------------------------------

    def place(self, alert: Alert) -> Place:
        return Place.of(alert, self.registry.get(alert.device))

    def ack_link(self, alert_id: str, crew: str) -> str | None:
        c = self.config
        if not c.link_secret or not c.base_url or crew in (FALLBACK, ESCALATION):
            return None
        expires = int(time.time()) + c.link_ttl_s
        return links.link(c.base_url, c.link_secret, alert_id, crew, expires)

    def _on_commit(
        self, db: sqlite3.Connection, previous: Alert | None, alert: Alert, change: Change
    ) -> None:
        try:
            event = notice_event(previous, alert, change)
            if event is None:
                return
            place = self.place(alert)
            for target in self.router.targets(alert, place, event):
                notice = self.writer.notice(
                    alert, event, place, ack_link=self.ack_link(alert.id, target.crew)
                )
                insert(
                    db,
                    seq=change.seq,
                    crew=target.crew,
                    channel=target.channel,
                    alert_id=alert.id,
                    event=event,
                    created_at=change.at,
                    payload={
                        "title": notice.title,
                        "body": notice.body,
                        "line": notice.line,
                        "road": notice.road,
                    },
                )
                self._dirty.add((target.crew, target.channel))
                self.queued += 1
        except Exception:
            # Never into the store: an exception here would roll the alert change back.
            self.lost += 1
            log.exception("could not queue the notices of %s %s", change.action, alert.id)

    # ---- after the commit (an alert outlet) --------------------------------------------------

    def publish(self, alert: Alert, change: Change) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        loop = self._loop
        if loop is None:
            return  # not started yet: the workers read the outbox when they start
        for key in dirty:
            worker = self.workers.get(key)
            if worker is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed: shutting down
                    loop.call_soon_threadsafe(worker.wake)

    # ---- running -----------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.enabled or self._tasks:
            return
        self._loop = asyncio.get_running_loop()
        self.outbox.open()
        self.outbox.purge(wall_ms() - int(self.config.keep_days * 86_400_000))
        for target in self.router.all_targets():
            worker = ChannelWorker(
                target,
                self.outbox,
                self.config,
                self.sender,
                self.writer,
                on_down=self._channel_down,
                on_up=self._channel_up,
                message_bytes=message_bytes(target.url),
            )
            # A channel reported down before a restart stays down until a send works again.
            worker.down = self.store.find_open(CHANNEL_RULE, f"notify-{target.channel}") is not None
            self.workers[(target.crew, target.channel)] = worker
            self._tasks.append(
                asyncio.create_task(worker.run(), name=f"notify {target.crew}/{target.channel}")
            )
        self._tasks.append(asyncio.create_task(self._purge_daily(), name="notify purge"))
        self._rehome()

    def _rehome(self) -> None:
        """Notices queued for a channel the config no longer names (a crew's webhook replaced
        while they waited) go to that crew's channels now, once each; with no such crew left,
        they are given up. Either way nothing waits for a URL that is gone."""
        channels: dict[str, list[str]] = {}
        for crew, channel in self.workers:
            channels.setdefault(crew, []).append(channel)
        for crew, channel in sorted(k for k in self.outbox.stats() if k not in self.workers):
            to = channels.get(crew, [])
            why = "channel no longer configured" + (
                f"; queued again for {', '.join(to)}" if to else "; its crew is gone"
            )
            n = self.outbox.move(crew, channel, to, why)
            log.warning("%d notices queued for %s/%s: %s", n, crew, channel, why)

    async def _purge_daily(self) -> None:
        while True:
            await asyncio.sleep(86_400)
            try:
                self.outbox.purge(wall_ms() - int(self.config.keep_days * 86_400_000))
            except Exception:
                log.exception("notice outbox purge failed")

    async def aclose(self) -> None:
        # Cancelled again until done: on Python 3.11 a worker idling in wait_for() swallows a
        # cancel that lands as it is woken (a notice queued as the service stops), and would
        # go on sending after the store closed.
        pending = set(self._tasks)
        while pending:
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.2)
        self._tasks = []
        self.workers = {}
        self._loop = None
        self.outbox.close()

    def _channel_condition(self, target: Target, active: bool, message: str) -> Condition:
        return Condition(
            rule=CHANNEL_RULE,
            device=f"notify-{target.channel}",
            kind="notify",
            active=active,
            severity="major",
            at_ms=wall_ms(),
            message=message,
            extra={"crew": target.crew, "channel": target.channel},
        )

    def _channel_down(self, target: Target, error: str, hours: float) -> None:
        message = phrase(
            "channel.down",
            self.config.language,
            crew=target.crew,
            channel=target.channel,
            hours=round(hours, 1),
            error=error,
        )
        self.store.on_condition(self._channel_condition(target, True, message))

    def _channel_up(self, target: Target) -> None:
        message = phrase(
            "channel.up", self.config.language, crew=target.crew, channel=target.channel
        )
        self.store.on_condition(self._channel_condition(target, False, message))


class _NotifyCollector(Collector):
    def __init__(self, notifier: Notifier) -> None:
        self._n = notifier

    def collect(self) -> Iterator[Metric]:
        n = self._n
        labels = ["crew", "channel"]
        sent = CounterMetricFamily(
            "streetwatch_notify_sent", "Notices delivered (a digest counts each)", labels=labels
        )
        messages = CounterMetricFamily(
            "streetwatch_notify_messages", "Messages delivered (notices or digests)", labels=labels
        )
        failed = CounterMetricFamily(
            "streetwatch_notify_failed", "Failed send attempts", labels=labels
        )
        given_up = CounterMetricFamily(
            "streetwatch_notify_given_up", "Notices given up after give_up_after_s", labels=labels
        )
        queued = GaugeMetricFamily("streetwatch_notify_queued", "Notices waiting", labels=labels)
        oldest = GaugeMetricFamily(
            "streetwatch_notify_oldest_queued_age_seconds",
            "Age of the oldest notice waiting",
            labels=labels,
        )
        stats: dict[tuple[str, str], tuple[int, int | None]] = {}
        with contextlib.suppress(Exception):
            stats = n.outbox.stats()
        now = wall_ms()
        keys: set[tuple[str, str]] = set(n.workers) | set(stats)
        for key in sorted(keys):
            w = n.workers.get(key)
            lv = list(key)
            sent.add_metric(lv, w.sent if w else 0)
            messages.add_metric(lv, w.messages if w else 0)
            failed.add_metric(lv, w.failed if w else 0)
            given_up.add_metric(lv, w.given_up if w else 0)
            count, first = stats.get(key, (0, None))
            queued.add_metric(lv, count)
            oldest.add_metric(lv, 0 if first is None else max(0, now - first) / 1000)
        yield from (sent, messages, failed, given_up, queued, oldest)
        yield CounterMetricFamily(
            "streetwatch_notify_lost",
            "Alert changes whose notices could not be queued",
            value=n.lost,
        )


def describe(notifier: Notifier) -> dict[str, Any]:
    """A small status dict (for logs and tests)."""
    return {
        "workers": len(notifier.workers),
        "queued_since_start": notifier.queued,
        "lost": notifier.lost,
    }
