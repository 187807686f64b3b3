"""The dead-letter log: every rejected message or reading, with topic, reason and payload (JSONL).

Size-capped and rotated by the standard library's RotatingFileHandler, so a flood of bad input can
never fill the disk. Writes go through the handler's own lock; one line per rejection.

A per-minute budget, per topic and in all, keeps one bad gateway from rotating everyone else's
records away: past it, records are counted (and every rejection still is, in metrics) and one
summary line per minute says how many were left out and from where. Records that hold the only
copy of an acknowledged reading (`keep`) are never left out: the device will not send it again.
"""

from __future__ import annotations

import base64
import logging
import logging.handlers
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson


class DeadLetterLog:
    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        backups: int,
        max_payload_chars: int,
        max_per_minute: int = 6000,
        per_topic_per_minute: int = 60,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_per_minute = max_per_minute
        self.per_topic_per_minute = per_topic_per_minute
        self._minute = int(time.monotonic() // 60)
        self._in_minute = 0
        self._per_topic: Counter[str] = Counter()
        self._left_out: Counter[str] = Counter()
        self.suppressed = 0  # records left out by the budget since start
        self.path = path
        self.max_payload_chars = max_payload_chars
        self._handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))
        self.written = 0

    def write(
        self,
        *,
        topic: str,
        reason: str,
        detail: str,
        payload: bytes | None = None,
        item: Any = None,
        index: int | None = None,
        keep: bool = False,
    ) -> None:
        """`keep`: the record holds the only copy of a reading we acknowledged (a point the store
        refused, a message our own code failed on), so the budget never leaves it out."""
        if not keep and not self._within_budget(topic):
            return
        record: dict[str, Any] = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "topic": topic,
            "reason": reason,
            "detail": detail,
        }
        if index is not None:
            record["index"] = index
        if item is not None:
            record["item"] = item
        if payload is not None:
            # A kept record is whole (mqtt.max_payload_bytes bounds it); others are cut short.
            limit = len(payload) if keep else self.max_payload_chars
            record["payload_bytes"] = len(payload)
            try:
                text = payload.decode("utf-8")
                record["payload"] = text[:limit]
            except UnicodeDecodeError:
                cut = payload[:limit]
                record["payload_b64"] = base64.b64encode(cut).decode("ascii")
            if len(payload) > limit:
                record["truncated"] = True
        try:
            line = orjson.dumps(record, default=str).decode()
        except TypeError:
            record.pop("item", None)
            line = orjson.dumps(record, default=str).decode()
        self._emit(line)

    def _within_budget(self, topic: str) -> bool:
        minute = int(time.monotonic() // 60)
        if minute != self._minute:
            self._summarise()
            self._minute = minute
            self._in_minute = 0
            self._per_topic.clear()
        # Past the total, topics are not even counted one by one: a flood of distinct topics
        # must not grow memory.
        over = self._in_minute >= self.max_per_minute
        if not over:
            self._per_topic[topic] += 1
            over = self._per_topic[topic] > self.per_topic_per_minute
        if over:
            if len(self._left_out) < 1000 or topic in self._left_out:
                self._left_out[topic] += 1
            else:
                self._left_out["(other topics)"] += 1
            self.suppressed += 1
            return False
        self._in_minute += 1
        return True

    def _summarise(self) -> None:
        if not self._left_out:
            return
        total = sum(self._left_out.values())
        record = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "topic": "",
            "reason": "suppressed",
            "detail": f"{total} dead-letter records left out in a minute by the budget "
            f"(deadletter.max_per_minute {self.max_per_minute}, "
            f"deadletter.per_topic_per_minute {self.per_topic_per_minute}); counted in metrics",
            "item": {"by_topic": dict(self._left_out.most_common(20))},
        }
        self._left_out.clear()
        self._emit(orjson.dumps(record).decode())

    def _emit(self, line: str) -> None:
        self._handler.emit(logging.makeLogRecord({"msg": line, "args": None}))
        self.written += 1

    def close(self) -> None:
        self._summarise()
        self._handler.close()
