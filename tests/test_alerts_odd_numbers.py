"""Numbers an HTTP client sends in odd forms (too big for SQLite, too long for int(), digits that
are not ASCII) get a 4xx or are read as "not a number" by the alert API and its live stream, never
a 500."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from alerts.model import wall_ms
from tests.liveapp import LiveApp

HUGE = "9" * 23
ODD = [HUGE, "-" + HUGE, "9" * 5000, "²", "１２"]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    with LiveApp(tmp_path_factory.mktemp("odd") / "data") as app:
        app.raise_alert(rule="lamp_dark", device="LD-0231", kind="lamp", at=wall_ms())
        yield app


@pytest.mark.parametrize("since", ODD)
def test_since_out_of_range_is_a_422(live: LiveApp, since: str) -> None:
    r = httpx.get(f"{live.url}/api/alerts", params={"since": since})
    assert r.status_code == 422, r.text[:200]
    assert 0 < len(r.json()["detail"]) < 200


def first_event(live: LiveApp, **kw: object) -> tuple[int, bytes]:
    with httpx.stream("GET", f"{live.url}/api/alerts/stream", timeout=10, **kw) as r:  # type: ignore[arg-type]
        body = b""
        for chunk in r.iter_bytes():
            body += chunk
            if b"event: ready" in body:
                break
        return r.status_code, body


@pytest.mark.parametrize("last_id", ODD)
def test_an_odd_last_event_id_starts_from_a_snapshot(live: LiveApp, last_id: str) -> None:
    status, body = first_event(live, params={"last_event_id": last_id})
    assert status == 200 and b"event: snapshot" in body
    if last_id.isascii():  # a header carries latin-1 only
        status, body = first_event(live, headers={"Last-Event-ID": last_id})
        assert status == 200 and b"event: snapshot" in body
