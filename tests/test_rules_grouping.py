"""cabinet_outage: one alert for a cabinet, its lamps' own alerts held back."""

from __future__ import annotations

from pathlib import Path

from devices.location import LocationConfig
from devices.registry import Device, Registry
from rules.config import RulesConfig
from rules.engine import RuleEngine
from rules.testing import RecordingSink, event, lamp
from tests.test_rules_kinds import MIN, NIGHT


def fleet() -> Registry:
    lamps = [
        Device(f"A{i}", "lamp", road="洸河路", road_class="main", cabinet="C1", rated_w=150)
        for i in range(6)
    ]
    lamps += [
        Device(f"B{i}", "lamp", road="红星路", road_class="branch", cabinet="C2", rated_w=100)
        for i in range(3)
    ]
    return Registry(lamps)


def make(
    rules: dict | None = None, state: Path | None = None, sink: RecordingSink | None = None
) -> tuple[RuleEngine, RecordingSink]:
    sink = sink or RecordingSink()
    config = RulesConfig.model_validate(rules or {})
    return RuleEngine(config, LocationConfig(), fleet(), sink, state_path=state), sink


def healthy(e: RuleEngine, t: int, devices: list[str]) -> None:
    for d in devices:
        e.observe(lamp(d, t, power=150 if d.startswith("A") else 100, voltage=220))


def test_cabinet_outage_by_silence_holds_back_lamp_alerts() -> None:
    e, sink = make()
    every = [f"A{i}" for i in range(6)] + [f"B{i}" for i in range(3)]
    healthy(e, NIGHT, every)
    # Cabinet C1 loses power: its lamps fall silent; C2's keep reporting every 5 min.
    for k in range(1, 8):
        healthy(e, NIGHT + k * 5 * MIN, [f"B{i}" for i in range(3)])
    outage = sink.of("cabinet_outage")
    assert [(c.device, c.kind, c.active, c.value) for c in outage] == [("C1", "cabinet", True, 6.0)]
    assert outage[0].at_ms == NIGHT + 15 * MIN and outage[0].road == "洸河路"
    assert outage[0].extra["devices"] == "A0,A1,A2,A3,A4,A5"
    assert "Cabinet C1 on 洸河路: 6 devices" in outage[0].message
    assert [c for c in sink.conditions if c.rule == "device_offline"] == []
    # Power back to all but A5 (its lamp is broken): the cabinet clears, A5 gets its own alert.
    t = NIGHT + 40 * MIN
    healthy(e, t, [f"A{i}" for i in range(5)])
    healthy(e, t + 5 * MIN, [f"B{i}" for i in range(3)])
    assert [c.active for c in sink.of("cabinet_outage")][-1] is False
    own = sink.of("device_offline")
    assert [(c.device, c.active) for c in own] == [("A5", True)]
    assert sink.open() == {("device_offline", "A5")}


def test_two_dark_lamps_are_not_a_cabinet_outage() -> None:
    e, sink = make()
    for k in range(4):
        t = NIGHT + k * 5 * MIN
        for d in ("A0", "A1"):
            e.observe(lamp(d, t, on=False))
        healthy(e, t, ["A2", "A3", "A4", "A5", "B0", "B1", "B2"])
    assert sink.of("cabinet_outage") == []
    assert sorted((c.device, c.at_ms) for c in sink.of("lamp_dark")) == [
        ("A0", NIGHT + 7 * MIN),  # dark at the 2nd reading (5 min), waited the 2-min window
        ("A1", NIGHT + 7 * MIN),
    ]


def test_three_dark_lamps_within_the_window_are_one_alert() -> None:
    e, sink = make()
    for k in range(4):
        t = NIGHT + k * 5 * MIN
        for j, d in enumerate(("A0", "A1", "A2")):
            e.observe(lamp(d, t + j * 20_000, on=False))
        healthy(e, t, ["A3", "A4", "A5", "B0", "B1", "B2"])
    [outage] = sink.of("cabinet_outage")
    assert outage.at_ms == NIGHT + 5 * MIN + 40_000 and outage.value == 3.0
    assert sink.of("lamp_dark") == []


def test_dark_lamps_in_different_cabinets_do_not_group() -> None:
    e, sink = make()
    for k in range(3):
        t = NIGHT + k * 5 * MIN
        for d in ("A0", "A1", "B0"):
            e.observe(lamp(d, t, on=False))
        healthy(e, t, ["A2", "A3", "A4", "A5", "B1", "B2"])
    assert sink.of("cabinet_outage") == []
    assert {c.device for c in sink.of("lamp_dark")} == {"A0", "A1", "B0"}


def test_grouping_off_means_no_wait() -> None:
    e, sink = make({"cabinet_outage": {"enabled": False}})
    for k in range(2):
        for d in ("A0", "A1", "A2"):
            e.observe(lamp(d, NIGHT + k * 5 * MIN, on=False))
    assert {(c.device, c.at_ms) for c in sink.of("lamp_dark")} == {
        (d, NIGHT + 5 * MIN) for d in ("A0", "A1", "A2")
    }


