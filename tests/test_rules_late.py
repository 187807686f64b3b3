"""Late readings are judged on the device's own event time, never dropped (rules/late.py), and
what they raise is marked reported late."""

from __future__ import annotations

from devices.location import LocationConfig
from devices.registry import Device, Registry
from rules.config import RulesConfig
from rules.engine import RuleEngine
from rules.testing import RecordingSink, water
from tests.test_rules_kinds import MIN, NIGHT

HOUR = 60 * MIN
BACK = NIGHT + 5 * HOUR  # 03:00: the gateway's uplink is back
FLOOD = (NIGHT + 3 * HOUR, BACK - 10 * MIN)  # 45 cm from 01:00 to 02:50


def city() -> tuple[RuleEngine, RecordingSink]:
    reg = Registry(
        [
            Device("W1", "waterlevel", road="济安桥路", point="P1", report_interval_s=60),
            Device("W2", "waterlevel", road="洸河路", point="P2", report_interval_s=60),
        ]
    )
    sink = RecordingSink()
    return RuleEngine(RulesConfig(), LocationConfig(), reg, sink), sink


def depth(t: int) -> float:
    return 45.0 if FLOOD[0] <= t < FLOOD[1] else 2.0


def night_until_the_gateway_returns(e: RuleEngine) -> None:
    """Both points live until 22:00; then W1's gateway is down and only W2 is heard, live."""
    t = NIGHT - HOUR
    while t < NIGHT:
        e.observe(water("W1", t, 2.0))
        e.observe(water("W2", t, 2.0))
        e.tick(t)
        t += MIN
    while t < BACK:
        e.observe(water("W2", t, 2.0))
        e.tick(t)
        t += MIN


def backlog(e: RuleEngine) -> None:
    """W1's readings 22:00–03:00, uploaded at 03:00 as arrays of an hour each."""
    t = NIGHT
    while t < BACK:
        for _ in range(60):
            e.observe(water("W1", t, depth(t), received=BACK + 1000))
            t += MIN


def after(e: RuleEngine, minutes: int) -> None:
    for m in range(1, minutes):
        t = BACK + m * MIN
        e.observe(water("W1", t, 2.0))
        e.observe(water("W2", t, 2.0))
        e.tick(t)


def check_the_flood(sink: RecordingSink) -> None:
    flood = sink.of("water_level", "W1")
    assert [c.active for c in flood] == [True, False]
    raised, cleared = flood
    assert FLOOD[0] <= raised.at_ms <= FLOOD[0] + 2 * MIN  # its own event time
    assert raised.level is not None and raised.level >= 4
    assert FLOOD[1] <= cleared.at_ms <= BACK + MIN  # over already: cleared
    assert raised.reported_at is not None and raised.reported_at >= BACK  # marked late


def test_a_late_flood_uploaded_before_the_live_readings() -> None:
    e, sink = city()
    night_until_the_gateway_returns(e)
    backlog(e)
    after(e, 20)
    check_the_flood(sink)


def test_a_late_flood_uploaded_after_the_current_reading() -> None:
    """The gateway sends each point's current reading first, then its backlog: every backlog
    reading is older than the newest judged one. It used to be dropped as `late`."""
    e, sink = city()
    night_until_the_gateway_returns(e)
    e.observe(water("W1", BACK, 2.0, received=BACK + 500))  # the current reading first
    backlog(e)
    after(e, 20)
    check_the_flood(sink)
    assert e.stats()["late_judged"] == 300 and e.stats()["late_dropped"] == 0


def test_a_late_run_never_clears_what_the_live_readings_hold() -> None:
    """Still flooded at 03:00: the live reading raised it; the late run's view ends at 03:00 but
    leaves the clear to the live rule."""
    e, sink = city()
    night_until_the_gateway_returns(e)
    e.observe(water("W1", BACK, 45.0, received=BACK + 500))
    t = NIGHT
    while t < BACK:
        e.observe(water("W1", t, 45.0 if t >= FLOOD[0] else 2.0, received=BACK + 1000))
        t += MIN
    for m in range(1, 20):
        e.observe(water("W1", BACK + m * MIN, 45.0))
        e.observe(water("W2", BACK + m * MIN, 2.0))
        e.tick(BACK + m * MIN)
    flood = sink.of("water_level", "W1")
    assert flood and all(c.active for c in flood), flood


def test_a_live_replay_marks_nothing_late() -> None:
    e, sink = city()
    t = NIGHT
    while t < NIGHT + HOUR:
        e.observe(water("W1", t, 45.0 if t > NIGHT + 10 * MIN else 2.0))
        e.tick(t)
        t += MIN
    raised = sink.of("water_level", "W1")
    assert raised and all(c.reported_at is None for c in raised)


def test_late_lamp_events_outside_the_cabinet_are_judged_and_supply_loss_is_left_to_it() -> None:
    from rules.testing import event, lamp

    reg = Registry([Device("L1", "lamp", road="洸河路", cabinet="C1", rated_w=150.0)])
    sink = RecordingSink()
    e = RuleEngine(RulesConfig(), LocationConfig(), reg, sink)
    e.observe(lamp("L1", NIGHT, voltage=220, power=150))
    back = NIGHT + HOUR
    e.observe(lamp("L1", back, voltage=220, power=150))
    e.observe(event("L1", back, "supplyLoss", "cleared"))  # the current state first ...
    e.observe(event("L1", back, "driverFailure", "cleared"))
    e.observe(event("L1", NIGHT + 10 * MIN, "supplyLoss"))  # ... then the backlog
    e.observe(event("L1", NIGHT + 20 * MIN, "driverFailure"))
    e.observe(event("L1", NIGHT + 30 * MIN, "driverFailure", "cleared"))
    assert e.stats()["late_judged"] == 3
    e.tick(back + MIN)  # the run ends once no late reading came for backlog_quiet_s
    faults = sink.of("lamp_fault", "L1")
    assert [c.active for c in faults] == [True, False]
    assert faults[0].at_ms == NIGHT + 20 * MIN
    assert faults[0].extra.get("events") == "driverFailure"
    assert sink.of("cabinet_outage") == []


def test_a_backlog_uploaded_newest_first_is_judged_in_time_order() -> None:
    e, sink = city()
    night_until_the_gateway_returns(e)
    e.observe(water("W1", BACK, 2.0, received=BACK + 500))
    t = BACK - MIN
    while t >= NIGHT:  # arrays newest first
        e.observe(water("W1", t, depth(t), received=BACK + 1000))
        t -= MIN
    after(e, 20)
    check_the_flood(sink)
    assert e.stats()["late_judged"] == 300 and e.stats()["late_dropped"] == 0


def test_a_redelivered_backlog_changes_nothing() -> None:
    e, sink = city()
    night_until_the_gateway_returns(e)
    e.observe(water("W1", BACK, 2.0, received=BACK + 500))
    backlog(e)
    backlog(e)  # the broker redelivers it (not acknowledged before a reconnect)
    after(e, 20)
    check_the_flood(sink)
    assert e.stats()["late_dropped"] == 300


def test_a_backlog_redelivered_after_its_run_ended_changes_nothing() -> None:
    e, sink = city()
    night_until_the_gateway_returns(e)
    e.observe(water("W1", BACK, 2.0, received=BACK + 500))
    backlog(e)
    after(e, 20)
    check_the_flood(sink)
    backlog(e)  # again, after a reconnect much later
    e.tick(BACK + 30 * MIN)
    check_the_flood(sink)
