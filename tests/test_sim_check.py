"""`--check`: expected vs raised alerts, against a fake of the service's HTTP API (contract §3)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from simulator.check import compare, report_lines, run_check
from simulator.errors import CheckError
from simulator.scenario import ExpectedAlert, load_scenario
from streetwatch.cli import main
from tests.servers import Mosquitto

EXPECTED = [ExpectedAlert("lamp_fault", "L-1"), ExpectedAlert("cabinet_outage", "C-1")]
SCOPE = {"L-1", "L-2", "C-1"}


def _alert(rule: str, device: str, state: str = "active") -> dict[str, Any]:
    # Raised in the future of any run that checks it: `--check` counts only its own run's alerts.
    return {
        "id": f"{rule}:{device}",
        "rule": rule,
        "device": device,
        "kind": "lamp",
        "severity": "major",
        "state": state,
        "message": "",
        "raised_at": "2099-07-15T22:10:00+08:00",
        "updated_at": "2099-07-15T22:10:00+08:00",
    }


def test_compare_matches_any_state_and_ignores_other_devices() -> None:
    alerts = [
        _alert("lamp_fault", "L-1", "cleared"),
        _alert("cabinet_outage", "C-1"),
        _alert("water_level", "W-elsewhere"),  # not the scenario's device
    ]
    result = compare(EXPECTED, alerts, SCOPE)
    assert result.ok
    assert result.missing == [] and result.unexpected == []
    assert report_lines(result)[-1].startswith("PASS: 2/2")


def test_compare_reports_missing_and_unexpected() -> None:
    result = compare(EXPECTED, [_alert("lamp_fault", "L-1"), _alert("lamp_dark", "L-2")], SCOPE)
    assert not result.ok
    assert result.missing == [("cabinet_outage", "C-1")]
    assert result.unexpected == [("lamp_dark", "L-2")]
    text = "\n".join(report_lines(result))
    assert "FAIL: 1/2 expected alerts raised, 1 missing, 1 unexpected" in text
    assert "!!cabinet_outage" in text.replace(" ", "")


async def test_run_check_polls_until_alerts_arrive() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        items = [_alert("lamp_fault", "L-1")]
        if len(calls) >= 3:  # the rule engine catches up
            items.append(_alert("cabinet_outage", "C-1"))
        return httpx.Response(200, json={"items": items})

    result = await run_check(
        "http://svc:8080/", EXPECTED, SCOPE, timeout_s=5, poll_s=0.01,
        transport=httpx.MockTransport(handler),
    )  # fmt: skip
    assert result.ok
    assert len(calls) == 3
    assert str(calls[0].url) == "http://svc:8080/api/alerts?limit=1000"


async def test_run_check_gives_up_after_timeout() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"items": []}))
    result = await run_check(
        "http://svc", EXPECTED, SCOPE, timeout_s=0.05, poll_s=0.01, transport=transport
    )
    assert result.missing == sorted((e.rule, e.device) for e in EXPECTED)


@pytest.mark.parametrize(
    "response",
    [httpx.Response(500), httpx.Response(200, text="<html>"), httpx.Response(200, json={})],
)
async def test_run_check_api_errors(response: httpx.Response) -> None:
    with pytest.raises(CheckError, match="/api/alerts"):
        await run_check(
            "http://svc",
            EXPECTED,
            SCOPE,
            timeout_s=0,
            transport=httpx.MockTransport(lambda r: response),
        )


# ---- the whole `simulate --scenario … --check` against a real broker and a fake service --------


class _FakeService:
    """A stand-in for the service's HTTP API: serves whatever alerts the test puts in `items`."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path.startswith("/api/alerts/") and path.endswith("/history"):
                    # The service raised each alert just now (wall time): this run's.
                    now = datetime.now(UTC).isoformat()
                    items = [{"action": "raised", "at": now}]
                elif path == "/api/alerts":
                    items = outer.items
                else:
                    self.send_error(404)
                    return
                body = json.dumps({"items": items}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_service() -> Iterator[_FakeService]:
    service = _FakeService()
    yield service
    service.close()


SMALL = """
name: small
start: "2026-07-15T18:00+08:00"
duration: 1h
seed: 3
fleet: {lamps: 30, waterlevel: 2}
faults:
  - {kind: cabinet_out, target: C-GHL-01, at: 10m, for: 20m, expect: [cabinet_outage]}
  - {kind: stuck_sensor, target: W-JAQ-01, at: 0s, expect: [sensor_stuck]}
expect:
  - {rule: battery_low, device: W-TBL-02}
"""


@pytest.mark.integration
def test_simulate_scenario_check_cli(
    tmp_path: Path,
    mosquitto: Mosquitto,
    fake_service: _FakeService,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL)
    scenario = load_scenario(str(path))
    argv = [
        "simulate", "--scenario", str(path), "--check", "--api", fake_service.url,
        "--port", str(mosquitto.port), "--speed", "max", "--no-progress", "--check-timeout", "1s",
    ]  # fmt: skip
    fake_service.items = [_alert(e.rule, e.device) for e in scenario.expected]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "PASS: 3/3" in out
    fake_service.items = [*fake_service.items[1:], _alert("lamp_dark", "L-GHL-003")]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "FAIL: 2/3 expected alerts raised, 1 missing, 1 unexpected" in out
    assert "lamp_dark" in out
