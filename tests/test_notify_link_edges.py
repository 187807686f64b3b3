"""One-tap ack links at their edges, over real HTTP to the app as the service wires it: links on a
service whose reads need a token, odd crew names, odd `t` values (never a 500)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from alerts.model import wall_ms
from notify import links
from tests.liveapp import LiveApp
from tests.notify_support import REGISTRY

SECRET = "link-secret-for-tests"
ODD_CREW = "A&B 班/1#+%?=维修"


def app(tmp_path: Path, **http: object) -> LiveApp:
    notify = {
        "base_url": "http://127.0.0.1:1",  # not used: links are built against the live URL
        "link_secret": SECRET,
        "crews": [{"name": ODD_CREW, "urls": ["json://127.0.0.1:9/x"]}],
    }
    return LiveApp(
        tmp_path / "data",
        overrides={"notify": notify},
        http=dict(http),
        registry_csv=REGISTRY,
    )


def link(live: LiveApp, alert_id: str, crew: str = ODD_CREW) -> str:
    return links.link(live.url, SECRET, alert_id, crew, int(time.time()) + 3600)


def test_the_ack_link_works_when_reads_need_a_token(tmp_path: Path) -> None:
    # The link is the crew's credential: a phone has no bearer token to add.
    with app(tmp_path, read_token_required=True) as live:
        alert = live.raise_alert(rule="lamp_dark", device="L-GHL-014", kind="lamp", at=wall_ms())
        url = link(live, alert.id)
        page = httpx.get(url)
        assert page.status_code == 200, page.text
        assert 'id="ack"' in page.text
        posted = httpx.post(
            url,
            content="note=%E9%A9%AC%E4%B8%8A%E5%88%B0",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert posted.status_code == 200, posted.text
        acked = [c for c in live.store.history(alert.id) if c.action == "acknowledged"]
        assert [(c.who, c.note) for c in acked] == [(ODD_CREW, "马上到")]
        # Everything else still needs the token, and a link opens nothing but its own page.
        assert httpx.get(f"{live.url}/api/alerts").status_code == 401
        assert httpx.get(f"{live.url}/api/alerts/{alert.id}?c=x&t=1.x").status_code == 401
        assert httpx.get(f"{live.url}/a/{alert.id}").status_code == 403


@pytest.mark.parametrize(
    "token", ["².abc", "１２.abc", "٣٤٥.abc", "9" * 13 + ".abc", ".", "", "1.", "x" * 5000]
)
def test_odd_link_tokens_are_refused_never_a_500(tmp_path: Path, token: str) -> None:
    with app(tmp_path) as live:
        alert = live.raise_alert(rule="lamp_dark", device="L-GHL-014", kind="lamp", at=wall_ms())
        url = f"{live.url}/a/{alert.id}"
        for r in (
            httpx.get(url, params={"c": ODD_CREW, "t": token}),
            httpx.post(url, params={"c": ODD_CREW, "t": token}, content="note=x"),
        ):
            assert r.status_code == 403, (token, r.status_code, r.text[:200])
        assert all(c.action != "acknowledged" for c in live.store.history(alert.id))
