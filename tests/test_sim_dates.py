"""Scenarios and runs on whatever date an engineer runs them.

A service with its default configuration refuses readings older than `ingest.max_age` (30 days) and
more than 5 minutes ahead of its clock. The shipped scenarios must play on a recent night so that
`simulate --scenario … --check` works against such a service on any day of the year, and their
expected alerts must still be exactly what the stream raises on that night (the sun moves).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ingest.decode import DEFAULT_MAX_AGE_S, Decoder
from simulator.cli import stale_warning
from simulator.clock import SERVICE_MAX_AGE_S, clock_of, latest_start, parse_start
from simulator.errors import OptionError
from simulator.scenario import load_scenario, scenario_names
from simulator.stream import Message, generate
from streetwatch.cli import main
from streetwatch.config import IngestConfig
from tests.servers import Mosquitto
from tests.test_sim_scenarios import oracle_alerts

TZ = ZoneInfo("Asia/Shanghai")
TS_REASONS = {"ts_too_old", "ts_in_future"}


def _ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=TZ).timestamp() * 1000)


# "Now" in four seasons and at four hours: afternoon, small hours (last night not over yet), …
NOWS = ["2027-01-10T09:30", "2027-04-10T01:30", "2027-07-10T15:00", "2027-10-21T23:50"]


def test_the_simulator_knows_the_services_default_limits() -> None:
    assert SERVICE_MAX_AGE_S == DEFAULT_MAX_AGE_S == IngestConfig().max_age


@pytest.mark.parametrize("now", NOWS)
@pytest.mark.parametrize("name", ["clear-night", "storm", "late-flood"])
def test_a_scenario_run_now_is_accepted_by_a_default_service_and_raises_what_it_expects(
    name: str, now: str
) -> None:
    now_ms = _ms(now)
    scenario = load_scenario(name, now_ms=now_ms)
    plan = scenario.plan
    end_ms = plan.start_ms + int((plan.duration_s or 0) * 1000)
    assert end_ms <= now_ms, "a scenario never plays a night that is not over"
    assert now_ms - end_ms < 86_400_000, "…and plays the most recent one"
    decoder = Decoder(plan.prefix, plan.max_payload_bytes)  # the default ingest.max_age
    messages = list(generate(plan))
    for m in messages:
        # At --speed max everything goes out now: the oldest a reading can be on arrival.
        at_now = {r.reason for r in decoder.decode(m.topic, m.payload, now_ms).rejected}
        if not at_now & TS_REASONS:
            continue
        # Only what the scenario sends on purpose (its malformed faults) may be refused for its
        # ts: the same message judged at its own send time is refused for the same reason.
        own = decoder.decode(m.topic, m.payload, plan.start_ms + m.offset_ms).rejected
        assert at_now & TS_REASONS <= {r.reason for r in own}, (m.topic, m.payload[:200])
    want = {(e.rule, e.device) for e in scenario.expected}
    got = oracle_alerts(plan, messages)
    assert sorted(want - got) == [], "expected but the stream would not raise them on this date"
    assert sorted(got - want) == [], "raised on this date but not expected"


def test_every_shipped_scenario_plays_a_recent_night_by_default() -> None:
    for name in scenario_names():
        scenario = load_scenario(name)
        age_s = dt.datetime.now(dt.UTC).timestamp() - scenario.plan.start_ms / 1000
        assert 0 < age_s < 2 * 86400 + (scenario.plan.duration_s or 0), name


def test_latest_start_is_the_most_recent_run_that_has_ended() -> None:
    tz = "Asia/Shanghai"
    day = 10 * 3600
    now = _ms("2026-11-27T23:58")
    assert latest_start("16:00", day, now_ms=now, tz=tz) == _ms("2026-11-26T16:00")
    assert latest_start("16:00", 2 * 3600, now_ms=now, tz=tz) == _ms("2026-11-27T16:00")
    # A run that ends exactly now has ended.
    assert latest_start("16:00", day, now_ms=_ms("2026-11-28T02:00"), tz=tz) == _ms(
        "2026-11-27T16:00"
    )
    assert parse_start("16:00", now_ms=now, duration_s=day) == _ms("2026-11-26T16:00")
    with pytest.raises(OptionError, match="clock time"):
        latest_start("25:00", day, now_ms=now, tz=tz)


def test_start_a_date_keeps_the_scenarios_clock_time() -> None:
    assert parse_start("2026-07-20", clock="16:00") == _ms("2026-07-20T16:00")
    scenario = load_scenario("storm", start="2026-03-01")
    assert scenario.plan.start_ms == _ms("2026-03-01T16:00")
    # A full time still wins as given.
    pinned = load_scenario("storm", start="2026-03-01T08:00Z")
    assert pinned.plan.start_ms == _ms("2026-03-01T16:00")
    assert clock_of("16:00") == "16:00"
    assert clock_of("2026-07-20T20:00+08:00") == "20:00"
    assert clock_of("now-12h") is None


def test_stale_warning_names_the_flag_that_fixes_it() -> None:
    now = _ms("2026-11-27T12:00")
    july = _ms("2026-07-20T16:00")
    old = stale_warning(july, july + 10 * 3_600_000, now, 60.0, "--start")
    assert old is not None and "ts_too_old" in old and "--start" in old and "130 days" in old
    replay = stale_warning(july, july + 3_600_000, now, float("inf"), "--shift-to-now")
    assert replay is not None and "--shift-to-now" in replay
    # 12 h ending an hour from now, sent at 60×: the last reading is ~48 min ahead on arrival.
    ahead = stale_warning(now - 11 * 3_600_000, now + 3_600_000, now, 60.0, "--start")
    assert ahead is not None and "ts_in_future" in ahead
    # A recent night, or now-12h at full speed: nothing to say.
    assert stale_warning(now - 30 * 3_600_000, now - 18 * 3_600_000, now, 60.0, "--start") is None
    assert stale_warning(now - 12 * 3_600_000, now, now, float("inf"), "--start") is None


@pytest.mark.integration
def test_publishing_old_readings_warns_in_one_line(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = tmp_path / "july.jsonl"
    ts = _ms("2026-07-15T21:00")
    recording.write_bytes(
        b"".join(
            Message(
                i * 1000,
                "city/jining/lamp/L-1/telemetry",
                b'{"ts": %d, "on": true}' % (ts + i * 1000),
            ).to_jsonl()
            for i in range(3)
        )
    )
    common = ["--port", str(mosquitto.port), "--speed", "max", "--no-progress"]
    assert main(["simulate", "--replay", str(recording), *common]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "--shift-to-now" in warnings[0], warnings
    assert main(["simulate", "--replay", str(recording), "--shift-to-now", *common]) == 0
    assert "warning" not in capsys.readouterr().err
    # A run pinned to an old date says so; the default (a recent night) does not.
    scenario = ["simulate", "--lamps", "3", "--waterlevel", "1", "--duration", "10m", *common]
    assert main([*scenario, "--start", "2026-07-20"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "--start" in warnings[0] and "ts_too_old" in warnings[0]
    assert main(scenario) == 0
    assert "warning" not in capsys.readouterr().err
    # A scenario file that pins an old date is told apart from an old --start.
    pinned = tmp_path / "pinned.yaml"
    pinned.write_text(
        'name: pinned\nstart: "2026-07-15T18:00+08:00"\nduration: 10m\n'
        "fleet: {lamps: 3, waterlevel: 1}\n"
    )
    assert main(["simulate", "--scenario", str(pinned), *common]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "pins a date" in warnings[0] and "--start" in warnings[0]
