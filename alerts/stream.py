"""The live alert feed: `GET /api/alerts/stream`, server-sent events (contract §3).

What a client reads (`text/event-stream`, UTF-8; blank line after each event):

    retry: 3000                 once, first: a browser reconnects after 3 s
    event: snapshot             only when the stream starts from the current state (see below):
    data: {"seq": 41, "open": 2, "sent": 2, "truncated": false}   the open alerts follow (at
                                most `replay_max`, newest first: `truncated` says when more are
                                open), then `ready`; `"reason": "replay_limit"` when a resume was
                                too far behind and this snapshot replaces it
    event: alert                one per change of an alert, in audit order
    id: 42                      the change's audit seq (absent on snapshot alerts)
    data: {alert object, contract §3}
    event: ready                the catch-up is done; live changes follow
    id: 41                      the store's last seq when the stream started
    data: {"seq": 41, "mode": "snapshot" | "resume" | "live", "alerts": 2, …}
    : keep-alive                a comment every `keepalive_s` seconds of silence

How it starts:

- `Last-Event-ID: n` (a browser's EventSource sends it by itself when it reconnects; `?last_event_id=n`
  does the same for clients that cannot set headers): **resume**. Every alert changed after seq n is
  sent once, in its current state, with its latest seq as `id`, in seq order (several changes of one
  alert while the client was away collapse into the last; a closed alert arrives as `closed`). Falls
  back to a snapshot when n is not a number, is newer than the store (another store: ids start
  again), or more than `replay_max` alerts changed since.
- Otherwise: **snapshot** (`snapshot` event, every open alert as an `alert` event without `id`, then
  `ready`). A client that already shows alerts drops those the snapshot did not mention.
  `?snapshot=false` skips it (mode `live`: changes from now on only).

Live changes come from the in-memory hub (`Alerting.hub`), which hands them out in seq order. A client
too slow for its queue (`alerts.subscriber_queue`) does not lose changes: the stream notices the
overflow and catches up from the store's audit trail, as on a resume. A change is never sent twice
under the same seq, and every seq sent is larger than the one before, so `Last-Event-ID` is exact.

The stream ends when the client goes away or the service stops (`Hub.close()`), which lets the HTTP
server shut down without waiting for open streams; the browser then reconnects with its last id.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse

from alerts.api import ErrorBody
from alerts.errors import AlertStoreError
from alerts.model import Alert
from alerts.outlets import Hub
from alerts.store import AlertStore

log = logging.getLogger("streetwatch.alerts")

MEDIA_TYPE = "text/event-stream"
KEEPALIVE = b": keep-alive\n\n"


def sse_event(event: str, data: Any, event_id: int | None = None) -> bytes:
    """One server-sent event. JSON never contains a raw newline, so `data` is always one line."""
    head = f"event: {event}\n"
    if event_id is not None:
        head += f"id: {event_id}\n"
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def _alert_events(rows: Iterable[tuple[Alert, int | None]]) -> list[bytes]:
    return [sse_event("alert", alert.to_json(), seq) for alert, seq in rows]


def _parse_last_id(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    # ASCII digits that fit SQLite's integers; anything else is "not a number" (a snapshot).
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


class AlertStream:
    """The events of one connection (an async iterator of encoded SSE chunks).

    Args:
        store: the open alert store (audit trail for resume and catch-up, open alerts for snapshots).
        hub: the live changes.
        last_id: the client's Last-Event-ID, or None.
        snapshot: start from the open alerts when not resuming (else from now on only).
        keepalive_s: seconds of silence before a keep-alive comment.
        replay_max: more alerts changed than this since `last_id`: a snapshot instead.
        retry_ms: the reconnect delay told to the browser.
    """

    def __init__(
        self,
        store: AlertStore,
        hub: Hub,
        *,
        last_id: int | None = None,
        snapshot: bool = True,
        keepalive_s: float = 15.0,
        replay_max: int = 1000,
        retry_ms: int = 3000,
    ) -> None:
        self.store = store
        self.hub = hub
        self.last_id = last_id
        self.snapshot = snapshot
        self.keepalive_s = keepalive_s
        self.replay_max = replay_max
        self.retry_ms = retry_ms
        self.sent = 0  # the largest seq sent (the client's Last-Event-ID if it reconnects now)
        self.catch_ups = 0  # times the hub's queue overflowed and the store filled the gap
        self.release: Callable[[], None] | None = None  # gives back its slot (Slots.take)

    def _replay(self, after: int) -> tuple[list[bytes], int] | None:
        """Events for every alert changed after `after`, and the seq they bring the client to;
        None when that is more than replay_max alerts (the caller sends a snapshot instead).
        Bounded: at most replay_max + 1 alerts are read, and a client more than
        `replay_max × 100` changes behind is not replayed at all."""
        top = self.store.last_seq()  # read first: a change committed meanwhile is in the rows too
        if after > top:
            return None  # ids from another store (deleted, restored from a backup)
        if top - after > self.replay_max * 100:
            return None
        rows = self.store.changed_since(after, limit=self.replay_max + 1)
        if len(rows) > self.replay_max:
            return None
        upto = max([top, *(seq for _, seq in rows)])
        return _alert_events((a, s) for a, s in rows), upto

    def _start(self) -> tuple[list[bytes], int]:
        reason = None
        if self.last_id is not None:
            replay = self._replay(self.last_id)
            if replay is not None:
                events, upto = replay
                ready = {"seq": upto, "mode": "resume", "alerts": len(events)}
                return [*events, sse_event("ready", ready, upto)], upto
            reason = "replay_limit"  # too far behind (or another store): a fresh start instead
        top = self.store.last_seq()
        if not self.snapshot and self.last_id is None:
            return [sse_event("ready", {"seq": top, "mode": "live", "alerts": 0}, top)], top
        alerts = self.store.open_alerts()
        # Most recently raised first, so a client that renders as it reads shows the news first.
        alerts.sort(key=lambda a: a.raised_at, reverse=True)
        total = len(alerts)
        alerts = alerts[: self.replay_max]  # bounded; the snapshot event says how many there are
        head: dict[str, Any] = {"seq": top, "open": total, "sent": len(alerts)}
        head["truncated"] = total > len(alerts)
        if reason is not None:
            head["reason"] = reason
        events = [sse_event("snapshot", head)]
        events += _alert_events((a, None) for a in alerts)
        ready = {
            "seq": top,
            "mode": "snapshot",
            "alerts": len(alerts),
            "truncated": total > len(alerts),
        }
        if reason is not None:
            ready["reason"] = reason
        events.append(sse_event("ready", ready, top))
        return events, top

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # Subscribe before reading the store: a change committed in between reaches us both ways,
        # and the seq check below drops the second copy.
        sub = self.hub.subscribe()
        try:
            yield f"retry: {self.retry_ms}\n\n".encode()
            try:
                # Reading the store is done in a worker thread: a big snapshot or replay must
                # never hold up the event loop the ingest and the rule engine run on.
                events, self.sent = await asyncio.to_thread(self._start)
            except AlertStoreError:
                return  # the store closed under us: the service is stopping
            for chunk in events:
                yield chunk
            lagged = sub.lagged
            while True:
                try:
                    async with asyncio.timeout(self.keepalive_s):
                        alert, change = await sub.get()
                except TimeoutError:
                    yield KEEPALIVE
                    continue
                except StopAsyncIteration:
                    return  # the hub closed: the service is stopping
                if sub.lagged != lagged:
                    # The queue overflowed: some changes between what we sent and this one were
                    # dropped. The audit trail has them.
                    lagged = sub.lagged
                    self.catch_ups += 1
                    try:
                        replay = await asyncio.to_thread(self._replay, self.sent)
                        if replay is None:  # so far behind that a fresh start is cheaper
                            self.last_id = None
                            self.snapshot = True
                            events, self.sent = await asyncio.to_thread(self._start)
                        else:
                            events, self.sent = replay
                    except AlertStoreError:
                        return
                    for chunk in events:
                        yield chunk
                if change.seq <= self.sent:
                    continue  # already sent by the snapshot / resume / catch-up
                self.sent = change.seq
                yield sse_event("alert", alert.to_json(), change.seq)
        finally:
            sub.close()
            if self.release is not None:
                self.release()


class Slots:
    """How many streams are open, against a cap. A slot is given back when its stream ends, or,
    for a stream never started (the client left before the first byte), when it is collected."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0

    def take(self, owner: AlertStream) -> bool:
        if self.open >= self.limit:
            self.refused += 1
            return False
        self.open += 1
        done = [False]

        def give_back() -> None:
            if not done[0]:
                done[0] = True
                self.open -= 1

        weakref.finalize(owner, give_back)
        owner.release = give_back
        return True


STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "server-sent events: `snapshot`, `alert`, `ready`",
        "content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
    },
    401: {"model": ErrorBody, "description": "a token is required to read"},
    429: {"model": ErrorBody, "description": "too many live streams (alerts.max_stream_clients)"},
    503: {"model": ErrorBody, "description": "the alert store is not open"},
}


def build_stream_router(
    store: AlertStore,
    hub: Hub,
    *,
    keepalive_s: float = 15.0,
    replay_max: int = 1000,
    retry_ms: int = 3000,
    enabled: bool = True,
    max_clients: int = 100,
) -> APIRouter:
    """`GET /api/alerts/stream` over `store` and `hub` (Alerting builds it: `alerting.stream_router`).
    At most `max_clients` streams at once; one more is answered 429 with Retry-After."""
    router = APIRouter(prefix="/api/alerts", tags=["alerts"])
    slots = Slots(max_clients)
    router.stream_slots = slots  # type: ignore[attr-defined]

    @router.get("/stream", response_class=StreamingResponse, responses=STREAM_RESPONSES)
    async def stream(
        last_event_id: Annotated[str | None, Query()] = None,
        snapshot: bool = True,
        last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> Response:
        if not enabled:
            raise HTTPException(503, "alerts are disabled (alerts.enabled: false)")
        if not store.is_open or hub.closed:
            raise HTTPException(503, "the alert store is not open")
        # The header (a browser reconnecting) wins over the query (the page's first connection).
        last_id = _parse_last_id(last_event_id_header)
        if last_id is None:
            last_id = _parse_last_id(last_event_id)
        events = AlertStream(
            store,
            hub,
            last_id=last_id,
            snapshot=snapshot,
            keepalive_s=keepalive_s,
            replay_max=replay_max,
            retry_ms=retry_ms,
        )
        if not slots.take(events):
            return JSONResponse(
                {
                    "detail": f"too many live alert streams ({slots.limit} open, "
                    "alerts.max_stream_clients); try again later"
                },
                status_code=429,
                headers={"Retry-After": "10"},
            )
        return StreamingResponse(
            aiter(events),
            media_type=MEDIA_TYPE,
            headers={
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # nginx in front: pass each event on at once
            },
        )

    return router
