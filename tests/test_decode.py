"""Decoding and validation (contract §1): each reading judged on its own, nothing crashes."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from devices.models import LampReading, WaterLevelReading
from ingest.decode import REASONS, Decoder

NOW = 1_795_600_000_000
# These tests judge topics and fields, many with tiny `ts` values: no age limit here (it has its
# own test below).
D = Decoder("city/jining", 256 * 1024, max_age_s=1e12)
LAMP = "city/jining/lamp/L1/telemetry"


def reasons(topic: str, payload: bytes) -> list[str]:
    return [r.reason for r in D.decode(topic, payload, NOW).rejected]


def test_a_lamp_reading_with_every_field() -> None:
    payload = orjson.dumps(
        {
            "ts": NOW - 1000,
            "seq": 3,
            "on": True,
            "dim": 50,
            "voltage": 221,
            "current": 0.4,
            "power": 75,
            "power_factor": 0.93,
            "energy": 1234,
            "temperature": -3,
            "rssi": -70,
            "firmware": "1.2",
        }
    )
    out = D.decode(LAMP, payload, NOW)
    assert out.rejected == []
    (obs,) = out.accepted
    assert (obs.kind, obs.device_id, obs.channel) == ("lamp", "L1", "telemetry")
    assert isinstance(obs.data, LampReading)
    assert obs.data.numeric_fields() == {
        "dim": 50.0,
        "voltage": 221.0,
        "current": 0.4,
        "power": 75.0,
        "power_factor": 0.93,
        "energy": 1234.0,
        "temperature": -3.0,
        "rssi": -70.0,
    }
    assert all(isinstance(v, float) for v in obs.data.numeric_fields().values())


def test_rfc3339_timestamps_with_offsets_become_utc_milliseconds() -> None:
    out = D.decode(LAMP, b'{"ts": "2026-07-15T21:30:00.250+08:00", "on": false}', NOW)
    assert out.accepted[0].data.ts == 1784122200250
    out = D.decode(LAMP, b'{"ts": "2026-07-15T13:30:00Z", "on": false}', NOW)
    assert out.accepted[0].data.ts == 1784122200000


def test_multi_level_prefix() -> None:
    d = Decoder("cn/shandong/jining", 1024, max_age_s=1e12)
    out = d.decode(
        "cn/shandong/jining/waterlevel/W-01.a/telemetry", b'{"ts": 1, "depth_cm": 3}', NOW
    )
    assert isinstance(out.accepted[0].data, WaterLevelReading)
    assert reasons("cn/shandong/lamp/L1/telemetry", b"{}") == ["bad_topic"]


def test_array_items_are_judged_on_their_own() -> None:
    payload = orjson.dumps(
        [
            {"ts": NOW - 3, "on": True},
            {"ts": NOW - 2, "on": True, "dim": 120},
            "x",
            {"ts": NOW - 1, "on": True},
        ]
    )
    out = D.decode(LAMP, payload, NOW)
    assert [o.data.ts for o in out.accepted] == [NOW - 3, NOW - 1]
    assert [(r.reason, r.index) for r in out.rejected] == [("out_of_range", 1), ("not_object", 2)]


def test_future_limit_is_five_minutes() -> None:
    ok = orjson.dumps({"ts": NOW + 299_000, "on": True})
    late = orjson.dumps({"ts": NOW + 301_000, "on": True})
    assert reasons(LAMP, ok) == []
    assert reasons(LAMP, late) == ["ts_in_future"]


def test_bools_are_not_numbers_and_strings_are_not_bools() -> None:
    assert reasons(LAMP, b'{"ts": 1, "on": 1}') == ["wrong_type"]
    assert reasons(LAMP, b'{"ts": 1, "on": true, "dim": true}') == ["wrong_type"]
    assert reasons(LAMP, b'{"ts": true, "on": true}') == ["bad_ts"]


def test_huge_numbers_overflowing_to_infinity_are_non_finite() -> None:
    assert reasons(LAMP, b'{"ts": 1, "on": true, "energy": 1e999}') == ["non_finite"]


def test_status_and_event_channels() -> None:
    assert D.decode("city/jining/lamp/L1/status", b"", NOW).ignored
    out = D.decode("city/jining/lamp/L1/status", b'{"online": false}', NOW)
    assert out.accepted[0].data.online is False  # type: ignore[union-attr]
    out = D.decode(
        "city/jining/waterlevel/W1/event",
        b'{"ts": 5, "event": "sensorFault", "state": "cleared"}',
        NOW,
    )
    assert out.accepted[0].data.raised is False  # type: ignore[union-attr]
    assert (
        reasons("city/jining/lamp/L1/event", b'{"ts": 5, "event": "x", "state": "raised", "y": 1}')
        == []
    )
    assert reasons(
        "city/jining/lamp/L1/event", b'[{"ts": 5, "event": "x", "state": "raised"}]'
    ) == ["not_object"]


@given(st.binary(max_size=300))
def test_no_bytes_crash_the_decoder(payload: bytes) -> None:
    for topic in (LAMP, "city/jining/waterlevel/W1/telemetry", "city/jining/lamp/L1/event"):
        out = D.decode(topic, payload, NOW)
        assert all(r.reason in REASONS for r in out.rejected)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.dictionaries(
        st.sampled_from(
            ["ts", "on", "dim", "voltage", "depth_cm", "battery", "event", "state", "online"]
        ),
        json_values,
    )
)
def test_no_json_object_crashes_the_decoder(body: dict[str, object]) -> None:
    try:
        payload = orjson.dumps(body)
    except TypeError:
        return
    for topic in (LAMP, "city/jining/waterlevel/W1/telemetry", "city/jining/lamp/L1/status"):
        out = D.decode(topic, payload, NOW)
        assert len(out.accepted) + len(out.rejected) == 1
        assert all(r.reason in REASONS for r in out.rejected)


def test_nan_anywhere_is_refused_even_in_an_ignored_field() -> None:
    assert reasons(LAMP, b'{"ts": 1, "on": true, "note": NaN}') == ["non_finite"]
    assert reasons(LAMP, b'{"ts": 1, "on": true, "note": -Infinity}') == ["non_finite"]
    assert reasons(LAMP, b'{"ts": 1, "on": true, "note": "NaN is fine in a string"}') == []


def test_the_services_own_alert_feed_is_ignored_not_dead_lettered() -> None:
    """{prefix}/alerts/{rule}/{device} matches the ingest's {prefix}/+/+/+ subscription."""
    out = D.decode("city/jining/alerts/lamp_fault/L1", b'{"id": "x", "state": "active"}', NOW)
    assert out.ignored and not out.rejected and not out.accepted
    assert D.decode("city/jining/alerts/lamp_fault/L1", b"", NOW).ignored  # closed: empty retained
    assert reasons("city/jining/alarms/x/telemetry", b"{}") == ["unknown_kind"]


