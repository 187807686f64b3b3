"""The channel worker's decisions (give up, digest) on a real outbox file, with a recording sender."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from notify.config import NotifyConfig
from notify.outbox import SCHEMA, Outbox, insert
from notify.routing import Target
from notify.text import Writer
from notify.worker import ChannelWorker, wall_ms

DAY = 86_400_000


class Sender:
    def __init__(self, error: str | None = None) -> None:
        self.error = error
        self.sent: list[tuple[str, str]] = []

    async def send(self, url: str, title: str, body: str) -> str | None:
        if self.error is None:
            self.sent.append((title, body))
        return self.error


def setup(
    tmp_path: Path, ages_ms: list[int], sender: Sender
) -> tuple[ChannelWorker, Outbox, list[str]]:
    path = tmp_path / "alerts.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(SCHEMA)
    for i, age in enumerate(ages_ms):
        insert(
            db,
            seq=i + 1,
            crew="A",
            channel="json-1",
            alert_id=f"id{i}",
            event="raised",
            created_at=wall_ms() - age,
            payload={"title": f"t{i}", "body": f"b{i}", "line": f"L-{i}", "road": "洸河路"},
        )
    db.close()
    outbox = Outbox(path).open()
    downs: list[str] = []
    config = NotifyConfig(give_up_after_s=3600, retry_min_s=0.01, retry_max_s=0.02, digest_wait_s=0)
    writer = Writer(language="zh", timezone="Asia/Shanghai", base_url=None, map_url=None)
    worker = ChannelWorker(
        Target("A", "json-1", "json://x"),
        outbox,
        config,
        sender,
        writer,
        on_down=lambda t, e, h: downs.append(e),
        on_up=lambda t: downs.append("up"),
    )
    return worker, outbox, downs


async def test_notices_older_than_the_limit_are_still_tried_after_a_long_stop(
    tmp_path: Path,
) -> None:
    sender = Sender()
    worker, outbox, downs = setup(tmp_path, [2 * DAY], sender)
    await worker.step()
    assert [r["state"] for r in outbox.all_rows()] == ["sent"] and sender.sent and downs == []


async def test_a_failing_channel_gives_up_old_notices_and_reports_itself(tmp_path: Path) -> None:
    sender = Sender(error="connection refused")
    worker, outbox, downs = setup(tmp_path, [2 * DAY, 2 * DAY, 0], sender)
    await worker.step()  # fails
    await worker.step()  # gives up the two old ones
    states = [r["state"] for r in outbox.all_rows()]
    assert states == ["given_up", "given_up", "queued"] and downs == ["connection refused"]
    sender.error = None
    await worker.step()
    assert [r["state"] for r in outbox.all_rows()][-1] == "sent" and downs[-1] == "up"
