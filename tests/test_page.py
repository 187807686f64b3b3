"""The control-centre page (`GET /`) in real headless Chromium (Debian's, driven by Playwright through
`executable_path`; no browser is ever downloaded), against the real app and its SSE stream."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.liveapp import LiveApp

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
TOKEN = "crew-token"
ARGS = [
    "--headless",
    "--no-sandbox",  # chromium runs as root here
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Missing pieces fail the run (never skip): .ci/run installs Debian's chromium and playwright.
import playwright.sync_api as sync_api  # noqa: E402

expect = sync_api.expect


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sync_api.BrowserContext]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("Debian chromium is not installed: run .ci/run (it installs it)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            headless=True,
            args=ARGS,
            viewport={"width": 1600, "height": 900},
            locale="zh-CN",
            timezone_id="Asia/Shanghai",
        )
        context.set_default_timeout(5000)
        yield context
        context.close()


@pytest.fixture
def page(browser: sync_api.BrowserContext) -> Iterator[sync_api.Page]:
    page = browser.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    expected = re.compile(r"status of (401|409) ")  # the wrong token and the stale action

    def on_console(msg: sync_api.ConsoleMessage) -> None:
        if msg.type == "error" and not expected.search(msg.text):
            problems.append(f"console {msg.type}: {msg.text}")

    page.on("console", on_console)
    yield page
    page.close()
    assert problems == []  # no script errors, no CSP violations, nothing fetched from elsewhere


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def row(page: sync_api.Page, alert_id: str) -> sync_api.Locator:
    return page.locator(f'#rows tr[data-id="{alert_id}"]')


def test_the_page_is_one_self_contained_file(tmp_path: Path) -> None:
    with LiveApp(tmp_path / "data") as app:
        r = httpx.get(f"{app.url}/", timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert "告警" in html and "<script>" in html
    # Nothing from a CDN or anywhere else: no external src/href, no imports.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "import(" not in html
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    # Scripts by hash only: its inline script, and the same-origin files it pins by `integrity`.
    assert re.search(r"script-src( 'sha256-[A-Za-z0-9+/=]+')+$", csp.split(";")[1].strip())
    assert "'self'" not in csp.split(";")[1]


def test_live_table_actions_and_errors(tmp_path: Path, page: sync_api.Page) -> None:
    with LiveApp(tmp_path / "data", token=TOKEN) as app:
        t = now_ms() - 25 * 60_000
        flooded = app.raise_alert(
            rule="water_level",
            device="WL-017",
            severity="critical",
            level=3,
            value=32.5,
            message="积水 32.5 cm (3级)",
            at=t,
        )
        app.raise_alert(
            rule="lamp_dark",
            device="LD-0231",
            kind="lamp",
            severity="minor",
            level=None,
            value=0.0,
            message="lamp off after sunset",
            at=t + 60_000,
        )
        page.goto(app.url + "/")

        # The open alerts, from GET /api/alerts?state=open, then the live feed.
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        flooded_row = row(page, flooded.id)
        expect(flooded_row).to_be_visible()
        expect(flooded_row.locator("td.road")).to_have_text("运河路")
        expect(flooded_row.locator("td.rule")).to_contain_text("积水超限")
        expect(flooded_row.locator("td.level")).to_contain_text("3级")
        expect(flooded_row.locator("td.state")).to_contain_text("未处理")
        expect(flooded_row).to_have_class(re.compile(r"\bsev-critical\b"))
        expect(page.locator("#n-critical")).to_have_text("1")
        expect(page.locator("#n-total")).to_have_text("2")

        # A new alert appears without a reload (SSE).
        rising = app.raise_alert(
            rule="water_rising_fast",
            device="WL-022",
            severity="major",
            level=None,
            value=18.0,
            message="水位上涨 18 cm/h",
            at=now_ms() - 120_000,
        )
        expect(row(page, rising.id)).to_be_visible()
        expect(row(page, rising.id).locator("td.road")).to_have_text("建设路")
        expect(page.locator("#n-major")).to_have_text("1")
        expect(page.locator("#n-total")).to_have_text("3")

        # Filters: by severity, by rule, by state.
        page.select_option("#f-severity", "critical")
        expect(page.locator("#rows tr")).to_have_count(1)
        page.select_option("#f-severity", "")
        page.select_option("#f-rule", "lamp_dark")
        expect(page.locator("#rows tr")).to_have_count(1)
        page.select_option("#f-rule", "")
        expect(page.locator("#rows tr")).to_have_count(3)

        # A wrong token: the server's 401 message is shown, nothing changes.
        page.fill("#token", "not-the-token")
        page.click("#token-save")
        expect(page.locator("#token-set")).to_be_visible()
        flooded_row.locator('button[data-action="ack"]').click()
        expect(page.locator("#notice")).to_have_class("error")
        expect(page.locator("#notice")).to_contain_text("401")
        expect(page.locator("#notice")).to_contain_text("a valid bearer token is required")
        expect(flooded_row.locator("td.state")).to_contain_text("未处理")

        # The right token (kept in sessionStorage for the tab): ack changes the row's state.
        page.click("#token-clear")
        page.fill("#token", TOKEN)
        page.press("#token", "Enter")
        assert page.evaluate("sessionStorage.getItem('streetwatch.token')") == TOKEN
        page.fill("#who", "值班员 王")
        page.locator("#who").dispatch_event("change")
        flooded_row.locator('button[data-action="ack"]').click()
        expect(flooded_row.locator("td.state")).to_contain_text("已确认")
        expect(page.locator("#notice")).to_have_class("ok")
        # The token names who did it; the typed name is kept beside it as a display note.
        assert app.store.get(flooded.id).acknowledged_by == "operator"  # type: ignore[union-attr]
        assert app.store.history(flooded.id)[-1].detail == {"shown_as": "值班员 王"}

        # A change made elsewhere arrives too (another operator acks the lamp alert).
        lamp = app.store.find_open("lamp_dark", "LD-0231")
        assert lamp is not None
        app.call(lambda: app.store.ack(lamp.id, "another desk"))
        expect(row(page, lamp.id).locator("td.state")).to_contain_text("已确认")
        # ... so acking it here is refused with the server's 409 message.
        stale = row(page, lamp.id).locator('button[data-action="ack"]')
        expect(stale).to_be_disabled()

        # Dispatch asks for the crew.
        flooded_row.locator('button[data-action="dispatch"]').click()
        expect(page.locator("#dispatch-dialog")).to_be_visible()
        page.fill("#dispatch-assignee", "排水二队")
        page.click("#dispatch-ok")
        expect(flooded_row.locator("td.state")).to_contain_text("已派单")
        expect(flooded_row.locator("td.state")).to_contain_text("排水二队")

        page.screenshot(path=str(tmp_path / "control-centre.png"))

        # A 409: the alert was resolved elsewhere while this page still offered "resolve".
        app.call(lambda: app.store.resolve(rising.id, "another desk", "checked", force=True))
        expect(row(page, rising.id).locator("td.state")).to_contain_text("条件仍存在")
        expect(row(page, rising.id).locator("td.state")).to_contain_text("已恢复")
        page.evaluate(
            """id => document.querySelector(`#rows tr[data-id="${id}"] button[data-action="resolve"]`)
                .removeAttribute('disabled')""",
            rising.id,
        )
        row(page, rising.id).locator('button[data-action="resolve"]').click()
        expect(page.locator("#notice")).to_contain_text("409")
        expect(page.locator("#notice")).to_contain_text(
            "only an active, acknowledged or dispatched"
        )

        # Resolve while the water is still there: refused (409) until a note forces it; the row
        # then says the condition is still present.
        page.once("dialog", lambda d: d.dismiss())
        flooded_row.locator('button[data-action="resolve"]').click()
        expect(page.locator("#notice")).to_contain_text("409")
        expect(page.locator("#notice")).to_contain_text("still present")
        expect(flooded_row.locator("td.state")).to_contain_text("已派单")
        page.once("dialog", lambda d: d.accept("传感器被淤泥覆盖"))
        flooded_row.locator('button[data-action="resolve"]').click()
        expect(flooded_row.locator("td.state")).to_contain_text("已恢复")
        expect(flooded_row.locator("td.state")).to_contain_text("条件仍存在")
        assert app.store.history(flooded.id)[-1].note == "传感器被淤泥覆盖"
        flooded_row.locator('button[data-action="close"]').click()
        expect(flooded_row).to_have_count(0)
        expect(page.locator("#n-critical")).to_have_text("0")
        expect(page.locator("#n-total")).to_have_text("2")
        # A reload shows the same (closed stays gone).
        page.reload()
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        expect(page.locator("#rows tr")).to_have_count(2)


def test_the_page_resumes_after_the_service_restarts(tmp_path: Path, page: sync_api.Page) -> None:
    data = tmp_path / "data"
    app = LiveApp(data, token=TOKEN).start()
    try:
        first = app.raise_alert(rule="water_level", device="WL-017", severity="major", level=2)
        page.goto(app.url + "/")
        expect(row(page, first.id)).to_be_visible()
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        port = app.port
        app.stop()
        expect(page.locator("#conn")).not_to_have_attribute("data-state", "live")
        # While the page is cut off: the alert is acknowledged and another one raised.
        app = LiveApp(data, token=TOKEN, port=port).start()
        app.call(lambda: app.store.ack(first.id, "night shift"))
        second = app.raise_alert(rule="battery_low", device="WL-022", severity="warning")
        expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=15000)
        expect(row(page, first.id).locator("td.state")).to_contain_text("已确认")
        expect(row(page, second.id)).to_be_visible()
    finally:
        app.stop()