# ---- lamp_fault of supply events (a controller's last gasp) is a cabinet_outage member --------------

A_LAMPS = [f"A{i}" for i in range(6)]
B_LAMPS = [f"B{i}" for i in range(3)]


def raises(sink: RecordingSink, rule: str) -> list[tuple[str, int]]:
    """(device, at) of each raise: an active Condition for a (rule, device) not open before."""
    out: list[tuple[str, int]] = []
    open_: set[str] = set()
    for c in sink.of(rule):
        if c.active and c.device not in open_:
            out.append((c.device, c.at_ms))
        (open_.add if c.active else open_.discard)(c.device)
    return out


def c2_reports(e: RuleEngine, start: int, end: int) -> None:
    """C2's lamps report every 5 min: the watermark moves on (C1's lamps are silent)."""
    for t in range(start, end + 1, 5 * MIN):
        healthy(e, t, B_LAMPS)


def test_config_makes_supply_loss_lamp_faults_members() -> None:
    group = RulesConfig().cabinet_outage
    assert group.members == ["lamp_dark", "device_offline", "lamp_fault"]
    assert group.member_events == {"lamp_fault": ["supplyLoss"]}


def test_cabinet_supply_loss_is_one_cabinet_alert_and_no_lamp_faults() -> None:
    e, sink = make()
    healthy(e, NIGHT, A_LAMPS + B_LAMPS)
    # C1's breaker trips: every controller's last gasp, a second apart, then silence.
    t0 = NIGHT + MIN
    for j, d in enumerate(A_LAMPS):
        e.observe(event(d, t0 + j * 1000, "supplyLoss"))
    c2_reports(e, t0 + 5 * MIN, t0 + 40 * MIN)
    # One cabinet alert, formed on the supply events alone (the third last gasp), its count
    # updated as the others join; no lamp_fault (nor device_offline) while it is open.
    assert raises(sink, "cabinet_outage") == [("C1", t0 + 2000)]
    assert {c.device for c in sink.of("cabinet_outage")} == {"C1"}
    assert all(c.active for c in sink.of("cabinet_outage"))
    assert sink.of("cabinet_outage")[-1].extra["devices"] == ",".join(A_LAMPS)
    assert sink.of("lamp_fault") == [] and sink.of("device_offline") == []
    # Power back: every lamp reports, its supplyLoss cleared; the cabinet clears, nothing else.
    back = t0 + 45 * MIN
    for d in A_LAMPS:
        e.observe(event(d, back, "supplyLoss", "cleared"))
    healthy(e, back, A_LAMPS)
    healthy(e, back + 5 * MIN, A_LAMPS + B_LAMPS)
    assert sink.of("cabinet_outage")[-1].active is False
    assert {c.rule for c in sink.conditions} == {"cabinet_outage"}


def test_same_instant_last_gasps_are_one_condition() -> None:
    e, sink = make()
    healthy(e, NIGHT, A_LAMPS + B_LAMPS)
    t0 = NIGHT + MIN
    e.observe(event("A0", t0, "supplyLoss"))
    e.observe(event("A1", t0, "supplyLoss"))
    e.observe(event("A2", t0, "supplyLoss"))
    c2_reports(e, t0 + 5 * MIN, t0 + 10 * MIN)
    [outage] = sink.of("cabinet_outage")
    assert (outage.device, outage.active, outage.at_ms, outage.value) == ("C1", True, t0, 3.0)
    assert sink.of("lamp_fault") == []


def test_a_lamp_still_faulted_when_the_cabinet_clears_gets_its_own_alerts() -> None:
    e, sink = make()
    healthy(e, NIGHT, A_LAMPS + B_LAMPS)
    t0 = NIGHT + MIN
    for d in A_LAMPS:
        e.observe(event(d, t0, "supplyLoss"))
    c2_reports(e, t0 + 5 * MIN, t0 + 30 * MIN)
    back = t0 + 30 * MIN
    for d in A_LAMPS[:5]:  # A5's own feed is still cut: silent, its supplyLoss still raised
        e.observe(event(d, back, "supplyLoss", "cleared"))
    healthy(e, back, A_LAMPS[:5])
    c2_reports(e, back + 5 * MIN, back + 10 * MIN)
    assert sink.of("cabinet_outage")[-1].active is False
    closed = sink.of("cabinet_outage")[-1].at_ms
    [own] = sink.of("lamp_fault")
    assert (own.device, own.active, own.severity, own.at_ms) == ("A5", True, "critical", closed)
    assert own.extra["events"] == "supplyLoss"
    assert raises(sink, "device_offline") == [("A5", closed)]  # released the same way


def test_one_lamps_supply_loss_waits_the_window_then_is_its_own_alert() -> None:
    e, sink = make()
    healthy(e, NIGHT, A_LAMPS + B_LAMPS)
    e.observe(event("A0", NIGHT + MIN, "supplyLoss"))
    healthy(e, NIGHT + 2 * MIN, A_LAMPS[1:] + B_LAMPS)
    assert sink.of("lamp_fault") == []  # within the window: a cabinet outage may still form
    healthy(e, NIGHT + 5 * MIN, A_LAMPS[1:] + B_LAMPS)
    got = [(c.device, c.active, c.severity, c.at_ms) for c in sink.of("lamp_fault")]
    assert got == [("A0", True, "critical", NIGHT + 3 * MIN)]
    assert sink.of("cabinet_outage") == []


