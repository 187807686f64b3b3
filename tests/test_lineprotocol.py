"""Line protocol: no tag value may end a tag, add a tag or field, or start a new line."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.lineprotocol import escape_tag, to_line
from tests.servers import InfluxDB

SPECIAL = ",= \\\"'\n\r\t洸河路=,"
tag_text = st.text(
    alphabet=st.one_of(st.sampled_from(list(SPECIAL)), st.characters(codec="utf-8")),
    min_size=1,
    max_size=20,
).filter(lambda s: s.strip(" \n\r\t") != "" and "\x00" not in s)


def split_influx(line: str) -> tuple[list[str], str, str]:
    """Split like InfluxDB 1.x's scanner: a backslash always swallows the next character."""
    sections: list[str] = []
    cur = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            cur.append(line[i : i + 2])
            i += 2
            continue
        if ch == " " and len(sections) < 2:
            sections.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    sections.append("".join(cur))
    assert len(sections) == 3, sections
    key, fields, ts = sections
    tags = []
    cur = []
    i = 0
    while i < len(key):
        if key[i] == "\\" and i + 1 < len(key):
            cur.append(key[i : i + 2])
            i += 2
            continue
        if key[i] == ",":
            tags.append("".join(cur))
            cur = []
        else:
            cur.append(key[i])
        i += 1
    tags.append("".join(cur))
    return tags, fields, ts


def expected_value(text: str) -> str:
    """What InfluxDB 1.x stores for a tag value we escaped."""
    out = escape_tag(text)
    return out.replace("\\,", ",").replace("\\ ", " ").replace("\\=", "=")


@given(road=tag_text, cabinet=tag_text)
def test_tag_values_never_add_tags_fields_or_lines(road: str, cabinet: str) -> None:
    line = to_line(("lamp", {"device": "L1", "road": road, "cabinet": cabinet}, {"on": True}, 1))
    assert "\n" not in line and "\r" not in line
    tags, fields, ts = split_influx(line)
    assert len(tags) == 4  # measurement + cabinet, device, road
    assert tags[0] == "lamp"
    assert fields == "on=true" and ts == "1"


def test_numbers_are_always_floats_and_bools_stay_bools() -> None:
    line = to_line(("lamp", {"device": "L1"}, {"on": False, "voltage": 220, "dim": 50.5}, 5))
    assert line == "lamp,device=L1 on=false,voltage=220.0,dim=50.5 5"


@pytest.mark.integration
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(tag_text, min_size=1, max_size=20, unique_by=expected_value))
def test_round_trip_through_real_influxdb(shared_influxdb: InfluxDB, values: list[str]) -> None:
    db = "lp_roundtrip"
    shared_influxdb.create_database(db)
    shared_influxdb.query('DROP SERIES FROM "lamp"', database=db)
    lines = [
        to_line(("lamp", {"device": f"D{i}", "road": value}, {"on": True}, 1_000 + i))
        for i, value in enumerate(values)
    ]
    req = urllib.request.Request(
        f"{shared_influxdb.url}/write?db={db}&precision=ms",
        data="\n".join(lines).encode(),
        method="POST",
    )
    try:
        urllib.request.urlopen(req, timeout=10).read()
    except urllib.error.HTTPError as exc:  # pragma: no cover - shows the server's reason
        raise AssertionError(exc.read().decode()) from exc
    rows = shared_influxdb.rows('SELECT * FROM "lamp"', database=db)
    assert len(rows) == len(values)
    for row in rows:
        i = int(row["device"][1:])
        assert row["road"] == expected_value(values[i])
        assert set(row) == {"time", "device", "road", "on"}
