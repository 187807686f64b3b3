"""One bad gateway cannot flood the dead-letter log and rotate everyone else's records away."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from devices.registry import load_registry
from ingest.deadletter import DeadLetterLog
from ingest.decode import Decoder
from ingest.metrics import IngestMetrics
from ingest.pipeline import Pipeline
from ingest.spool import Spool

TOPIC = "city/jining/lamp/GW-7/telemetry"


def records(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_text().splitlines()]


def make_pipeline(tmp_path: Path, **budget: int) -> tuple[Pipeline, DeadLetterLog]:
    dl = DeadLetterLog(
        tmp_path / "dl.jsonl", max_bytes=10**8, backups=1, max_payload_chars=1000, **budget
    )
    spool = Spool(tmp_path / "spool", max_bytes=10**9, segment_bytes=10**7, fsync_interval_s=0)
    spool.open()
    pipeline = Pipeline(
        Decoder("city/jining", 262_144), load_registry(None), spool, dl, IngestMetrics()
    )
    return pipeline, dl


def test_one_message_with_80000_bad_items_is_one_record_with_the_count(tmp_path: Path) -> None:
    pipeline, dl = make_pipeline(tmp_path)
    now = time.time_ns() // 1_000_000
    items = b",".join([b"1"] * 79_999 + [b'{"ts": %d, "on": true}' % now])
    records_out = pipeline.prepare(TOPIC, b"[" + items + b"]")
    assert len(records_out) == 1  # the one good reading is kept
    dl.close()
    (rec,) = records(tmp_path / "dl.jsonl")
    assert rec["topic"] == TOPIC and rec["reason"] == "not_object"
    item = rec["item"]
    assert isinstance(item, dict)
    assert item["rejected"] == 79_999 and item["by_reason"] == {"not_object": 79_999}
    assert len(item["first"]) == 20 and item["first"][0]["index"] == 0
    assert rec["payload_bytes"] > 150_000 and rec["truncated"] is True
    assert pipeline.metrics.rejected["not_object"] == 79_999  # every item still counted


def test_a_flood_from_one_topic_leaves_room_for_the_others(tmp_path: Path) -> None:
    pipeline, dl = make_pipeline(tmp_path, per_topic_per_minute=60, max_per_minute=1000)
    for _ in range(5000):
        pipeline.prepare(TOPIC, b"{oops")
    pipeline.prepare("city/jining/lamp/L2/telemetry", b"{bad too")
    assert pipeline.metrics.rejected["not_json"] == 5001
    dl._minute -= 1  # a minute later
    pipeline.prepare("city/jining/lamp/L3/telemetry", b"{and this")
    dl.close()
    recs = records(tmp_path / "dl.jsonl")
    by_topic = [r["topic"] for r in recs if r["reason"] == "not_json"]
    assert by_topic.count(TOPIC) == 60
    assert "city/jining/lamp/L2/telemetry" in by_topic
    assert "city/jining/lamp/L3/telemetry" in by_topic
    (summary,) = [r for r in recs if r["reason"] == "suppressed"]
    assert summary["item"] == {"by_topic": {TOPIC: 4940}}
    assert dl.suppressed == 4940


def test_the_total_budget_holds_against_many_topics(tmp_path: Path) -> None:
    pipeline, dl = make_pipeline(tmp_path, per_topic_per_minute=60, max_per_minute=100)
    for i in range(300):
        pipeline.prepare(f"city/jining/lamp/X{i}/telemetry", b"{oops")
    dl.close()
    recs = records(tmp_path / "dl.jsonl")
    assert len([r for r in recs if r["reason"] == "not_json"]) == 100
    assert dl.suppressed == 200


def test_a_message_our_code_failed_on_is_kept_whole_past_the_budget(tmp_path: Path) -> None:
    # Acknowledged, and in no store: the dead-letter record is the only copy of its readings.
    pipeline, dl = make_pipeline(tmp_path, per_topic_per_minute=1, max_per_minute=1)
    now = time.time_ns() // 1_000_000
    big = b"[" + b",".join(b'{"ts": %d, "on": true}' % (now - i) for i in range(2000)) + b"]"
    for _ in range(3):
        pipeline.internal_error(TOPIC, big, KeyError("a bug of ours"))
    dl.close()
    kept = [r for r in records(tmp_path / "dl.jsonl") if r["reason"] == "internal_error"]
    assert len(kept) == 3
    assert all(r["payload"] == big.decode() and "truncated" not in r for r in kept)
