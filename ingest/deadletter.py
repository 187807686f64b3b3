"""The dead-letter log: every rejected message or reading, with topic, reason and payload (JSONL).

Size-capped and rotated by the standard library's RotatingFileHandler, so a flood of bad input can
never fill the disk. Writes go through the handler's own lock; one line per rejection.
"""

from __future__ import annotations

import base64
import logging
import logging.handlers
import time
from pathlib import Path
from typing import Any

import orjson


class DeadLetterLog:
    def __init__(self, path: Path, *, max_bytes: int, backups: int, max_payload_chars: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
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
    ) -> None:
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
            record["payload_bytes"] = len(payload)
            try:
                text = payload.decode("utf-8")
                record["payload"] = text[: self.max_payload_chars]
            except UnicodeDecodeError:
                cut = payload[: self.max_payload_chars]
                record["payload_b64"] = base64.b64encode(cut).decode("ascii")
            if len(payload) > self.max_payload_chars:
                record["truncated"] = True
        try:
            line = orjson.dumps(record, default=str).decode()
        except TypeError:
            record.pop("item", None)
            line = orjson.dumps(record, default=str).decode()
        self._handler.emit(logging.makeLogRecord({"msg": line, "args": None}))
        self.written += 1

    def close(self) -> None:
        self._handler.close()
