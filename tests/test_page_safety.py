"""The control-centre page and the API documentation in real headless Chromium: registry and device
text full of markup is shown as text, the API documentation works with no internet under a strict
CSP, and a page opened with ?access_token= reads with it when reads need a token."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests import test_page as page_tests
from tests.liveapp import LiveApp
from tests.publish import Publisher
from tests.servers import InfluxDB, Mosquitto
from tests.service import ServiceProcess
from tests.test_page import expect, row, sync_api

# The Chromium fixtures of the page tests (one browser per module).
browser = page_tests.browser
page = page_tests.page

pytestmark = pytest.mark.browser

MARKUP = '<img src=x onerror="window.__xss=1">'
SCRIPT = "<script>window.__xss=2</script>"


@pytest.mark.integration
def test_markup_in_registry_text_and_messages_is_shown_as_text(
    tmp_path: Path, mosquitto: Mosquitto, influxdb: InfluxDB, page: sync_api.Page
) -> None:
    registry = tmp_path / "registry.csv"
    registry.write_text(
        "device_id,kind,road,road_class,cabinet,rated_w,point,report_interval_s\n"
        f'L1,lamp,"{MARKUP.replace(chr(34), chr(34) * 2)}",main,C1,150,,300\n'
        f"W1,waterlevel,{SCRIPT},main,,,{SCRIPT},60\n",
        encoding="utf-8",
    )
    svc = ServiceProcess(
        tmp_path / "data",
        {
            "STREETWATCH_MQTT__PORT": str(mosquitto.port),
            "STREETWATCH_INFLUXDB__URL": influxdb.url,
            "STREETWATCH_REGISTRY__PATH": str(registry),
            # The rule's own message template carries markup too.
            "STREETWATCH_RULES__WATER_LEVEL__MESSAGE": "<b>水深</b> {value} cm " + MARKUP,
        },
    ).start()
    pub = Publisher(mosquitto.port)
    try:
        now = time.time_ns() // 1_000_000
        pub.send(
            "city/jining/lamp/L1/event", {"ts": now, "event": "lampFailure", "state": "raised"}
        )
        pub.send("city/jining/waterlevel/W1/telemetry", {"ts": now, "depth_cm": 30.0})
        page.goto(f"http://127.0.0.1:{svc.http_port}/")
        rows = page.locator("#rows tr")
        expect(rows).to_have_count(2, timeout=15000)
        expect(page.locator("#rows")).to_contain_text(MARKUP)  # the markup itself, as text
        expect(page.locator("#rows")).to_contain_text(SCRIPT)
        expect(page.locator("#rows")).to_contain_text("<b>水深</b> 30 cm")
        assert page.locator("#rows img, #rows script, #rows b:text('水深')").count() == 0
        assert page.evaluate("window.__xss") is None
        page.goto("about:blank")  # leave before the service stops (its stream would break)
    finally:
        pub.close()
        svc.stop()


def test_the_api_documentation_works_offline_under_a_strict_csp(
    tmp_path: Path, page: sync_api.Page
) -> None:
    elsewhere: list[str] = []
    with LiveApp(tmp_path / "d") as app:
        page.on(
            "request",
            lambda r: None if r.url.startswith(app.url) else elsewhere.append(r.url),
        )
        response = page.goto(f"{app.url}/api/docs")
        assert response is not None and response.status == 200
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "http" not in csp
        expect(page.locator(".opblock").first).to_be_visible(timeout=15000)
        expect(page.locator("#swagger-ui")).to_contain_text("/api/alerts")
        ack = page.locator(".opblock", has_text="/ack").first
        ack.locator(".opblock-summary").click()  # open one: its body and its answers
        expect(ack.locator(".opblock-body")).to_contain_text("409")
        expect(ack.locator(".opblock-body")).to_contain_text("condition_still_present")
    assert elsewhere == []  # nothing from a CDN or anywhere else


def test_a_page_opened_with_an_access_token_reads_with_it(
    tmp_path: Path, page: sync_api.Page
) -> None:
    http = {"read_token_required": True, "tokens": {"大屏": "wall-token"}}
    with LiveApp(tmp_path / "d", token=None, http=http) as app:
        first = app.raise_alert(rule="water_level", device="WL-017", severity="major", level=2)
        page.goto(f"{app.url}/?access_token=wall-token")
        expect(row(page, first.id)).to_be_visible()
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        assert "access_token" not in page.url  # dropped from the address bar
        second = app.raise_alert(rule="battery_low", device="WL-022", severity="warning")
        expect(row(page, second.id)).to_be_visible()  # the live stream reads with it too
