"""The one-tap ack link from a notice, in real headless Chromium on a phone-sized viewport."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from alerts.model import wall_ms
from notify import links
from tests.liveapp import LiveApp
from tests.notify_support import REGISTRY, json_receiver
from tests.servers import free_port

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
SECRET = "link-secret-for-tests"
EVIL = "<img src=x onerror=alert(1)>路"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def phone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sync_api.BrowserContext]:
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    assert executable, "Debian chromium is not installed (bash .ci/run installs it)"
    profile = tmp_path_factory.mktemp("chromium-phone")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=executable,
            headless=True,
            args=ARGS,
            viewport={"width": 390, "height": 844},
            is_mobile=True,
            has_touch=True,
            locale="zh-CN",
            timezone_id="Asia/Shanghai",
        )
        context.set_default_timeout(8000)
        yield context
        context.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveApp]:
    port = free_port()
    registry = REGISTRY + f"L-EVIL,lamp,{EVIL},main,C9,150,,35.1,116.1,300\n"
    with json_receiver() as rx:
        notify = {
            "base_url": f"http://127.0.0.1:{port}",
            "link_secret": SECRET,
            "crews": [
                {"name": "洸河路维修班", "urls": [rx.url("a")]},
                {"name": "红星路维修班", "urls": [rx.url("b")], "roads": ["红星路"]},
            ],
        }
        app = LiveApp(
            tmp_path / "data", port=port, overrides={"notify": notify}, registry_csv=registry
        )
        with app:
            app.rx = rx  # type: ignore[attr-defined]
            yield app


def link(live: LiveApp, alert_id: str, crew: str, expires: int | None = None) -> str:
    expires = expires if expires is not None else int(time.time()) + 3600
    return links.link(live.url, SECRET, alert_id, crew, expires)


def test_the_link_in_the_notice_opens_a_phone_page_and_acks_as_the_crew(
    live: LiveApp, phone: sync_api.BrowserContext
) -> None:
    alert = live.raise_alert(
        rule="lamp_fault", device="L-EVIL", kind="lamp", at=wall_ms(), message="<b>bad</b>"
    )
    rx = live.rx  # type: ignore[attr-defined]
    rx.wait(lambda got: len(got) == 1)
    url = next(
        line.split("：", 1)[1]
        for line in rx.received[0]["message"].splitlines()
        if line.startswith("一键确认")
    )
    assert url.startswith(f"{live.url}/a/{alert.id}?c=")
    page = phone.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    # What and where, as text: the markup in the road name and the message is shown, never run.
    assert EVIL in page.locator("h1").inner_text()
    assert "<b>bad</b>" in page.locator("dl").inner_text()
    assert page.locator("img").count() == 0 and page.locator("b").count() == 0
    assert "35.10000, 116.10000" in page.locator("dl").inner_text()
    assert page.locator("a", has_text="地图").get_attribute("href", timeout=1000)
    # The button fits the phone's width.
    box = page.locator("#ack").bounding_box()
    assert box is not None and box["width"] <= 390
    page.fill("#note", "马上到")
    page.click("#ack")
    assert "已确认" in page.locator("#done").inner_text()
    trail = live.store.history(alert.id)
    acked = [c for c in trail if c.action == "acknowledged"]
    assert len(acked) == 1 and acked[0].who == "洸河路维修班" and acked[0].note == "马上到"
    assert "洸河路维修班" in page.locator("ol").inner_text()
    # Opening the link again shows the state; tapping again does not ack twice.
    page.goto(url)
    assert "已确认" in page.locator("#state").inner_text()
    assert dialogs == []
    page.close()


def test_altered_expired_and_foreign_links_are_refused(
    live: LiveApp, phone: sync_api.BrowserContext
) -> None:
    alert = live.raise_alert(rule="lamp_dark", device="L-GHL-014", kind="lamp", at=wall_ms())
    other = live.raise_alert(rule="lamp_dark", device="L-GHL-015", kind="lamp", at=wall_ms())
    good = link(live, alert.id, "洸河路维修班")
    expiry, _mac = good.split("&t=")[1].split(".", 1)
    altered_mac = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    longer = good.replace(f"&t={expiry}.", f"&t={int(expiry) + 86400}.")
    cases = {
        "altered signature": (altered_mac, 403),
        "altered expiry": (longer, 403),
        "another alert": (good.replace(f"/a/{alert.id}", f"/a/{other.id}"), 403),
        "another crew": (
            good.replace("c=", "c=%E7%BA%A2%E6%98%9F%E8%B7%AF%E7%BB%B4%E4%BF%AE%E7%8F%AD&x="),
            403,
        ),
        "expired": (link(live, alert.id, "洸河路维修班", expires=int(time.time()) - 1), 410),
        "no token": (f"{live.url}/a/{alert.id}", 403),
        "unknown alert": (link(live, "f" * 32, "洸河路维修班"), 404),
        "a crew no longer configured": (link(live, alert.id, "gone"), 403),
    }
    page = phone.new_page()
    for name, (url, status) in cases.items():
        response = page.goto(url)
        assert response is not None and response.status == status, name
        assert "链接无效" in page.locator("h1").inner_text(), name
        assert page.locator("#ack").count() == 0, name
        # Posting to it acts on nothing.
        posted = httpx.post(
            url, content="note=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert posted.status_code == status, name
    page.close()
    assert all(c.action != "acknowledged" for c in live.store.history(alert.id))
    assert all(c.action != "acknowledged" for c in live.store.history(other.id))


def test_links_are_off_without_a_secret(tmp_path: Path) -> None:
    with LiveApp(tmp_path / "data", registry_csv=REGISTRY) as app:
        alert = app.raise_alert(rule="lamp_dark", device="L-GHL-014", kind="lamp", at=wall_ms())
        forged = links.link(app.url, "guess", alert.id, "x", int(time.time()) + 60)
        r = httpx.get(forged)
        assert r.status_code == 404 and "未启用" in r.text
