"""Fuzz the whole ingest edge: arbitrary topics and bytes, and near-valid JSON readings.

Whatever arrives, no exception escapes the decoder, every rejection has a known reason, and what
is accepted becomes exactly one line of line protocol with the contract's measurement, tags and
fields: input can never add a tag, a field or a line.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.kinds import KINDS
from devices.registry import Device, Registry
from ingest.decode import REASONS, Decoder
from ingest.lineprotocol import LineFormatter
from tests.test_lineprotocol import split_influx, tag_text

NOW = 1_795_600_000_000
DECODER = Decoder("city/jining", 256 * 1024)

FIELDS = {
    "lamp": {"on", *KINDS["lamp"].reading_model.number_fields},
    "waterlevel": set(KINDS["waterlevel"].reading_model.number_fields),
    "device_event": {"raised"},
}
TAGS = {"lamp": {"device", "road", "cabinet"}, "waterlevel": {"device", "road", "point"}}
TAGS["device_event"] = {"device", "kind", "event"}

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
good_ts = st.integers(min_value=NOW - 40 * 86_400_000, max_value=NOW + 10 * 60_000)
ts_values = st.one_of(
    good_ts,
    good_ts,
    good_ts,
    st.integers(),
    st.floats(allow_nan=False),
    st.sampled_from(["2026-11-26T08:00:00+08:00", "2026-11-26T00:00:00Z", "yesterday", ""]),
    json_values,
)
valid_id = st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)
device_ids = st.one_of(valid_id, valid_id, st.text(max_size=70))


RANGES = {"power_factor": (0, 1), "rssi": (-150, 0), "temperature": (-50, 150), "current": (0, 20)}


def _in_range(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=lo, max_value=hi, allow_nan=False)


def _value(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes anything JSON can hold."""
    return st.one_of(good, good, good, json_values)


def _reading(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Half the time a reading that should be accepted; otherwise with any value anywhere."""
    model = KINDS[kind].reading_model
    live_ts = st.integers(min_value=NOW - 29 * 86_400_000, max_value=NOW + 4 * 60_000)

    def build(mutate: bool) -> st.SearchStrategy[dict[str, Any]]:
        wrap = _value if mutate else (lambda good: good)
        required: dict[str, st.SearchStrategy[Any]] = (
            {"on": wrap(st.booleans())} if kind == "lamp" else {"depth_cm": wrap(_in_range(0, 500))}
        )
        optional = {
            name: wrap(_in_range(*RANGES.get(name, (0, 100))))
            for name in model.number_fields
            if name not in required
        }
        ts = ts_values if mutate else live_ts
        good = st.fixed_dictionaries({"ts": ts, **required}, optional=optional)
        extra = st.dictionaries(st.text(max_size=12), json_values, max_size=3)
        return st.tuples(good, extra).map(lambda pair: {**pair[1], **pair[0]})

    return st.one_of(build(False), build(True))


near_valid = st.sampled_from(["lamp", "waterlevel"]).flatmap(
    lambda kind: st.tuples(
        st.just(kind),
        device_ids,
        st.one_of(_reading(kind), st.lists(_reading(kind), max_size=5)),
    )
)

events = st.tuples(
    st.sampled_from(["lamp", "waterlevel"]),
    device_ids,
    st.fixed_dictionaries(
        {
            "ts": ts_values,
            "event": st.one_of(st.sampled_from(["doorOpen", "lampFailure"]), st.text(max_size=70)),
            "state": st.one_of(st.sampled_from(["raised", "cleared"]), json_values),
        }
    ),
)


def registry_with(road: str, cabinet: str, point: str) -> Registry:
    return Registry(
        [
            Device("L1", "lamp", road=road, cabinet=cabinet),
            Device("W1", "waterlevel", road=road, point=point),
        ]
    )


def check(topic: str, payload: bytes, lines: LineFormatter) -> None:
    out = DECODER.decode(topic, payload, NOW)
    assert all(r.reason in REASONS for r in out.rejected)
    for obs in out.accepted:
        line = lines.line(obs)
        if line is None:
            assert obs.channel == "status"
            continue
        text = line.decode()
        assert "\n" not in text and "\r" not in text
        tags, fields, ts = split_influx(text)
        measurement = tags[0]
        assert measurement in FIELDS
        keys = {t.split("=", 1)[0] for t in tags[1:]}
        assert keys <= TAGS[measurement] and "device" in keys
        assert f"device={obs.device_id}" in tags[1:]
        names = {f.split("=", 1)[0] for f in fields.split(",")}
        assert names <= FIELDS[measurement]
        assert int(ts) == obs.data.ts and NOW - 30 * 86_400_000 <= int(ts) <= NOW + 5 * 60_000


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(topic=st.text(max_size=80), payload=st.binary(max_size=200))
def test_arbitrary_topics_and_bytes(topic: str, payload: bytes) -> None:
    check(topic, payload, LineFormatter(Registry()))
    check("city/jining/" + topic, payload, LineFormatter(Registry()))


@FUZZ
@given(case=near_valid, road=tag_text, cabinet=tag_text, point=tag_text)
def test_near_valid_readings(
    case: tuple[str, str, Any], road: str, cabinet: str, point: str
) -> None:
    kind, device, body = case
    lines = LineFormatter(registry_with(road, cabinet, point))
    payload = _dumps(body)
    check(f"city/jining/{kind}/{device}/telemetry", payload, lines)
    registered = "L1" if kind == "lamp" else "W1"
    check(f"city/jining/{kind}/{registered}/telemetry", payload, lines)


@FUZZ
@given(case=events, status=json_values)
def test_near_valid_events_and_status(case: tuple[str, str, Any], status: Any) -> None:
    kind, device, body = case
    lines = LineFormatter(Registry())
    check(f"city/jining/{kind}/{device}/event", _dumps(body), lines)
    check(f"city/jining/{kind}/{device}/status", _dumps({"online": status}), lines)


def _dumps(value: Any) -> bytes:
    # The standard library writes integers of any size (a device may too).
    return json.dumps(value, ensure_ascii=False).encode()
