"""The spool: a crash-safe, bounded, in-order on-disk queue between the broker's ack and the store.

Why: MQTT never redelivers on a live connection, so acking only after InfluxDB answers would stall
the whole flow (and the rules) whenever the database is slow or down. A reading is acknowledged to
the broker once it is fsync'd here; the writer drains the spool to the store and commits.

Layout: `segments/NNNNNNNNNNNN.seg` files of frames `<u32 length><u32 crc32><payload>`, written in
order, plus `checkpoint.json` naming the first frame not yet committed to the store. Appends are
fsync'd in groups (every `fsync_interval_s`), and only fsync'd frames are handed to the writer or
acknowledged. On open, a torn tail (a frame cut by kill -9 or power loss) is cut off; everything
before it was acknowledged only after its fsync, so nothing acknowledged is lost. Segments wholly
behind the checkpoint are deleted (compaction). A replayed frame (crash between store write and
checkpoint) is harmless: a point's identity is its device timestamp, so a rewrite leaves one point.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from ingest.errors import SpoolError

log = logging.getLogger(__name__)

HEADER = struct.Struct("<II")
READ_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True, order=True)
class Position:
    segment: int
    offset: int


@dataclass(slots=True)
class Batch:
    records: list[bytes]
    end: Position
    nbytes: int


class Spool:
    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        segment_bytes: int,
        fsync_interval_s: float,
        on_size: Callable[[int], None] | None = None,
    ) -> None:
        self.dir = directory
        self.seg_dir = directory / "segments"
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync_interval_s = fsync_interval_s
        self._on_size = on_size
        # The fsync of appended frames (an I/O edge: tests block it to prove no ack leaves early).
        self.fsync: Callable[[int], None] = os.fsync
        # Write side
        self._file: BinaryIO | None = None
        self._segment = 0
        self._seg_size = 0
        self._written = Position(0, 0)
        self._durable = Position(0, 0)
        self._pending_bytes = 0  # bytes appended and not committed (what the bound applies to)
        self._waiters: list[tuple[Position, asyncio.Future[None]]] = []
        self._kick: asyncio.Event | None = None
        self._data_ready: asyncio.Event | None = None
        self._space: asyncio.Event | None = None
        self._committer: asyncio.Task[None] | None = None
        self._closed = False
        # Read side
        self._read = Position(0, 0)
        self._read_file: BinaryIO | None = None
        self._read_file_segment = -1
        self._checkpoint = Position(0, 0)

    # ---- opening and recovery --------------------------------------------------------------

    def _seg_path(self, segment: int) -> Path:
        return self.seg_dir / f"{segment:012d}.seg"

    def _segments(self) -> list[int]:
        out = []
        for path in self.seg_dir.glob("*.seg"):
            try:
                out.append(int(path.stem))
            except ValueError:
                continue
        return sorted(out)

    def open(self) -> None:
        """Recover from disk (synchronous; call once before the event loop work starts)."""
        try:
            self.seg_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create spool directory {self.seg_dir}: {exc}") from exc
        self._checkpoint = self._load_checkpoint()
        segments = self._segments()
        pending = 0
        for seg in segments:
            if seg < self._checkpoint.segment:
                self._seg_path(seg).unlink(missing_ok=True)
                continue
            start = self._checkpoint.offset if seg == self._checkpoint.segment else 0
            valid_end = self._scan(seg)
            size = self._seg_path(seg).stat().st_size
            if valid_end < size:
                log.warning(
                    "spool segment %s: cut %d bytes of torn tail (never acknowledged)",
                    seg,
                    size - valid_end,
                )
                with open(self._seg_path(seg), "r+b") as fh:
                    fh.truncate(valid_end)
                    os.fsync(fh.fileno())
            pending += max(0, valid_end - start)
        segments = [s for s in segments if s >= self._checkpoint.segment]
        if segments:
            first = segments[0]
            self._read = (
                self._checkpoint if first == self._checkpoint.segment else Position(first, 0)
            )
        else:
            self._read = Position(self._checkpoint.segment, self._checkpoint.offset)
        # New appends always go to a fresh segment: recovered files are never appended to.
        self._segment = (segments[-1] + 1) if segments else self._checkpoint.segment + 1
        self._open_segment(self._segment)
        self._pending_bytes = pending
        self._report_size()
        if pending:
            log.info("spool: %d bytes from before the restart will be written first", pending)

    def _scan(self, segment: int) -> int:
        """Byte offset after the last whole, checksummed frame of a segment."""
        end = 0
        with open(self._seg_path(segment), "rb") as fh:
            data = fh.read()
        n = len(data)
        while end + HEADER.size <= n:
            length, crc = HEADER.unpack_from(data, end)
            start = end + HEADER.size
            stop = start + length
            if stop > n or zlib.crc32(data[start:stop]) != crc:
                break
            end = stop
        return end

    def _load_checkpoint(self) -> Position:
        path = self.dir / "checkpoint.json"
        if not path.exists():
            segments = self._segments()
            return Position(segments[0], 0) if segments else Position(0, 0)
        try:
            data = orjson.loads(path.read_bytes())
            return Position(int(data["segment"]), int(data["offset"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SpoolError(f"spool checkpoint {path} is unreadable: {exc}") from exc

    def _open_segment(self, segment: int) -> None:
        path = self._seg_path(segment)
        self._file = open(path, "ab")  # noqa: SIM115 - closed on rotation / close()
        self._segment = segment
        self._seg_size = 0
        self._written = Position(segment, 0)
        self._durable = Position(segment, 0)
        # The directory entry of a new segment must be durable too.
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        fd = os.open(self.seg_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def start(self) -> None:
        """Start the group-commit task (needs a running event loop)."""
        self._kick = asyncio.Event()
        self._data_ready = asyncio.Event()
        self._space = asyncio.Event()
        if self._pending_bytes < self.max_bytes:
            self._space.set()
        if self._pending_bytes:
            self._data_ready.set()
        self._committer = asyncio.create_task(self._commit_loop(), name="spool-fsync")

    # ---- write side ------------------------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    @property
    def full(self) -> bool:
        return self._pending_bytes >= self.max_bytes

    async def wait_space(self) -> None:
        """Wait until the spool is under its bound (the broker keeps the rest meanwhile)."""
        assert self._space is not None
        while self.full:
            self._space.clear()
            await self._space.wait()

    def append(self, records: list[bytes]) -> None:
        """Write frames (not yet durable: await `durable()` before acknowledging)."""
        if self._closed or self._file is None:
            raise SpoolError("spool is closed")
        buf = bytearray()
        for rec in records:
            buf += HEADER.pack(len(rec), zlib.crc32(rec))
            buf += rec
        try:
            self._file.write(buf)
        except OSError as exc:
            raise SpoolError(f"spool write failed: {exc}") from exc
        self._seg_size += len(buf)
        self._pending_bytes += len(buf)
        self._written = Position(self._segment, self._seg_size)

    async def durable(self) -> None:
        """Return once everything appended so far is fsync'd."""
        target = self._written
        if target <= self._durable:
            return
        assert self._kick is not None
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        self._kick.set()
        await fut

    async def _commit_loop(self) -> None:
        assert self._kick is not None and self._data_ready is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._kick.wait()
            self._kick.clear()
            if self.fsync_interval_s > 0:
                await asyncio.sleep(self.fsync_interval_s)  # let more appends join this fsync
            try:
                await self._sync_once(loop)
            except Exception as exc:  # an fsync error must fail the waiters, not hang them
                log.exception("spool fsync failed")
                waiters, self._waiters = self._waiters, []
                for _, fut in waiters:
                    if not fut.done():
                        fut.set_exception(SpoolError(f"spool fsync failed: {exc}"))
                continue

    async def _sync_once(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._file is not None and self._data_ready is not None and self._kick is not None
        target = self._written
        file = self._file
        file.flush()
        await loop.run_in_executor(None, self.fsync, file.fileno())
        if self._seg_size >= self.segment_bytes and self._file is file:
            # Rotate. Appends may have landed while the fsync ran: make the whole old segment
            # durable before closing it (a short blocking fsync, once per segment).
            file.flush()
            os.fsync(file.fileno())
            target = self._written
            file.close()
            self._open_segment(self._segment + 1)
        elif target > self._durable:
            self._durable = target
        still = []
        for pos, fut in self._waiters:
            if pos <= target:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((pos, fut))
        self._waiters = still
        if still:
            self._kick.set()
        self._data_ready.set()

    # ---- read side (the writer) ------------------------------------------------------------

    def _readable_end(self, segment: int) -> int | None:
        """Durable end of a segment being written; None for a finished segment (read to EOF)."""
        if segment == self._durable.segment:
            return self._durable.offset
        if segment > self._durable.segment:
            return 0
        return None

    def read_available(self, max_records: int) -> Batch | None:
        """Up to max_records durable frames from the read position, or None if none."""
        records: list[bytes] = []
        pos = self._read
        nbytes = 0
        while len(records) < max_records:
            limit = self._readable_end(pos.segment)
            if limit is not None and pos.offset >= limit:
                break  # caught up with the durable end of the segment being written
            fh = self._reader_for(pos.segment)
            if fh is None:
                if limit is None:  # a finished segment that is gone: go on with the next
                    pos = Position(pos.segment + 1, 0)
                    continue
                break
            fh.seek(pos.offset)
            want = READ_CHUNK if limit is None else min(READ_CHUNK, limit - pos.offset)
            data = fh.read(want)
            if not data:
                if limit is None:
                    pos = Position(pos.segment + 1, 0)
                    continue
                break
            off, corrupt = _parse_frames(data, records, max_records)
            if off == 0 and not corrupt and len(data) >= HEADER.size:
                # One frame larger than the chunk: read exactly that frame.
                length, _ = HEADER.unpack_from(data, 0)
                fh.seek(pos.offset)
                data = fh.read(HEADER.size + length)
                off, corrupt = _parse_frames(data, records, 1)
            if corrupt or off == 0:
                # Only a finished segment can end here (the live one is read to its durable end).
                log.error(
                    "spool segment %s: unreadable frame at %d; skipping the rest",
                    pos.segment,
                    pos.offset + off,
                )
                nbytes += off
                pos = (
                    Position(pos.segment + 1, 0) if limit is None else Position(pos.segment, limit)
                )
                continue
            nbytes += off
            pos = Position(pos.segment, pos.offset + off)
        self._read = pos
        if not records:
            return None
        return Batch(records, pos, nbytes)

    def rewind(self) -> None:
        """Read again from the checkpoint (the writer restarts: what it read is not committed)."""
        self._read = self._checkpoint
        if self._read_file is not None:
            self._read_file.close()
            self._read_file = None
            self._read_file_segment = -1

    def _reader_for(self, segment: int) -> BinaryIO | None:
        if self._read_file_segment == segment and self._read_file is not None:
            return self._read_file
        if self._read_file is not None:
            self._read_file.close()
            self._read_file = None
            self._read_file_segment = -1
        path = self._seg_path(segment)
        try:
            self._read_file = open(path, "rb")  # noqa: SIM115 - kept open while reading
        except FileNotFoundError:
            return None
        self._read_file_segment = segment
        return self._read_file

    async def read_batch(self, max_records: int, max_wait_s: float) -> Batch:
        """Wait for frames; return up to max_records, waiting up to max_wait_s to fill a batch."""
        assert self._data_ready is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = self.read_available(max_records)
            if batch is not None:
                if len(batch.records) < max_records:
                    deadline = loop.time() + max_wait_s
                    while len(batch.records) < max_records and loop.time() < deadline:
                        self._data_ready.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(
                                self._data_ready.wait(), max(0.0, deadline - loop.time())
                            )
                        more = self.read_available(max_records - len(batch.records))
                        if more is not None:
                            batch.records.extend(more.records)
                            batch.end = more.end
                            batch.nbytes += more.nbytes
                return batch
            self._data_ready.clear()
            await self._data_ready.wait()

    def commit(self, batch: Batch) -> None:
        """The store has the batch: move the checkpoint and delete fully committed segments.

        The checkpoint file is written first: if that fails (a full disk), nothing here changed
        and the writer, restarted, reads the batch again from the old checkpoint."""
        tmp = self.dir / "checkpoint.json.tmp"
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps({"segment": batch.end.segment, "offset": batch.end.offset}))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.dir / "checkpoint.json")
        self._checkpoint = batch.end
        for seg in self._segments():
            if seg < batch.end.segment:
                if self._read_file_segment == seg and self._read_file is not None:
                    self._read_file.close()
                    self._read_file = None
                    self._read_file_segment = -1
                self._seg_path(seg).unlink(missing_ok=True)
        self._pending_bytes = max(0, self._pending_bytes - batch.nbytes)
        self._report_size()
        if self._space is not None and not self.full:
            self._space.set()

    def _report_size(self) -> None:
        if self._on_size is not None:
            self._on_size(self._pending_bytes)

    # ---- shutdown -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Make everything appended durable, then stop."""
        if self._closed:
            return
        if self._file is not None and self._kick is not None:
            with contextlib.suppress(Exception):
                await self.durable()
        self._closed = True
        if self._committer is not None:
            self._committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
        if self._read_file is not None:
            self._read_file.close()
            self._read_file = None


def _parse_frames(data: bytes, out: list[bytes], max_records: int) -> tuple[int, bool]:
    """Append whole frames of `data` to out; return (bytes consumed, hit a corrupt frame)."""
    off = 0
    n = len(data)
    while len(out) < max_records and off + HEADER.size <= n:
        length, crc = HEADER.unpack_from(data, off)
        start = off + HEADER.size
        stop = start + length
        if stop > n:
            break
        rec = data[start:stop]
        if zlib.crc32(rec) != crc:
            return off, True
        out.append(rec)
        off = stop
    return off, False