def test_readings_older_than_max_age_are_too_old_and_late_ones_within_it_welcome() -> None:
    d = Decoder("city/jining", 256 * 1024, max_age_s=30 * 86400)
    day = 86_400_000
    late = d.decode(LAMP, b'{"ts": %d, "on": true}' % (NOW - 29 * day), NOW)
    assert late.rejected == [] and len(late.accepted) == 1
    # A firmware that sends seconds where milliseconds belong: 1970, not today.
    seconds = d.decode(LAMP, b'{"ts": %d, "on": true}' % (NOW // 1000), NOW)
    assert [r.reason for r in seconds.rejected] == ["ts_too_old"]
    assert "ingest.max_age" in seconds.rejected[0].detail
    old = d.decode(
        "city/jining/lamp/L1/event",
        b'{"ts": %d, "event": "doorOpen", "state": "raised"}' % (NOW - 31 * day),
        NOW,
    )
    assert [r.reason for r in old.rejected] == ["ts_too_old"]
    # A retained last will from a device gone for months is state, not a reading: still taken.
    will = d.decode("city/jining/lamp/L1/status", b'{"online": false, "ts": 1000}', NOW)
    assert will.rejected == [] and len(will.accepted) == 1


def test_max_age_is_read_from_config_as_a_duration() -> None:
    from streetwatch.config import load_settings

    assert load_settings(env={}).ingest.max_age == 30 * 86400
    got = load_settings(overrides={"ingest": {"max_age": "12h"}}, env={}).ingest.max_age
    assert got == 12 * 3600
    env = {"STREETWATCH_INGEST__MAX_AGE": "400d"}
    assert load_settings(env=env).ingest.max_age == 400 * 86400
    import pytest

    from streetwatch.errors import ConfigError

    with pytest.raises(ConfigError, match=r"ingest\.max_age"):
        load_settings(overrides={"ingest": {"max_age": "a month"}}, env={})


def test_device_ids_are_matched_whole() -> None:
    for bad in ("L1\n", "L1 ", " L1", "L1\r", "L" * 65):
        assert reasons(f"city/jining/lamp/{bad}/telemetry", b'{"ts": 1, "on": true}') == [
            "bad_device_id"
        ], repr(bad)
