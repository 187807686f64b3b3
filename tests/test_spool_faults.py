"""The spool under disk faults: failed fsyncs and writes, segments that cannot be opened, damage."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path
from typing import Any

import pytest

from ingest.errors import SpoolError
from ingest.spool import HEADER, Spool


def make(path: Path, **kw: Any) -> Spool:
    spool = Spool(
        path,
        max_bytes=int(kw.get("max_bytes", 10**9)),
        segment_bytes=int(kw.get("segment_bytes", 64 * 1024)),
        fsync_interval_s=0.001,
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


class FlakyFsync:
    """Fails the first `fail` calls with EIO; records every descriptor it was called on."""

    def __init__(self, fail: int = 1) -> None:
        self.fail = fail
        self.calls: list[tuple[int, str, bool]] = []  # (descriptor, its file, succeeded)

    def __call__(self, fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if self.fail:
            self.fail -= 1
            self.calls.append((fd, path, False))
            raise OSError(errno.EIO, "Input/output error")
        os.fsync(fd)
        self.calls.append((fd, path, True))


async def test_a_failed_fsync_is_never_retried_on_the_same_descriptor(tmp_path: Path) -> None:
    spool = make(tmp_path)
    spool.append([b"a1"])
    await spool.durable()
    flaky = FlakyFsync()
    spool.fsync = flaky
    spool.append([b"b1", b"b2"])
    with pytest.raises(SpoolError):
        await spool.durable()
    assert spool.error is not None
    # The caller retries the same records: they go to a fresh segment and descriptor.
    spool.append([b"b1", b"b2"])
    await spool.durable()
    (_, bad_file, failed), (_, good_file, ok) = flaky.calls
    assert not failed and ok and spool.error is None
    assert good_file != bad_file  # a fresh segment, a fresh descriptor
    # What the failed fsync covered is not durable: never handed to the writer twice.
    assert drain(spool) == [b"a1", b"b1", b"b2"]
    await spool.aclose()
    again = make(tmp_path)
    assert drain(again) == []
    await again.aclose()


async def test_records_after_a_failed_fsync_come_back_once_after_a_restart(tmp_path: Path) -> None:
    spool = make(tmp_path)
    spool.append([b"a1"])
    await spool.durable()
    spool.fsync = FlakyFsync()
    spool.append([b"lost?"])
    with pytest.raises(SpoolError):
        await spool.durable()
    spool.append([b"lost?"])
    await spool.durable()
    await spool.aclose()
    again = make(tmp_path)
    assert drain(again) == [b"a1", b"lost?"]
    await again.aclose()


class BrokenFile:
    """A segment file whose writes fail (ENOSPC) until `heal`."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def write(self, data: bytes) -> int:
        self.real.write(bytes(data[:5]))  # a partial write landed before the error
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


async def test_a_failed_write_is_recovered_in_a_fresh_segment(tmp_path: Path) -> None:
    spool = make(tmp_path)
    spool.append([b"a1"])
    await spool.durable()
    spool.append([b"b0"])  # in the file's buffer, not yet fsync'd
    waiting = asyncio.ensure_future(spool.durable())
    spool._file = BrokenFile(spool._file)  # type: ignore[assignment]
    with pytest.raises(SpoolError):
        spool.append([b"b1"])
    with pytest.raises(SpoolError):
        await waiting  # sealed: nothing since the last fsync counts
    spool.append([b"b0", b"b1"])  # the caller retries
    await spool.durable()
    assert drain(spool) == [b"a1", b"b0", b"b1"]
    await spool.aclose()
    again = make(tmp_path)
    assert drain(again) == []
    await again.aclose()


async def test_a_segment_that_cannot_be_opened_at_rotation_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = make(tmp_path, segment_bytes=64 * 1024)
    real_open = Spool._open_segment
    failures = [OSError(errno.EMFILE, "Too many open files")] * 2

    def open_segment(self: Spool, segment: int) -> None:
        if failures:
            raise failures.pop()
        real_open(self, segment)

    monkeypatch.setattr(Spool, "_open_segment", open_segment)
    big = [b"x" * 1000] * 70  # past the segment size: the next fsync rotates
    spool.append(big)
    await spool.durable()  # the old segment is whole and durable
    assert spool.error is not None and "open" in spool.error
    with pytest.raises(SpoolError):
        spool.append([b"y"])  # still cannot open one: a clear error, not a closed file
    spool.append([b"y"])
    await spool.durable()
    assert spool.error is None
    assert drain(spool) == [*big, b"y"]
    await spool.aclose()


