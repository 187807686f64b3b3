"""Crew notices through the real alert store, the real outbox and real receivers: apprise `json://` to
a local HTTP server and `mailto://` to a local SMTP server (aiosmtpd)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from alerts.model import wall_ms
from notify.receiver import JsonReceiver
from notify.sender import message_bytes
from tests.liveapp import LiveApp
from tests.notify_support import REGISTRY, SmtpServer, json_receiver, on_path

FAST = {"retry_min_s": 0.2, "retry_max_s": 1.0, "digest_wait_s": 0.5}


def app(tmp_path: Path, notify: dict[str, Any]) -> LiveApp:
    return LiveApp(
        tmp_path / "data",
        overrides={"notify": {**FAST, **notify}},
        registry_csv=REGISTRY,
    )


def raise_(live: LiveApp, rule: str, device: str, **kw: Any) -> Any:
    kw.setdefault("at", wall_ms())
    kw.setdefault("kind", "waterlevel" if device.startswith("WL") else "lamp")
    return live.raise_alert(rule=rule, device=device, **kw)


def test_routing_by_road_cabinet_and_severity_with_chinese_text(tmp_path: Path) -> None:
    with json_receiver() as rx, SmtpServer() as smtp:
        crews = [
            {"name": "洸河路维修班", "urls": [rx.url("ghl")], "roads": ["洸河路"]},
            {"name": "红星路配电班", "urls": [rx.url("hxl")], "cabinets": ["C-HXL-1"]},
            {
                "name": "防汛值班",
                "urls": [smtp.url()],
                "kinds": ["waterlevel"],
                "min_severity": "critical",
            },
        ]
        notify = {"crews": crews, "fallback": [rx.url("fallback")], "base_url": "http://cc.local"}
        with app(tmp_path, notify) as live:
            dark = raise_(live, "lamp_dark", "L-GHL-014", severity="major", message="dark")
            other = raise_(live, "lamp_dark", "L-HXL-001", severity="major", message="dark")
            water = raise_(live, "water_level", "WL-017", severity="minor", level=1, value=12.0)
            rx.wait(lambda got: len(got) >= 3)
            # The water rises to critical: the flood crew takes it now (e-mail), as a notice "up".
            raise_(live, "water_level", "WL-017", severity="critical", level=3, value=45.0)
            smtp.wait(lambda got: len(got) >= 1)
            time.sleep(1.0)  # nothing else may arrive

        by_path = Counter(n["path"] for n in rx.received)
        assert by_path == {"/ghl": 1, "/hxl": 1, "/fallback": 1}
        ghl = next(n for n in rx.received if n["path"] == "/ghl")
        assert ghl["title"] == "【重要】洸河路 L-GHL-014 路灯不亮"
        for text in ("洸河路", "L-GHL-014", "C-GHL-1", "35.41234, 116.58765", dark.id):
            assert text in ghl["message"]
        assert "position=116.587650,35.412340" in ghl["message"]  # the map link
        assert f"http://cc.local/?alert={dark.id}" in ghl["message"]
        assert other.id in next(n for n in rx.received if n["path"] == "/hxl")["message"]
        fallback = next(n for n in rx.received if n["path"] == "/fallback")
        assert water.id in fallback["message"] and "运河路下穿" in fallback["message"]
        [mail] = smtp.messages
        assert mail["subject"].startswith("【告警升级·紧急】运河路 WL-017 积水超限")
        assert water.id in mail["body"] and "45" in mail["body"] and "35.42000" in mail["body"]


def test_ack_dispatch_close_make_no_notice_clear_makes_one(tmp_path: Path) -> None:
    with json_receiver() as rx:
        notify = {"crews": [{"name": "A", "urls": [rx.url()]}]}
        with app(tmp_path, notify) as live:
            alert = raise_(live, "lamp_fault", "L-GHL-014", severity="major")
            rx.wait(lambda got: len(got) == 1)
            live.store.ack(alert.id, "control")
            live.store.dispatch(alert.id, "control", assignee="A")
            raise_(live, "lamp_fault", "L-GHL-014", severity="major", active=False)
            rx.wait(lambda got: len(got) == 2)
            live.store.close(alert.id, "control")
            time.sleep(1.0)
        assert [n["title"][:4] for n in rx.received] == ["【重要】", "【恢复】"]
        cleared = rx.received[1]["message"]
        assert "\n" not in cleared and cleared.startswith("恢复：洸河路 L-GHL-014 路灯故障")
        assert alert.id in cleared


def test_receiver_down_then_up_every_notice_once(tmp_path: Path) -> None:
    rx = json_receiver()  # not started: the port is closed
    notify = {"crews": [{"name": "A", "urls": [rx.url()]}], "max_per_minute": 100}
    with app(tmp_path, notify) as live:
        ids = [raise_(live, "lamp_dark", f"L-GHL-01{i}", road="洸河路").id for i in range(5)]
        time.sleep(3.0)  # several failed attempts with backoff
        failed = sum(w.failed for w in live.service.notifier.workers.values())
        assert failed >= 2
        up = time.monotonic()
        with rx:
            rx.wait(lambda got: len(got) >= 5)
            took = time.monotonic() - up
            time.sleep(2.0)
        rows = live.service.notifier.outbox.all_rows()
    ids_seen = Counter(i for n in rx.received for i in ids if i in n["message"])
    print(
        f"\nreceiver down then up: delivered {len(ids_seen)}/5, duplicates"
        f" {sum(ids_seen.values()) - len(ids_seen)}, {failed} failed attempts while down,"
        f" all delivered {took:.2f} s after it came back"
    )
    assert ids_seen == dict.fromkeys(ids, 1)
    assert {r["state"] for r in rows} == {"sent"}


def test_a_burst_of_50_is_capped_per_minute_and_every_alert_named(tmp_path: Path) -> None:
    with json_receiver() as rx:
        notify = {
            "crews": [{"name": "洸河路班", "urls": [rx.url()]}],
            "max_per_minute": 6,
            "digest_wait_s": 2.0,
        }
        with app(tmp_path, notify) as live:
            devices = [f"L-GHL-{i:03d}" for i in range(100, 150)]
            for device in devices:
                raise_(live, "lamp_dark", device, road="洸河路", severity="major")
            rx.wait(lambda got: all(any(d in n["message"] for n in got) for d in devices), 60)
            time.sleep(2.0)
            rows = live.service.notifier.outbox.all_rows()
    assert len(rx.received) <= 6
    text = "\n".join(n["title"] + "\n" + n["message"] for n in rx.received)
    assert all(d in text for d in devices)
    digests = [n for n in rx.received if "条新告警" in n["title"]]
    assert digests and digests[-1]["title"].startswith("洸河路 ")
    assert len(rows) == 50 and {r["state"] for r in rows} == {"sent"}
    print(f"\nburst of 50: {len(rx.received)} messages, {len(digests)} digest(s), all 50 named")


def test_a_dead_channel_never_delays_another_crew(tmp_path: Path) -> None:
    dead = JsonReceiver(json_receiver().port)  # never started
    with json_receiver() as rx:
        notify = {
            "crews": [
                {"name": "dead", "urls": [dead.url()], "roads": ["洸河路"]},
                {"name": "live", "urls": [rx.url()], "roads": ["洸河路"]},
            ],
            "retry_min_s": 30.0,
            "retry_max_s": 60.0,
        }
        with app(tmp_path, notify) as live:
            for i in range(3):
                raise_(live, "lamp_dark", f"L-GHL-02{i}", road="洸河路")
                rx.wait(lambda got, n=i + 1: len(got) == n, 10)
            stats = live.service.notifier.outbox.stats()
    assert stats[("dead", next(k[1] for k in stats if k[0] == "dead"))][0] == 3


def test_a_channel_that_stays_down_is_given_up_and_raises_an_alert(tmp_path: Path) -> None:
    dead = JsonReceiver(json_receiver().port)
    with json_receiver() as rx:
        notify = {
            "crews": [{"name": "dead", "urls": [dead.url()], "roads": ["洸河路"]}],
            "fallback": [rx.url()],
            "give_up_after_s": 1.0,
        }
        with app(tmp_path, notify) as live:
            raise_(live, "lamp_dark", "L-GHL-014")
            rx.wait(lambda got: any("通知通道不通" in n["title"] for n in got), 30)
            down = [a for a in live.store.open_alerts() if a.rule == "notify_channel_down"]
            rows = live.service.notifier.outbox.all_rows()
            assert len(down) == 1 and "dead" in down[0].message
            assert [r["state"] for r in rows if r["crew"] == "dead"] == ["given_up"]
            # The channel comes back: the next notice goes through and the channel alert clears.
            with dead:
                raise_(live, "lamp_dark", "L-GHL-015")
                dead.wait(lambda got: any("L-GHL-015" in n["message"] for n in got), 30)
                deadline = time.monotonic() + 10
                while live.store.get(down[0].id).state != "cleared":  # type: ignore[union-attr]
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            # The given-up notice is not sent late (it may be a day old by then).
            assert not any("L-GHL-014" in n["message"] for n in dead.received)


def test_metrics_per_crew_and_channel(tmp_path: Path) -> None:
    import httpx

    with json_receiver() as rx:
        notify = {"crews": [{"name": "A", "urls": [rx.url()]}]}
        with app(tmp_path, notify) as live:
            raise_(live, "lamp_dark", "L-GHL-014")
            rx.wait(lambda got: len(got) == 1)
            text = httpx.get(f"{live.url}/metrics").text
    sent = [line for line in text.splitlines() if line.startswith("streetwatch_notify_sent_total")]
    assert sent and 'crew="A"' in sent[0] and sent[0].endswith(" 1.0")
    assert "streetwatch_notify_oldest_queued_age_seconds" in text
    assert "streetwatch_notify_queued{" in text


@pytest.mark.parametrize("language", ["en"])
def test_english_notices(tmp_path: Path, language: str) -> None:
    with json_receiver() as rx:
        notify = {"crews": [{"name": "A", "urls": [rx.url()]}], "language": language}
        with app(tmp_path, notify) as live:
            raise_(live, "lamp_dark", "L-GHL-014", severity="critical")
            rx.wait(lambda got: len(got) == 1)
    assert rx.received[0]["title"] == "【CRITICAL】洸河路 L-GHL-014 lamp dark at night"
    assert "Coordinates: 35.41234, 116.58765" in rx.received[0]["message"]


def test_markup_in_registry_text_reaches_the_crew_as_text(tmp_path: Path) -> None:
    evil = "<img src=x onerror=alert(1)>路"
    registry = REGISTRY + f"L-EVIL,lamp,{evil},main,C9,150,,35.1,116.1,300\n"
    with json_receiver() as rx:
        live = LiveApp(
            tmp_path / "data",
            overrides={"notify": {**FAST, "crews": [{"name": "A", "urls": [rx.url()]}]}},
            registry_csv=registry,
        )
        with live:
            raise_(live, "lamp_fault", "L-EVIL", message="<script>x()</script>")
            rx.wait(lambda got: len(got) == 1)
    assert evil in rx.received[0]["title"] and "<script>x()</script>" in rx.received[0]["message"]
    _ = on_path  # (helper kept for other tests)


def test_reminder_and_escalation_notices_reach_the_crew_and_escalate_to(tmp_path: Path) -> None:
    with json_receiver() as rx:
        notify = {
            "crews": [{"name": "A", "urls": [rx.url("crew")]}],
            "escalate_to": [rx.url("boss")],
            "max_per_minute": 100,
        }
        live = LiveApp(
            tmp_path / "data",
            overrides={"notify": {**FAST, **notify}, "alerts": {"sla": {"enabled": True}}},
            registry_csv=REGISTRY,
        )
        with live:
            alert = raise_(live, "lamp_dark", "L-GHL-014", severity="critical")
            rx.wait(lambda got: len(got) == 1)
            due = alert.response_due
            assert due is not None
            live.call(lambda: live.store.sweep_sla(due - 1))  # half-way: a reminder
            rx.wait(lambda got: len(got) == 2)
            live.call(lambda: live.store.sweep_sla(due + 1))  # passed: overdue, escalated
            rx.wait(lambda got: sum(n["path"] == "/boss" for n in got) >= 1)
            time.sleep(1.0)
    crew = [n["title"] for n in rx.received if n["path"] == "/crew"]
    boss = [n["title"] for n in rx.received if n["path"] == "/boss"]
    assert crew[0].startswith("【紧急】") and crew[1].startswith("【催办提醒·紧急】")
    assert any(t.startswith("【超时升级·紧急】") for t in crew[2:])
    assert boss and all(t.startswith("【超时升级·紧急】") for t in boss)
    assert all(alert.id in n["message"] for n in rx.received)


def test_a_digest_never_outgrows_the_channels_message_size(tmp_path: Path) -> None:
    # Long road names (the registry's text) make each digest line about 1 KB: 40 of them are more
    # than one message to this channel may carry (json:// as apprise knows it: 32768), and a
    # receiver that refuses a bigger message refuses the same digest on every retry.
    road = "洸河路" + "东" * 300
    with JsonReceiver(json_receiver().port, max_bytes=32768) as rx:
        notify = {
            "crews": [{"name": "洸河路班", "urls": [rx.url()]}],
            "max_per_minute": 2,
            "digest_wait_s": 0.5,
        }
        with app(tmp_path, notify) as live:
            devices = [f"L-GHL-{i:03d}" for i in range(100, 140)]
            for device in devices:
                raise_(live, "lamp_dark", device, road=road, severity="major")
            rx.wait(lambda got: all(any(d in n["message"] for n in got) for d in devices), 150)
            outbox = live.service.notifier.outbox
            deadline = time.monotonic() + 10
            while any(r["state"] == "queued" for r in outbox.all_rows()):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            rows = outbox.all_rows()
    assert rx.refused == 0
    text = "\n".join(n["message"] for n in rx.received)
    assert all(text.count(d) == 1 for d in devices)
    assert len(rows) == 40 and {r["state"] for r in rows} == {"sent"}
    print(f"\n40 long-named alerts: {len(rx.received)} messages, each within the channel's size")
    # The sizes apprise knows for the chat bots crews use (WeCom counts bytes).
    assert message_bytes("wecombot://" + "k" * 24) == 2048
    assert message_bytes("dingtalk://" + "t" * 64) < 20000


def test_a_notice_too_long_for_its_channel_is_cut_not_stuck(tmp_path: Path) -> None:
    # A road name longer than one message of the channel may carry: refused on every retry, it
    # held up every later notice of the channel until it was given up a day later.
    road = "洸河路" + "东" * 12000
    with JsonReceiver(json_receiver().port, max_bytes=32768) as rx:
        notify = {"crews": [{"name": "洸河路班", "urls": [rx.url()]}]}
        with app(tmp_path, notify) as live:
            long = raise_(live, "lamp_dark", "L-GHL-014", road=road, message="灯" * 12000)
            after = raise_(live, "lamp_dark", "L-GHL-015", road="洸河路", severity="major")
            rx.wait(lambda got: any(after.id in n["message"] for n in got), 30)
            rx.wait(lambda got: any(long.id in n["message"] for n in got), 30)
    assert rx.refused == 0
    cut = next(n for n in rx.received if long.id in n["message"])
    assert "L-GHL-014" in cut["message"] and "…" in cut["message"]
    assert f"告警编号：{long.id}" in cut["message"].splitlines()


def test_a_changed_crew_url_gets_the_notices_queued_for_the_old_one(tmp_path: Path) -> None:
    # The crew's webhook was replaced (a new key) while notices waited for the old one: after the
    # restart they go to the crew's new URL, once, and nothing waits for a URL no longer there.
    dead = JsonReceiver(json_receiver().port)  # the old URL: never answers
    with json_receiver() as rx:
        first = {"crews": [{"name": "洸河路班", "urls": [dead.url("old")]}]}
        with app(tmp_path, first) as live:
            a = raise_(live, "lamp_dark", "L-GHL-014", road="洸河路", severity="major")
            b = raise_(live, "lamp_dark", "L-GHL-015", road="洸河路", severity="major")
        second = {"crews": [{"name": "洸河路班", "urls": [rx.url("new"), rx.url("also")]}]}
        with app(tmp_path, second) as live:
            want = {(p, i) for p in ("/new", "/also") for i in (a.id, b.id)}
            rx.wait(
                lambda got: (
                    want <= {(n["path"], i) for n in got for i in (a.id, b.id) if i in n["message"]}
                ),
                30,
            )
            time.sleep(1.0)
            outbox = live.service.notifier.outbox
            rows = outbox.all_rows()
            stats = outbox.stats()
    got = Counter((n["path"], i) for n in rx.received for i in (a.id, b.id) if i in n["message"])
    assert got == dict.fromkeys(want, 1)
    assert stats == {}  # nothing left queued, for the old URL or any other
    old = [r for r in rows if r["channel"].startswith("json-") and r["state"] == "given_up"]
    assert len(old) == 2


def test_the_per_minute_cap_holds_across_a_restart(tmp_path: Path) -> None:
    # A service restarted (or crash-looping) within the minute must not start a fresh minute's
    # worth of messages to the same crew.
    with json_receiver() as rx:
        notify = {"crews": [{"name": "洸河路班", "urls": [rx.url()]}], "max_per_minute": 2}
        with app(tmp_path, notify) as live:
            first = [raise_(live, "lamp_dark", f"L-GHL-{i:03d}") for i in range(100, 102)]
            rx.wait(lambda got: len(got) == 2, 30)
        with app(tmp_path, notify) as live:
            later = [raise_(live, "lamp_dark", f"L-GHL-{i:03d}") for i in range(200, 203)]
            time.sleep(5.0)
            within_the_minute = len(rx.received)
            names = [a.device for a in first + later]  # a digest names alerts by device
            rx.wait(lambda got: all(any(d in n["message"] for n in got) for d in names), 120)
    assert within_the_minute == 2
    assert len(rx.received) <= 4


def test_a_stop_during_a_send_records_it_and_a_restart_sends_it_not_again(tmp_path: Path) -> None:
    # The receiver takes a second to answer; the service stops (SIGTERM, a deploy) meanwhile.
    slow = JsonReceiver(json_receiver().port, on_notice=lambda n: time.sleep(1.5))
    with slow as rx:
        notify = {"crews": [{"name": "洸河路班", "urls": [rx.url()]}]}
        with app(tmp_path, notify) as live:
            alert = raise_(live, "lamp_dark", "L-GHL-014")
            rx.wait(lambda got: len(got) == 1)  # in the receiver, not answered yet
        with app(tmp_path, notify) as live:
            time.sleep(3.0)  # a restart that sent it again would have done so by now
            rows = live.service.notifier.outbox.all_rows()
    assert sum(alert.id in n["message"] for n in rx.received) == 1
    assert [r["state"] for r in rows] == ["sent"]
