"""The fault suite's short mode (scripts/faults) under pytest: one run, one test per scenario.

The run takes about three minutes: real Mosquitto and influxd, `streetwatch run` as a subprocess,
2,000 QoS 1 readings a second throughout, and kill -9 ×3, InfluxDB stopped, the spool's limit,
the broker restarted and gone, the spool's disk full (a tmpfs: needs root), SIGTERM with the v1
and the v2 store. The long mode is `scripts/faults --long`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.suite import SHORT, Run, RunResult

# The first test carries the whole run (about 3 minutes, more on a loaded machine).
pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunResult]:
    for binary in ("mosquitto", "influxd"):
        if shutil.which(binary) is None and not Path(f"/usr/sbin/{binary}").exists():
            pytest.fail(f"{binary} is not installed: run .ci/run")
    lines: list[str] = []
    result = Run(SHORT, tmp_path_factory.mktemp("faults"), log=lines.append).run()
    print("\n".join(lines))
    print(result.summary())
    yield result


def _ok(run: RunResult, name: str) -> None:
    s = run.scenarios[name]
    assert s.ok, f"{name}: {s.error} {s.figures}"


def test_kill9_at_random_moments_under_load(run: RunResult) -> None:
    _ok(run, "kill9")
    assert run.kills >= 3


def test_influxdb_outage_acks_go_on_alerts_flow_all_arrives(run: RunResult) -> None:
    _ok(run, "influx_outage")


def test_spool_limit_pauses_acks_and_the_flow_resumes(run: RunResult) -> None:
    _ok(run, "spool_limit")


def test_broker_restart_keeps_the_queued_readings(run: RunResult) -> None:
    _ok(run, "broker_restart")


def test_broker_gone_the_service_reconnects(run: RunResult) -> None:
    _ok(run, "broker_gone")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting the spool's tmpfs needs root")
def test_spool_disk_full_degraded_acks_stop_recovers(run: RunResult) -> None:
    _ok(run, "disk_full")


def test_sigterm_under_load_v1_exits_0_within_10s(run: RunResult) -> None:
    _ok(run, "sigterm_v1")


def test_sigterm_under_load_v2_store_hanging_exits_0_within_10s(run: RunResult) -> None:
    _ok(run, "sigterm_v2")


def test_every_published_reading_is_in_influxdb_exactly_once(run: RunResult) -> None:
    assert "drain" not in run.scenarios, run.scenarios.get("drain")
    v = run.verdict
    assert v is not None
    assert v.published > 100_000
    assert (v.lost, v.doubled, v.invented) == (0, 0, 0), v
    assert v.stored >= v.published
