"""The alert lifecycle through the store's API: transitions, audit trail, one open per (rule, device),
persistence across reopening, and the SLA clocks (moved by hand, never slept)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from alerts.config import SlaConfig
from alerts.errors import AlertNotFound, AlertStoreError, InvalidTransition
from alerts.model import Alert, Change, parse_time, rfc3339
from alerts.outlets import Fanout
from alerts.sla import SlaPolicy
from alerts.store import AlertStore
from alerts.testing import T0, Clock, Recorder, cond

MIN = 60
HOUR = 3600


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def store(tmp_path: Path, clock: Clock, recorder: Recorder) -> Iterator[AlertStore]:
    s = AlertStore(
        tmp_path / "alerts.sqlite",
        outlet=recorder,
        policy=SlaPolicy.from_config(SlaConfig()),
        clock=clock,
        road_of=lambda kind, device: "洸河路" if device.startswith("wl-") else None,
    ).open()
    yield s
    s.shutdown()


def only_open(store: AlertStore) -> Alert:
    alerts = store.open_alerts()
    assert len(alerts) == 1, alerts
    return alerts[0]


# ---- raising, repeats, one open per (rule, device) -------------------------------------------


def test_raise_then_repeats_update_the_one_open_alert(
    store: AlertStore, recorder: Recorder
) -> None:
    store.on_condition(cond(at=T0))
    first = only_open(store)
    assert first.state == "active"
    assert (first.rule, first.device, first.kind) == ("water_level", "wl-001", "waterlevel")
    assert first.raised_at == first.updated_at == T0
    assert first.road == "洸河路"  # from the registry lookup

    store.on_condition(cond(at=T0))  # a redelivery: no change at all
    assert recorder.actions == ["raised"]

    store.on_condition(
        cond(at=T0 + 60_000, level=2, severity="major", value=16.0, message="water 16 cm")
    )
    now = only_open(store)
    assert now.id == first.id
    assert (now.level, now.severity, now.value, now.message) == (2, "major", 16.0, "water 16 cm")
    assert now.updated_at == T0 + 60_000 and now.raised_at == T0
    assert recorder.actions == ["raised", "updated"]
    assert recorder.seen[-1][1].detail == {"severity": "major", "level": 2, "value": 16.0}

    # Another device, another rule: their own alerts.
    store.on_condition(cond(device="wl-002"))
    store.on_condition(cond(rule="battery_low", severity="warning"))
    assert len(store.open_alerts()) == 3


def test_a_clear_without_an_open_alert_does_nothing(store: AlertStore, recorder: Recorder) -> None:
    store.on_condition(cond(active=False))
    assert store.open_alerts() == [] and recorder.seen == []


def test_late_condition_never_moves_an_alert_back(store: AlertStore) -> None:
    store.on_condition(cond(at=T0 + 10_000, level=2))
    store.on_condition(cond(at=T0, active=False))  # older than what we have: ignored
    assert only_open(store).state == "active"
    store.on_condition(cond(at=T0 + 5_000, level=3))
    assert only_open(store).level == 2


# ---- people's transitions and the audit trail --------------------------------------------------


def test_full_lifecycle_with_audit_trail(
    store: AlertStore, clock: Clock, recorder: Recorder
) -> None:
    store.on_condition(cond(at=T0))
    alert_id = only_open(store).id

    clock.advance(5 * MIN)
    acked = store.ack(alert_id, "zhang.wei", "seen on the wall")
    assert acked.state == "acknowledged" and acked.acknowledged_by == "zhang.wei"
    assert acked.acknowledged_at == clock.now and acked.updated_at == clock.now

    clock.advance(5 * MIN)
    sent = store.dispatch(alert_id, "zhang.wei", "drainage crew 3", "pump truck")
    assert sent.state == "dispatched" and sent.assignee == "drainage crew 3"

    clock.advance(30 * MIN)
    store.on_condition(cond(at=clock.now, active=False, value=2.0, message="water 2 cm"))
    cleared = store.get(alert_id)
    assert cleared is not None and cleared.state == "cleared"
    assert cleared.cleared_at == clock.now and not cleared.condition_active

    clock.advance(MIN)
    closed = store.close(alert_id, "li.na", "pumped, road open")
    assert closed.state == "closed" and closed.closed_by == "li.na"
    assert store.open_alerts() == []
    assert store.get(alert_id) == closed  # closed alerts stay readable

    trail = store.history(alert_id)
    assert [c.action for c in trail] == [
        "raised",
        "acknowledged",
        "dispatched",
        "cleared",
        "closed",
    ]
    assert [c.who for c in trail] == ["rules", "zhang.wei", "zhang.wei", "rules", "li.na"]
    assert [(c.state_from, c.state_to) for c in trail] == [
        (None, "active"),
        ("active", "acknowledged"),
        ("acknowledged", "dispatched"),
        ("dispatched", "cleared"),
        ("cleared", "closed"),
    ]
    assert trail[1].note == "seen on the wall" and trail[4].note == "pumped, road open"
    assert trail[2].detail == {"assignee": "drainage crew 3"}
    assert trail[3].event_at == clock.now - MIN * 1000
    assert [c.seq for c in trail] == sorted(c.seq for c in trail)
    # Outlets were handed the very same changes, stored first (seq set).
    assert [c for _, c in recorder.seen] == trail

    # The same condition again opens a *new* alert: the old one is closed.
    store.on_condition(cond(at=clock.now))
    assert only_open(store).id != alert_id


def test_cleared_nobody_acknowledged_stays_visible_until_closed(store: AlertStore) -> None:
    store.on_condition(cond(at=T0))
    store.on_condition(cond(at=T0 + 1000, active=False))
    alert = only_open(store)
    assert alert.state == "cleared" and alert.acknowledged_at is None
    assert [a.id for a in store.list(state="open")] == [alert.id]
    assert [a.id for a in store.list(state="cleared")] == [alert.id]
    store.close(alert.id, "li.na")
    assert store.list(state="open") == []


def test_invalid_transitions_are_refused_clearly(store: AlertStore) -> None:
    store.on_condition(cond())
    alert_id = only_open(store).id
    with pytest.raises(InvalidTransition, match=r"cannot close .* it is active"):
        store.close(alert_id, "x")
    store.ack(alert_id, "x")
    with pytest.raises(InvalidTransition, match="only an active alert can be acknowledged") as err:
        store.ack(alert_id, "x")
    assert (err.value.action, err.value.state) == ("ack", "acknowledged")
    with pytest.raises(ValueError, match="assignee"):
        store.dispatch(alert_id, "x", "  ")
    store.resolve(alert_id, "x", "replaced the sensor", force=True)
    for action in (store.ack, store.resolve):
        with pytest.raises(InvalidTransition):
            action(alert_id, "x")
    with pytest.raises(InvalidTransition):
        store.dispatch(alert_id, "x", "crew 1")
    store.close(alert_id, "x")
    with pytest.raises(InvalidTransition, match="it is closed"):
        store.close(alert_id, "x")
    with pytest.raises(AlertNotFound):
        store.ack("no-such-id", "x")
    with pytest.raises(AlertNotFound):
        store.history("no-such-id")
    # Nothing refused left a trace in the audit trail.
    assert [c.action for c in store.history(alert_id)] == [
        "raised",
        "acknowledged",
        "resolved",
        "closed",
    ]


def test_dispatch_from_active_counts_as_response_and_can_reassign(store: AlertStore) -> None:
    store.on_condition(cond())
    alert_id = only_open(store).id
    a = store.dispatch(alert_id, "dispatcher", "crew 1")
    assert a.acknowledged_at is not None and a.acknowledged_by == "dispatcher"
    b = store.dispatch(alert_id, "dispatcher", "crew 2", "crew 1 stuck in traffic")
    assert b.assignee == "crew 2"
    assert store.history(alert_id)[-1].detail == {
        "assignee": "crew 2",
        "previous_assignee": "crew 1",
    }


def test_condition_returning_reactivates_the_same_alert(
    store: AlertStore, recorder: Recorder
) -> None:
    # Cleared by the condition: back where it was (the crew stays dispatched).
    store.on_condition(cond(at=T0))
    alert_id = only_open(store).id
    store.dispatch(alert_id, "d", "crew 1")
    store.on_condition(cond(at=T0 + 1000, active=False))
    assert only_open(store).state == "cleared"
    store.on_condition(cond(at=T0 + 2000, level=2))
    back = only_open(store)
    assert back.id == alert_id and back.state == "dispatched" and back.cleared_at is None
    assert back.level == 2 and back.assignee == "crew 1"
    assert recorder.actions[-1] == "reactivated"

    # Resolved by a person, but the condition comes back: the fix did not hold → active.
    store.resolve(alert_id, "crew 1", "cleared the drain", force=True)
    assert only_open(store).condition_active  # the rule engine has not said it is gone
    store.on_condition(cond(at=T0 + 3000, level=2))
    again = only_open(store)
    assert again.id == alert_id and again.state == "active"

    # Resolved, then the condition really goes: recorded, alert stays cleared until closed.
    store.resolve(alert_id, "crew 1", "pumped it out again", force=True)
    store.on_condition(cond(at=T0 + 4000, active=False))
    done = only_open(store)
    assert done.state == "cleared" and not done.condition_active
    assert done.cleared_by == "crew 1"


# ---- persistence ------------------------------------------------------------------------------


def test_alerts_and_audit_survive_reopening(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "data" / "alerts.sqlite"
    first = AlertStore(path, clock=clock).open()
    first.on_condition(cond(at=T0))
    first.on_condition(cond(device="wl-002", at=T0))
    alert_id = first.find_open("water_level", "wl-001").id  # type: ignore[union-attr]
    first.ack(alert_id, "zhang.wei", "on it")
    other = first.find_open("water_level", "wl-002")
    assert other is not None
    first.on_condition(cond(device="wl-002", at=T0 + 1, active=False))
    first.close(other.id, "li.na")
    first.shutdown()

    second = AlertStore(path, clock=clock).open()
    try:
        reopened = only_open(second)
        assert reopened.id == alert_id and reopened.state == "acknowledged"
        assert reopened.acknowledged_by == "zhang.wei"
        # A repeat after the restart updates the same alert instead of opening a second one.
        second.on_condition(cond(at=T0 + 60_000, level=2))
        assert only_open(second).id == alert_id and only_open(second).level == 2
        assert [c.action for c in second.history(alert_id)] == ["raised", "acknowledged", "updated"]
        assert second.get(other.id).state == "closed"  # type: ignore[union-attr]
        assert len(second.list()) == 2
    finally:
        second.shutdown()


def test_store_not_open(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "a.sqlite")
    store.on_condition(cond())  # the rule engine is never hurt
    assert store.dropped_before_open == 1
    with pytest.raises(AlertStoreError, match="not open"):
        store.list()


def test_one_open_per_rule_device_is_enforced_by_sqlite_too(store: AlertStore) -> None:
    import sqlite3

    store.on_condition(cond())
    db = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO alerts (id, rule, device, state, severity, raised_at, updated_at, data)"
            " VALUES ('x', 'water_level', 'wl-001', 'active', 'minor', 0, 0, '{}')"
        )
    db.close()


# ---- listing ----------------------------------------------------------------------------------


def test_list_filters(store: AlertStore) -> None:
    store.on_condition(cond(device="wl-001", at=T0, severity="minor"))
    store.on_condition(cond(device="wl-002", at=T0 + 1000, severity="critical", level=4))
    store.on_condition(cond(rule="battery_low", device="wl-002", at=T0 + 2000, severity="warning"))
    wl2 = store.find_open("water_level", "wl-002")
    assert wl2 is not None
    store.ack(wl2.id, "x")  # updated_at: the wall clock, T0

    assert [a.device for a in store.list(rule="water_level")] == ["wl-002", "wl-001"]
    assert [a.rule for a in store.list(device="wl-002")] == ["battery_low", "water_level"]
    assert [a.severity for a in store.list(severity="critical")] == ["critical"]
    assert [a.state for a in store.list(state="acknowledged")] == ["acknowledged"]
    assert len(store.list(state="active,acknowledged")) == 3
    assert len(store.list(state=["active"])) == 2
    assert [a.rule for a in store.list(since=T0 + 1500)] == ["battery_low"]
    assert len(store.list(limit=1)) == 1
    assert store.list(overdue=True) == []
    with pytest.raises(ValueError, match="unknown state 'open-ish'"):
        store.list(state="open-ish")
    with pytest.raises(ValueError, match="unknown severity"):
        store.list(severity="huge")


def test_alert_json_follows_the_contract(store: AlertStore) -> None:
    store.on_condition(cond(at=T0, level=1, value=11.5))
    data = orjson.loads(orjson.dumps(only_open(store).to_json()))
    for key in (
        "id",
        "rule",
        "device",
        "kind",
        "severity",
        "state",
        "message",
        "raised_at",
        "updated_at",
    ):
        assert key in data
    assert "cleared_at" not in data and "assignee" not in data  # optional: absent when empty
    assert data["raised_at"] == "2024-07-03T09:46:40.000Z"
    assert data["level"] == 1 and data["value"] == 11.5 and data["road"] == "洸河路"
    assert data["overdue"] is False and data["escalation"] == 0
    assert parse_time(data["raised_at"]) == T0
    assert data["response_due"] == rfc3339(T0 + 8 * HOUR * 1000)  # minor: 8 h to respond


def test_time_formats() -> None:
    assert rfc3339(T0 + 7) == "2024-07-03T09:46:40.007Z"
    assert parse_time("2024-07-03T17:46:40.007+08:00") == T0 + 7
    assert parse_time(str(T0)) == T0
    with pytest.raises(ValueError, match="offset"):
        parse_time("2024-07-03T17:46:40")
    with pytest.raises(ValueError):
        parse_time("yesterday")


# ---- outlets ----------------------------------------------------------------------------------


def test_a_failing_outlet_harms_neither_the_store_nor_other_outlets(tmp_path: Path) -> None:
    class Broken:
        def publish(self, alert: Alert, change: Change) -> None:
            raise RuntimeError("boom")

    good = Recorder()
    fan = Fanout()
    fan.add(Broken())
    fan.add(good)
    store = AlertStore(tmp_path / "a.sqlite", outlet=fan).open()
    store.on_condition(cond())
    assert good.actions == ["raised"] and fan.errors == 1
    assert len(store.open_alerts()) == 1
    store.shutdown()


def test_changed_since_and_cursors(store: AlertStore) -> None:
    assert store.get_cursor("mqtt") is None
    store.on_condition(cond(device="wl-001"))
    mark = store.last_seq()
    store.on_condition(cond(device="wl-002"))
    store.on_condition(cond(device="wl-002", level=2))
    store.set_cursor("mqtt", mark)
    store.set_cursor("mqtt", mark - 1)  # never moves back
    assert store.get_cursor("mqtt") == mark
    changed = store.changed_since(mark)
    assert [(a.device, a.level) for a, _ in changed] == [("wl-002", 2)]
    assert changed[0][1] == store.last_seq()


# ---- time limits ------------------------------------------------------------------------------


def test_sla_reminds_escalates_and_marks_overdue(
    store: AlertStore, clock: Clock, recorder: Recorder
) -> None:
    store.on_condition(cond(severity="critical", level=4, at=T0))
    alert_id = only_open(store).id
    assert store.sweep_sla() == []

    clock.advance(14 * MIN)
    assert store.sweep_sla() == []
    clock.advance(1 * MIN)  # half of the 30-minute response limit
    assert [c.action for c in store.sweep_sla()] == ["reminded"]
    assert store.sweep_sla() == []  # once

    clock.advance(15 * MIN)  # 30 min: nobody responded
    changes = store.sweep_sla()
    assert [(c.action, c.who, dict(c.detail)["limit"]) for c in changes] == [
        ("overdue", "sla", "response")
    ]
    alert = store.get(alert_id)
    assert alert is not None and alert.overdue == {"response"} and alert.escalation == 1
    assert alert.to_json()["overdue"] is True
    assert [a.id for a in store.list(overdue=True)] == [alert_id]

    clock.advance(30 * MIN)  # another full limit: escalate
    assert [c.action for c in store.sweep_sla()] == ["escalated"]
    assert store.get(alert_id).escalation == 2  # type: ignore[union-attr]

    store.ack(alert_id, "zhang.wei")  # late, but the response clock stops
    clock.advance(2 * HOUR)
    assert store.sweep_sla() == []

    clock.advance(22 * HOUR)  # 24 h 30 min after opening: the resolution limit passed
    changes = store.sweep_sla()
    assert [c.action for c in changes] == ["overdue"]  # no reminder once it is past
    alert = store.get(alert_id)
    assert alert is not None and alert.overdue == {"response", "resolution"}

    store.on_condition(cond(severity="critical", at=clock.now, active=False))
    store.close(alert_id, "li.na")
    closed = store.get(alert_id)
    assert closed is not None and closed.overdue == {"response", "resolution"}  # negative list
    assert [a.id for a in store.list(overdue=True, state="closed")] == [alert_id]
    overdue_rows = [c for c in store.history(alert_id) if c.action == "overdue"]
    assert [dict(c.detail)["limit"] for c in overdue_rows] == ["response", "resolution"]
    assert recorder.actions.count("overdue") == 2


def test_sla_catches_up_after_downtime_and_caps_escalation(store: AlertStore, clock: Clock) -> None:
    store.on_condition(cond(severity="critical", at=T0))
    clock.advance(10 * HOUR)
    assert [c.action for c in store.sweep_sla()] == ["overdue"]
    assert only_open(store).escalation == 3  # max_escalations


def test_no_response_needed_when_the_condition_cleared_itself(
    store: AlertStore, clock: Clock
) -> None:
    store.on_condition(cond(severity="critical", at=T0))
    store.on_condition(cond(severity="critical", at=T0 + 60_000, active=False))
    clock.advance(48 * HOUR)
    assert store.sweep_sla() == []
    assert only_open(store).overdue == frozenset()


def test_severity_rise_gives_the_stricter_limit_from_the_change(
    store: AlertStore, clock: Clock
) -> None:
    store.on_condition(cond(severity="minor", level=1, at=T0))
    assert only_open(store).response_due == T0 + 8 * HOUR * 1000
    clock.advance(2 * HOUR)
    store.on_condition(cond(severity="critical", level=4, at=clock.now))
    alert = only_open(store)
    assert alert.response_due == clock.now + 30 * MIN * 1000
    assert alert.resolution_due == clock.now + 24 * HOUR * 1000
    assert store.sweep_sla() == []  # not overdue the moment the water rose
    # Back down to minor: the minor limits count from the start again, never shorter than now.
    store.on_condition(cond(severity="minor", level=1, at=clock.now + 1))
    back = only_open(store)
    assert back.response_due == T0 + 8 * HOUR * 1000


def test_sla_limits_can_be_switched_off(tmp_path: Path, clock: Clock) -> None:
    config = SlaConfig.model_validate({"warning": {"response": None, "resolution": "off"}})
    store = AlertStore(
        tmp_path / "a.sqlite", policy=SlaPolicy.from_config(config), clock=clock
    ).open()
    store.on_condition(cond(rule="battery_low", severity="warning"))
    alert = only_open(store)
    assert alert.response_due is None and alert.resolution_due is None
    clock.advance(30 * 86400)
    assert store.sweep_sla() == []
    store.shutdown()


def test_reconcile_raises_what_the_engine_holds_and_never_clears(
    store: AlertStore, recorder: Recorder
) -> None:
    store.on_condition(cond(device="wl-001", at=T0))  # the engine still holds this one
    store.on_condition(cond(device="wl-002", at=T0))  # the engine does not know it (state lost)
    store.on_condition(cond(device="wl-003", at=T0))
    wl3 = store.find_open("water_level", "wl-003")
    assert wl3 is not None
    store.resolve(
        wl3.id, "crew", "replaced the float", force=True
    )  # resolved by hand; the engine does not hold it either
    held = [
        cond(device="wl-001", at=T0),
        cond(device="wl-004", at=T0 + 5),
    ]  # wl-004: store missed it
    changes = store.reconcile(held, at_ms=T0 + 10)
    by_device = {a.device: a for a in store.open_alerts()}
    assert by_device["wl-001"].state == "active"
    # A restart never clears: only a reading (or the absence of one) decides.
    assert by_device["wl-002"].state == "active" and by_device["wl-002"].condition_active
    assert by_device["wl-003"].state == "cleared" and by_device["wl-003"].condition_active
    assert by_device["wl-004"].state == "active"
    assert changes == 1  # wl-004 raised
    assert store.reconcile(held, at_ms=T0 + 20) == 0  # idempotent
    told = {(c.device, c.active, c.at_ms) for c in store.told()}
    assert ("wl-002", True, T0) in told and ("wl-003", True, T0) in told


def test_time_limits_of_the_config_in_force_apply_to_open_alerts_after_a_restart(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "a.sqlite"
    first = AlertStore(path, policy=SlaPolicy.from_config(SlaConfig()), clock=clock).open()
    first.on_condition(cond(rule="battery_low", device="b1", severity="warning"))
    first.on_condition(cond(rule="water_level", device="w1", severity="major"))
    first.on_condition(cond(rule="lamp_dark", device="l1", severity="minor"))
    first.shutdown()
    # The city tightens major, switches warning's limits off, leaves minor as it was.
    config = SlaConfig.model_validate(
        {"warning": {"response": None, "resolution": None}, "major": {"response": "10m"}}
    )
    store = AlertStore(path, policy=SlaPolicy.from_config(config), clock=clock).open()
    by_device = {a.device: a for a in store.open_alerts()}
    opened = by_device["w1"].opened_at
    assert by_device["w1"].response_due == opened + 10 * MIN * 1000
    assert by_device["w1"].resolution_due == opened + 48 * HOUR * 1000
    assert by_device["b1"].response_due is None and by_device["b1"].resolution_due is None
    assert by_device["l1"].response_due == opened + 8 * HOUR * 1000
    clock.advance(20 * MIN)
    changes = store.sweep_sla()
    assert [(c.alert_id, c.action) for c in changes] == [(by_device["w1"].id, "overdue")]
    clock.advance(30 * 86400)
    assert all(c.alert_id != by_device["b1"].id for c in store.sweep_sla())
    store.shutdown()


def test_a_limit_switched_off_is_never_overdue_even_with_an_old_due_time(clock: Clock) -> None:
    """null means no limit: an alert still carrying a due time from an older config is not
    overdue (and is not escalated to the top at once, as a zero-length limit would be)."""
    from dataclasses import replace

    from alerts.sla import evaluate

    alert = Alert(
        id="a" * 32,
        rule="battery_low",
        device="b1",
        kind="waterlevel",
        severity="warning",
        state="active",
        message="m",
        raised_at=T0,
        updated_at=T0,
        opened_at=T0,
        response_due=T0 + 1000,
        resolution_due=T0 + 2000,
    )
    config = SlaConfig.model_validate({"warning": {"response": None, "resolution": None}})
    assert evaluate(alert, T0 + 86_400_000, SlaPolicy.from_config(config)) is None
    on = evaluate(replace(alert), T0 + 86_400_000, SlaPolicy.from_config(SlaConfig()))
    assert on is not None


def test_resolve_while_the_condition_is_present_needs_force_and_a_note(store: AlertStore) -> None:
    from alerts.errors import ConditionStillPresent

    store.on_condition(cond(at=T0))
    alert_id = only_open(store).id
    with pytest.raises(ConditionStillPresent, match="still present"):
        store.resolve(alert_id, "crew 1", "looks fine to me")
    with pytest.raises(ValueError, match="note"):
        store.resolve(alert_id, "crew 1", force=True)
    assert only_open(store).state == "active"
    forced = store.resolve(alert_id, "crew 1", "sensor fouled, water gone", force=True)
    assert forced.state == "cleared" and forced.to_json()["condition_still_present"] is True
    assert store.history(alert_id)[-1].detail == {"forced": True}
    # Once the condition is gone, a resolve needs no force.
    store.on_condition(cond(device="wl-009", at=T0))
    other = store.find_open("water_level", "wl-009")
    assert other is not None
    store.on_condition(cond(device="wl-009", at=T0 + 1, active=False))
    cleared = store.get(other.id)
    assert cleared is not None and cleared.to_json()["condition_still_present"] is False


def test_act_as_a_named_principal_keeps_the_typed_name_as_a_note(store: AlertStore) -> None:
    store.on_condition(cond(at=T0))
    alert_id = only_open(store).id
    acked = store.act("ack", alert_id, who="红星路维修班", note="on our way", shown_as="老王")
    assert acked.acknowledged_by == "红星路维修班"
    last = store.history(alert_id)[-1]
    assert (last.who, last.note, last.detail) == (
        "红星路维修班",
        "on our way",
        {"shown_as": "老王"},
    )
    with pytest.raises(ValueError, match="unknown action"):
        store.act("explode", alert_id, who="x")


def test_reconcile_does_not_reopen_what_a_person_closed(store: AlertStore) -> None:
    """Resolved by force and closed while the rules still saw it: a restart whose engine still
    holds that same condition must not raise it again as a new alert."""
    store.on_condition(cond(device="wl-1", at=T0))
    alert_id = only_open(store).id
    store.resolve(alert_id, "crew", "false alarm: sensor fouled", force=True)
    store.close(alert_id, "crew")
    assert store.reconcile([cond(device="wl-1", at=T0)]) == 0
    assert store.open_alerts() == []
    # A newer condition than the store ever took is news: raised.
    assert store.reconcile([cond(device="wl-1", at=T0 + 1000)]) == 1
