"""The alert API under load and misuse: every list filter uses an index, the stream's catch-up is
bounded and says so, it reads the store off the event loop, and the number of streams is capped."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from alerts.outlets import Hub
from alerts.store import AlertStore
from alerts.stream import AlertStream
from alerts.testing import T0, Clock, cond
from tests.liveapp import LiveApp
from tests.test_alerts_stream import Events, _parse


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    s = AlertStore(tmp_path / "alerts.sqlite", clock=Clock(T0 + 10_000)).open()
    yield s
    s.shutdown()


@pytest.mark.parametrize(
    "where",
    [
        "state IN ('active','cleared')",
        "rule = 'water_level'",
        "device = 'wl-1'",
        "severity = 'major'",
        "updated_at >= 5",
        "overdue = 1",
    ],
)
def test_every_list_filter_uses_an_index(store: AlertStore, where: str) -> None:
    plan = store._conn().execute(
        f"EXPLAIN QUERY PLAN SELECT data FROM alerts WHERE {where} ORDER BY updated_at DESC, id"
        " LIMIT 100"
    )
    details = " | ".join(row[-1] for row in plan.fetchall())
    assert "USING INDEX" in details or "USING COVERING INDEX" in details, details
    assert "SCAN alerts\b" not in details


async def test_a_snapshot_is_bounded_and_says_how_many_are_open(store: AlertStore) -> None:
    for i in range(5):
        store.on_condition(cond(device=f"wl-{i}", at=T0 + i))
    chunks = [c async for c in _until_ready(AlertStream(store, Hub(), replay_max=3))]
    head = _parse(chunks[1])
    assert head["event"] == "snapshot"
    assert head["data"] == {"seq": 5, "open": 5, "sent": 3, "truncated": True}
    assert [_parse(c)["event"] for c in chunks[2:]] == ["alert"] * 3 + ["ready"]
    assert _parse(chunks[-1])["data"]["truncated"] is True


async def test_a_resume_past_the_replay_limit_says_so(store: AlertStore) -> None:
    for i in range(5):
        store.on_condition(cond(device=f"wl-{i}", at=T0 + i))
    stream = AlertStream(store, Hub(), last_id=0, replay_max=3)
    chunks = [c async for c in _until_ready(stream)]
    head = _parse(chunks[1])
    assert head["event"] == "snapshot" and head["data"]["reason"] == "replay_limit"
    assert _parse(chunks[-1])["data"]["reason"] == "replay_limit"
    # Within the limit: a plain resume.
    within = [c async for c in _until_ready(AlertStream(store, Hub(), last_id=3, replay_max=3))]
    assert _parse(within[-1])["data"]["mode"] == "resume"


async def test_the_stream_reads_the_store_off_the_event_loop(store: AlertStore) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []
    original = store.open_alerts

    def spy() -> list:  # type: ignore[type-arg]
        seen.append(threading.get_ident())
        return original()

    store.open_alerts = spy  # type: ignore[method-assign]
    store.on_condition(cond(device="wl-1", at=T0))
    [c async for c in _until_ready(AlertStream(store, Hub()))]
    assert seen and loop_thread not in seen


async def _until_ready(stream: AlertStream):  # type: ignore[no-untyped-def]
    it = aiter(stream)
    try:
        while True:
            chunk = await asyncio.wait_for(anext(it), 5)
            yield chunk
            if chunk.startswith(b"event: ready"):
                return
    finally:
        await it.aclose()  # type: ignore[attr-defined]


def test_streams_are_capped_with_a_clear_429(tmp_path: Path) -> None:
    with LiveApp(tmp_path / "d", alerts={"max_stream_clients": 2}) as app:
        url = f"{app.url}/api/alerts/stream"
        with (
            httpx.Client(timeout=5) as one,
            httpx.Client(timeout=5) as two,
            one.stream("GET", url) as a,
            two.stream("GET", url) as b,
        ):
            ea, eb = Events(a), Events(b)  # kept: dropping one closes its response
            ea.take(2)
            eb.take(2)
            refused = httpx.get(url, timeout=5)
            assert refused.status_code == 429
            assert "max_stream_clients" in refused.json()["detail"]
            assert refused.headers["retry-after"] == "10"
        # Both gone: a slot is free again (the server notices the disconnect).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with httpx.stream("GET", url, timeout=5) as r:
                if r.status_code == 200:
                    break
            time.sleep(0.2)
        assert r.status_code == 200


def test_retention_purges_old_closed_alerts_and_their_trail_only(store: AlertStore) -> None:
    clock = store.clock
    assert isinstance(clock, Clock)
    for i in range(7):
        store.on_condition(cond(device=f"wl-{i}", at=T0 + i))
    ids = {a.device: a.id for a in store.open_alerts()}
    for device in ("wl-0", "wl-1", "wl-2"):
        store.on_condition(cond(device=device, at=T0 + 100, active=False))
        store.close(ids[device], "crew")
    clock.advance(10 * 86400)
    store.on_condition(cond(device="wl-3", at=T0 + 200, active=False))
    store.close(ids["wl-3"], "crew")  # closed recently: kept
    store.on_condition(cond(device="wl-4", at=T0 + 300, active=False))  # cleared, not closed
    cutoff = clock.now - 5 * 86_400_000
    assert store.purge_closed(cutoff, batch=2) == 3
    assert store.purge_closed(cutoff) == 0
    for device in ("wl-0", "wl-1", "wl-2"):
        assert store.get(ids[device]) is None
        assert store._conn().execute(
            "SELECT count(*) FROM audit WHERE alert_id = ?", (ids[device],)
        ).fetchone() == (0,)
    for device in ("wl-3", "wl-4", "wl-5", "wl-6"):
        assert store.get(ids[device]) is not None and store.history(ids[device])


async def test_the_retention_job_runs_at_start(tmp_path: Path) -> None:
    from alerts.service import Alerting
    from devices.registry import Registry
    from streetwatch.config import load_settings

    clock = Clock(T0)
    settings = load_settings(
        overrides={
            "storage": {"data_dir": str(tmp_path)},
            "alerts": {"mqtt": {"enabled": False}, "retention_days": 30},
        },
        env={},
    )
    alerting = Alerting(settings, Registry([]), clock=clock)
    await alerting.start()
    alerting.store.on_condition(cond(device="wl-1", at=T0))
    alerting.store.on_condition(cond(device="wl-1", at=T0 + 1, active=False))
    alert_id = alerting.store.open_alerts()[0].id
    alerting.store.close(alert_id, "crew")
    await alerting.aclose()
    clock.advance(31 * 86400)
    again = Alerting(settings, Registry([]), clock=clock)
    await again.start()
    try:
        deadline = time.monotonic() + 10
        while again.purged == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert again.purged == 1 and again.store.get(alert_id) is None
        jobs = {job.id: str(job.trigger) for job in again.scheduler.get_jobs()}  # type: ignore[union-attr]
        assert "cron" in jobs["alerts-retention"]
    finally:
        await again.aclose()


def test_big_reads_never_wait_for_the_store_lock(store: AlertStore) -> None:
    """Lists, histories and the stream's catch-up read on their own connection: a writer holding
    the store's lock (the rule engine committing a change) does not hold them up, and they do not
    hold it up either."""
    for i in range(5):
        store.on_condition(cond(device=f"wl-{i}", at=T0 + i))
    alert_id = store.open_alerts()[0].id
    held = threading.Event()
    release = threading.Event()

    def writer() -> None:
        with store._lock:
            held.set()
            release.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert held.wait(5)
        done: list[object] = []
        reader = threading.Thread(
            target=lambda: done.extend(
                [store.list(limit=10), store.history(alert_id), store.changed_since(0, limit=3)]
            )
        )
        reader.start()
        reader.join(5)
        assert not reader.is_alive(), "a read waited for the writer's lock"
        assert len(done[0]) == 5 and len(done[2]) == 3  # type: ignore[arg-type]
    finally:
        release.set()
        t.join()
