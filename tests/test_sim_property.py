"""Property: whatever the flags, faults and seed, every message of a generated run is accepted by the
ingest's own decoder, or is a deliberately broken one refused for exactly its intended reasons."""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.decode import Decoder
from simulator.cli import build_plan, check_modes
from simulator.faults import FAULT_KINDS
from simulator.stream import generate
from streetwatch.cli import build_parser

HOURS = 4

# Parameters worth varying per kind (the rest take their defaults); each value is valid.
PARAMS: dict[str, st.SearchStrategy[str]] = {
    "low_power": st.sampled_from(["", ",factor=0.05", ",factor=0.95"]),
    "over_voltage": st.sampled_from(["", ",volts=300", ",volts=231"]),
    "under_voltage": st.sampled_from(["", ",volts=150"]),
    "poor_power_factor": st.sampled_from(["", ",pf=0.1"]),
    "cabinet_out": st.sampled_from(["", ",gasp=false"]),
    "stuck_sensor": st.sampled_from(["", ",depth_cm=0", ",depth_cm=500"]),
    "low_battery": st.sampled_from(["", ",level=0,over=0s", ",level=19,over=30m"]),
    "event": st.sampled_from(["", ",name=leakageDetected", ",name=x_1"]),
    "malformed": st.sampled_from(["", ",reason=payload_too_large", ",count=3,every=10s"]),
    "clock_skew": st.sampled_from(
        [",by=+4m59s", ",by=+5m", ",by=+5m1s", ",by=-5m", ",by=-3h", ",by=+2h"]
    ),
    "duplicate": st.sampled_from(["", ",copies=3", ",copies=1,after=10m"]),
    "out_of_order": st.sampled_from(["", ",by=1s", ",by=2h"]),
    "seq_reset": st.sampled_from(["", ",every=30m"]),
    "reconnect_storm": st.sampled_from(["", ",within=0s", ",within=1h"]),
    "mixed_array": st.sampled_from(
        ["", ",size=2,bad=1", ",size=10,bad=9,reason=not_object", ",size=3,reason=ts_in_future"]
    ),
    "bad_status": st.sampled_from(["", ",reason=not_json|wrong_type"]),
}


@st.composite
def fault(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(sorted(FAULT_KINDS)))
    at = draw(st.integers(0, HOURS * 60 - 2))
    length = draw(st.one_of(st.none(), st.integers(1, HOURS * 60)))
    if kind == "gateway_down":
        length = draw(st.integers(1, HOURS * 60 - at))
    target = ":all" if kind == "reconnect_storm" else ""
    if FAULT_KINDS[kind][0] in {"device", "waterlevel"} and draw(st.booleans()):
        target = ":W-JAQ-01"  # the first point of every generated fleet: faults pile up on it
    span = "" if length is None else f"+{length}m"
    params = draw(PARAMS[kind]) if kind in PARAMS else ""
    return f"{kind}{target}@{at}m{span}{params}"


@st.composite
def argv(draw: st.DrawFn) -> list[str]:
    args = [
        "simulate",
        "--dry-run",
        "--lamps", str(draw(st.integers(3, 40))),
        "--waterlevel", str(draw(st.integers(1, 5))),
        "--duration", f"{HOURS}h",
        "--seed", str(draw(st.integers(0, 2**31))),
        "--start", draw(st.sampled_from(
            ["2026-07-15T18:00+08:00", "2026-12-21T16:00+08:00", "2026-03-20T04:00+08:00"]
        )),
        "--report-interval", draw(st.sampled_from(["300s", "60s,300s,15m", "30s..10m", "1s..2m"])),
        "--max-payload-bytes", str(draw(st.sampled_from([1024, 4096, 262_144]))),
        "--dimming", draw(st.sampled_from(["", "00:00-04:30=50", "22:00-06:00=0;06:00-07:00=100"])),
    ]  # fmt: skip
    for text in draw(st.lists(fault(), max_size=6)):
        args += ["--fault", text]
    if draw(st.booleans()):
        at = draw(st.integers(0, HOURS * 60 - 30))
        args += [
            "--storm",
            f"{at}m+{draw(st.integers(10, 180))}m,total={draw(st.integers(0, 200))}",
        ]
    return args


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(argv())
def test_every_message_is_accepted_or_refused_for_its_intended_reasons(args: list[str]) -> None:
    parsed = build_parser().parse_args(args)
    check_modes(parsed)
    plan, _ = build_plan(parsed)
    decoder = Decoder(plan.prefix, plan.max_payload_bytes)
    last = -1
    for m in generate(plan):
        assert m.offset_ms >= last
        last = m.offset_ms
        got = decoder.decode(m.topic, m.payload, plan.start_ms + m.offset_ms)
        reasons = Counter(r.reason for r in got.rejected)
        assert reasons == Counter(m.intent), (m.topic, m.payload[:300], got.rejected, m.intent)
        if not m.intent:
            assert got.accepted, (m.topic, m.payload[:300])
        if m.topic.endswith("/status") and not m.intent:
            assert m.retain