async def test_a_bad_frame_in_an_older_segment_is_skipped_and_reading_goes_on(
    tmp_path: Path,
) -> None:
    spool = make(tmp_path, segment_bytes=64 * 1024)
    first = [f"first-{i:04d}".encode() * 10 for i in range(700)]
    spool.append(first)
    await spool.durable()
    spool.append([b"second-segment"])
    await spool.durable()
    await spool.aclose()
    segs = sorted((tmp_path / "segments").glob("*.seg"))
    assert len(segs) >= 2
    data = bytearray(segs[0].read_bytes())
    frame = HEADER.size + len(first[0])
    data[frame * 10 + HEADER.size + 3] ^= 0xFF  # bit rot in record 10 of the older segment
    segs[0].write_bytes(bytes(data))
    again = make(tmp_path, segment_bytes=64 * 1024)
    assert segs[0].stat().st_size == len(data)  # nothing cut from an older segment
    got = drain(again)
    assert got == [*first[:10], *first[11:], b"second-segment"]
    assert again.bad_frames == 1 and again.skipped_bytes == frame
    assert again.pending_bytes == 0
    await again.aclose()


async def test_a_zeroed_region_is_damage_not_empty_records(tmp_path: Path) -> None:
    spool = make(tmp_path, segment_bytes=64 * 1024)
    spool.append([b"r1", b"r2"])
    await spool.durable()
    spool.append([b"next"] * 20000)
    await spool.durable()
    await spool.aclose()
    segs = sorted((tmp_path / "segments").glob("*.seg"))
    data = bytearray(segs[0].read_bytes())
    data[HEADER.size + 2 : HEADER.size + 2 + 64] = bytes(64)  # a zeroed block after a crash
    segs[0].write_bytes(bytes(data))
    again = make(tmp_path)
    got = drain(again)
    assert b"" not in got and got[0] == b"r1"
    await again.aclose()


async def test_the_sqlite_store_commits_are_on_disk_before_the_spool_lets_go(
    tmp_path: Path,
) -> None:
    from ingest.stores.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "points.sqlite")
    await store.start()
    assert store.query("PRAGMA synchronous") == [(2,)]  # FULL
    await store.aclose()


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Any:
    """A real 512 KiB tmpfs: ENOSPC from the kernel, not an injected error."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr!r}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_on_a_really_full_disk_every_acknowledged_record_is_read_once(
    small_tmpfs: Path,
) -> None:
    """Concurrent batches into a disk that fills: each batch either gets durable() (would be
    acknowledged) or an error (would be retried). Every durable record comes out of the reader
    exactly once, before and after a restart; the cut-back tails leave nothing half-written."""
    spool = make(small_tmpfs, segment_bytes=64 * 1024)
    acked: list[bytes] = []
    refused = 0

    async def batch(i: int) -> None:
        nonlocal refused
        records = [b"r%06d-%03d-" % (i, j) + b"x" * 80 for j in range(20)]
        try:
            spool.append(records)
            await spool.durable()
        except SpoolError:
            refused += 1
            return
        acked.extend(records)

    i = 0
    while refused < 30 and i < 5000:
        await asyncio.gather(*(batch(i + k) for k in range(4)))
        i += 4
    assert refused >= 30, "the disk never filled"
    assert acked
    # The spool filled the disk itself: committing must still free it (the checkpoint is a
    # new file, which a full disk refuses).
    read = drain(spool)
    assert sorted(read) == sorted(acked)
    assert spool.pending_bytes == 0
    assert len(set(read)) == len(read)
    # Space is back: the spool takes writes again, and a restart finds only what it should.
    await batch(10**5)
    await spool.aclose()
    again = make(small_tmpfs, segment_bytes=64 * 1024)
    try:
        rest = drain(again)
        assert sorted(read + rest) == sorted(acked)
        assert len(rest) == 20
    finally:
        await again.aclose()


async def test_a_checkpoint_refused_after_segments_were_freed_loses_nothing_on_restart(
    tmp_path: Path,
) -> None:
    """The disk stays full even after the committed segments went: the checkpoint is not
    written, the writer re-reads from the first segment still there, a restart too."""
    spool = make(tmp_path, segment_bytes=1024)
    records = [b"r%04d" % i + b"y" * 100 for i in range(60)]
    for rec in records:
        spool.append([rec])
        await spool.durable()
    batch = spool.read_available(45)
    assert batch is not None and batch.end.segment > 1

    def refuse(end: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    spool._write_checkpoint = refuse  # type: ignore[method-assign]
    with pytest.raises(OSError):
        spool.commit(batch)
    first = min(int(p.stem) for p in (tmp_path / "segments").glob("*.seg"))
    assert first == batch.end.segment  # the segments wholly in the store are gone
    # The writer restarts: it re-reads from the first segment still there (never from a gap).
    spool.rewind()
    reread = spool.read_available(1000)
    assert reread is not None and reread.records[-1] == records[-1]
    assert set(records[:45]) - set(reread.records)  # what went with the deleted segments
    await spool.aclose()
    # A crash instead: the checkpoint on disk is the old one; the restart starts at the first
    # segment still there, and its count of pending bytes comes out right.
    reopened = make(tmp_path, segment_bytes=1024)
    try:
        again = drain(reopened)
        assert again == reread.records
        assert reopened.pending_bytes == 0
    finally:
        await reopened.aclose()
