"""The spool: in order, crash-safe, bounded, compacted as batches commit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ingest.spool import Spool


def make(path: Path, **kw: float) -> Spool:
    spool = Spool(
        path,
        max_bytes=int(kw.get("max_bytes", 10**9)),
        segment_bytes=int(kw.get("segment_bytes", 64 * 1024)),
        fsync_interval_s=kw.get("fsync", 0.002),
    )
    spool.open()
    spool.start()
    return spool


def drain(spool: Spool) -> list[bytes]:
    out: list[bytes] = []
    while (batch := spool.read_available(1000)) is not None:
        out.extend(batch.records)
        spool.commit(batch)
    return out


async def test_records_come_back_in_order_across_segments(tmp_path: Path) -> None:
    spool = make(tmp_path)
    recs = [f"line {i} ".encode() * 20 for i in range(3000)]
    for i in range(0, 3000, 7):
        spool.append(recs[i : i + 7])
        await spool.durable()
    assert len(list((tmp_path / "segments").glob("*.seg"))) > 3
    assert drain(spool) == recs
    assert spool.pending_bytes == 0
    # compaction: only the segment being written remains
    assert len(list((tmp_path / "segments").glob("*.seg"))) == 1
    await spool.aclose()


async def test_uncommitted_records_are_read_again_after_a_restart(tmp_path: Path) -> None:
    spool = make(tmp_path)
    spool.append([b"a", b"b", b"c"])
    await spool.durable()
    batch = spool.read_available(2)
    assert batch is not None and batch.records == [b"a", b"b"]
    spool.commit(batch)
    spool.append([b"d"])
    await spool.aclose()
    again = make(tmp_path)
    assert drain(again) == [b"c", b"d"]
    again.append([b"e"])
    await again.durable()
    assert drain(again) == [b"e"]
    await again.aclose()


async def test_a_torn_tail_is_cut_and_the_rest_kept(tmp_path: Path) -> None:
    spool = make(tmp_path)
    spool.append([b"kept-1", b"kept-2", b"torn" * 50])
    await spool.aclose()
    seg = sorted((tmp_path / "segments").glob("*.seg"))[-1]
    seg.write_bytes(seg.read_bytes()[:-17])  # a frame cut by power loss
    again = make(tmp_path)
    assert drain(again) == [b"kept-1", b"kept-2"]
    await again.aclose()


async def test_full_spool_makes_writers_wait_until_a_commit(tmp_path: Path) -> None:
    spool = make(tmp_path, max_bytes=1024 * 1024, segment_bytes=256 * 1024)
    spool.append([b"x" * 1000] * 1100)
    await spool.durable()
    assert spool.full
    waiter = asyncio.create_task(spool.wait_space())
    await asyncio.sleep(0.05)
    assert not waiter.done()  # held: the broker keeps the rest meanwhile
    batch = spool.read_available(500)
    assert batch is not None
    spool.commit(batch)
    await asyncio.wait_for(waiter, 1)
    assert not spool.full
    await spool.aclose()


async def test_read_batch_waits_for_durable_records(tmp_path: Path) -> None:
    spool = make(tmp_path, fsync=0.01)
    reader = asyncio.create_task(spool.read_batch(10, 0.05))
    await asyncio.sleep(0.02)
    assert not reader.done()
    spool.append([b"1", b"2"])
    await spool.durable()
    batch = await asyncio.wait_for(reader, 2)
    assert batch.records == [b"1", b"2"]
    await spool.aclose()


KILLER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from ingest.spool import Spool

    async def main() -> None:
        spool = Spool(Path(sys.argv[1]), max_bytes=10**9, segment_bytes=32 * 1024, fsync_interval_s=0.001)
        spool.open()
        spool.start()
        i = 0
        while True:
            spool.append([f"rec-{i:08d}".encode() * 3])
            await spool.durable()
            print(i, flush=True)  # acknowledged
            i += 1

    asyncio.run(main())
    """
)


@pytest.mark.parametrize("after", [50, 700])
def test_kill_9_at_any_instant_loses_no_acknowledged_record(tmp_path: Path, after: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.stdout is not None
    acked = -1
    for line in proc.stdout:
        acked = int(line)
        if acked >= after:
            break
    os.kill(proc.pid, 9)
    proc.wait()

    async def check() -> list[bytes]:
        spool = make(tmp_path)
        got = drain(spool)
        await spool.aclose()
        return got

    got = asyncio.run(check())
    assert len(got) >= acked + 1
    assert got[: acked + 1] == [f"rec-{i:08d}".encode() * 3 for i in range(acked + 1)]