def test_supply_loss_and_a_fault_of_its_own_goes_out_at_once() -> None:
    e, sink = make()
    healthy(e, NIGHT, A_LAMPS + B_LAMPS)
    t0 = NIGHT + MIN
    e.observe(event("A0", t0, "supplyLoss"))
    e.observe(event("A0", t0 + 10_000, "driverFailure"))  # within the window: not held back
    got = [(c.active, c.at_ms, c.extra["events"]) for c in sink.of("lamp_fault")]
    assert got == [(True, t0 + 10_000, "driverFailure,supplyLoss")]
    # The other order: a fault of its own first, supply lost after: out at once, then updated.
    e.observe(event("A1", t0, "driverFailure"))
    e.observe(event("A1", t0 + 5000, "supplyLoss"))
    got = [(c.active, c.at_ms, c.extra["events"]) for c in sink.of("lamp_fault", "A1")]
    assert got == [(True, t0, "driverFailure"), (True, t0 + 5000, "driverFailure,supplyLoss")]
    # Nothing is raised twice once the window has passed.
    healthy(e, t0 + 10 * MIN, A_LAMPS[2:] + B_LAMPS)
    assert len(sink.of("lamp_fault")) == 3
    assert sink.of("cabinet_outage") == []


def test_other_events_do_not_form_a_group() -> None:
    e, sink = make()
    healthy(e, NIGHT, A_LAMPS + B_LAMPS)
    for d in A_LAMPS[:4]:
        e.observe(event(d, NIGHT + MIN, "doorOpen"))
    c2_reports(e, NIGHT + 5 * MIN, NIGHT + 5 * MIN)
    assert sink.of("cabinet_outage") == []
    assert raises(sink, "lamp_fault") == [(d, NIGHT + MIN) for d in A_LAMPS[:4]]


def test_a_fault_of_its_own_during_an_open_outage_is_not_held_back() -> None:
    e, sink = make()
    healthy(e, NIGHT, A_LAMPS + B_LAMPS)
    t0 = NIGHT + MIN
    for d in A_LAMPS:
        e.observe(event(d, t0, "supplyLoss"))
    c2_reports(e, t0 + 5 * MIN, t0 + 5 * MIN)
    assert raises(sink, "cabinet_outage") == [("C1", t0)] and sink.of("lamp_fault") == []
    e.observe(event("A2", t0 + 6 * MIN, "tiltDetected"))  # a car hit the pole
    got = [(c.device, c.active, c.at_ms) for c in sink.of("lamp_fault")]
    assert got == [("A2", True, t0 + 6 * MIN)]
    assert sink.of("cabinet_outage")[-1].active  # the other five keep the cabinet open


def test_supply_loss_members_survive_a_restart_mid_window(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    e1, sink = make(state=path)
    healthy(e1, NIGHT, A_LAMPS + B_LAMPS)
    t0 = NIGHT + MIN
    e1.observe(event("A0", t0, "supplyLoss"))
    e1.observe(event("A1", t0 + 20_000, "supplyLoss"))
    e1.observe(event("B0", t0 + 30_000, "supplyLoss"))
    e1.save_state()
    e1.close()
    e2, _ = make(state=path, sink=sink)
    e2.load_state()
    e2.observe(event("A2", t0 + 40_000, "supplyLoss"))  # C1's third within the window
    healthy(e2, t0 + 4 * MIN, A_LAMPS[3:] + B_LAMPS[1:])
    assert raises(sink, "cabinet_outage") == [("C1", t0 + 40_000)]
    # C1's lamps are held back; B0, alone on C2, got its own alert after the window, once.
    assert raises(sink, "lamp_fault") == [("B0", t0 + 30_000 + 2 * MIN)]
    # Restart again while the cabinet is open; power returns, but A1 is still cut.
    e2.save_state()
    e2.close()
    e3, _ = make(state=path, sink=sink)
    e3.load_state()
    back = t0 + 10 * MIN
    for d in ("A0", "A2"):
        e3.observe(event(d, back, "supplyLoss", "cleared"))
    for t in (back, back + 5 * MIN):
        healthy(e3, t, ["A0", "A2", *A_LAMPS[3:], *B_LAMPS[1:]])
    assert sink.of("cabinet_outage")[-1].active is False
    closed = sink.of("cabinet_outage")[-1].at_ms
    assert raises(sink, "lamp_fault") == [("B0", t0 + 30_000 + 2 * MIN), ("A1", closed)]


def test_grouping_off_means_a_supply_loss_is_raised_at_once() -> None:
    e, sink = make({"cabinet_outage": {"enabled": False}})
    e.observe(event("A0", NIGHT, "supplyLoss"))
    assert [(c.device, c.active, c.at_ms) for c in sink.of("lamp_fault")] == [("A0", True, NIGHT)]
