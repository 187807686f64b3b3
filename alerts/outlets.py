"""Where alert changes go: one small interface, so the lifecycle never knows who listens.

    AlertOutlet (Protocol)   publish(alert, change): take it and return at once, never raise
    ├── Fanout               hands each change to every outlet added; one failing outlet harms no other
    ├── Hub                  in-memory broadcast to asyncio subscribers (SSE, the control-centre page)
    └── MqttOutlet           (mqtt_outlet.py) retained messages on {prefix}/alerts/{rule}/{device}

`publish` is called right after the change is committed to the store, on the caller's thread (normally
the event loop: the rule engine on the ingest hot path; an HTTP action runs in the thread pool), with the
store's lock still held, so outlets are handed changes in audit-seq order. So it must not block, and
outlets that touch asyncio objects hand over through the loop's queue (`call_soon_threadsafe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

from alerts.model import Alert, Change

log = logging.getLogger("streetwatch.alerts")


class AlertOutlet(Protocol):
    def publish(self, alert: Alert, change: Change) -> None:
        """Take one change (already stored). Must return quickly and must not raise."""


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class Fanout:
    """An outlet made of outlets (the SSE hub, MQTT, crew notices). Add and remove at any time."""

    def __init__(self) -> None:
        self._outlets: list[AlertOutlet] = []
        self.errors = 0

    def add(self, outlet: AlertOutlet) -> None:
        if outlet not in self._outlets:
            self._outlets = [*self._outlets, outlet]  # copy: publish may be iterating

    def remove(self, outlet: AlertOutlet) -> None:
        self._outlets = [o for o in self._outlets if o is not outlet]

    def __len__(self) -> int:
        return len(self._outlets)

    def publish(self, alert: Alert, change: Change) -> None:
        for outlet in self._outlets:
            try:
                outlet.publish(alert, change)
            except Exception:
                # An outlet's bug must not undo a committed transition or starve the other outlets.
                self.errors += 1
                log.exception("alert outlet %r failed on %s", outlet, change.action)


class Subscription:
    """One listener's queue. Iterate it with `async for alert, change in sub`; close when done.

    Bounded: a listener that falls behind loses the oldest changes rather than growing memory;
    `lagged` counts them so an SSE client can be told to reload the list.
    """

    def __init__(self, hub: Hub, maxsize: int, loop: asyncio.AbstractEventLoop) -> None:
        self._hub = hub
        self._items: deque[tuple[Alert, Change]] = deque()
        self._maxsize = maxsize
        self._loop = loop
        self._ready = asyncio.Event()
        self.lagged = 0
        self.closed = False

    def _put(self, item: tuple[Alert, Change]) -> None:
        if len(self._items) >= self._maxsize:
            self._items.popleft()
            self.lagged += 1
        self._items.append(item)
        self._ready.set()

    def offer(self, item: tuple[Alert, Change]) -> None:
        # Always through the loop's queue, even from the loop itself: a change made on another
        # thread (an HTTP action in the thread pool) is queued there too, so the order in which
        # the store hands changes out (seq order) is the order a subscriber reads them.
        try:
            if _on_loop(self._loop):
                self._loop.call_soon(self._put, item)
            else:
                self._loop.call_soon_threadsafe(self._put, item)
        except RuntimeError:  # the loop is closed: nobody is reading any more
            self.closed = True

    async def get(self) -> tuple[Alert, Change]:
        while not self._items:
            if self.closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def __aiter__(self) -> AsyncIterator[tuple[Alert, Change]]:
        return self

    async def __anext__(self) -> tuple[Alert, Change]:
        return await self.get()

    def pending(self) -> int:
        return len(self._items)

    def close(self) -> None:
        self.closed = True
        self._hub._remove(self)
        if _on_loop(self._loop):
            self._ready.set()
        else:
            with contextlib.suppress(RuntimeError):  # a closed loop has no reader to wake
                self._loop.call_soon_threadsafe(self._ready.set)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Hub:
    """In-memory broadcast: every change to every current subscriber (for SSE and the page)."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.maxsize = maxsize
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self.closed = False  # set by close(): new subscriptions end at once (service stopping)

    def subscribe(self, maxsize: int | None = None) -> Subscription:
        """Call from the event loop that will read the subscription."""
        sub = Subscription(self, maxsize or self.maxsize, asyncio.get_running_loop())
        with self._lock:
            if self.closed:
                sub.closed = True
                return sub
            self._subs = [*self._subs, sub]
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = [s for s in self._subs if s is not sub]

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, alert: Alert, change: Change) -> None:
        for sub in self._subs:
            sub.offer((alert, change))

    def open(self) -> None:
        """Take subscribers again after close() (the service started again)."""
        self.closed = False

    def close(self) -> None:
        """End every subscription (their readers get what was queued, then the end)."""
        with self._lock:
            self.closed = True
        for sub in list(self._subs):
            sub.close()
