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
import errno
import logging
import os
import struct
import time
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from ingest.errors import SpoolError

log = logging.getLogger(__name__)

HEADER = struct.Struct("<II")
READ_CHUNK = 4 * 1024 * 1024
# No record is this large (a line of one reading); a header claiming more is damage.
MAX_FRAME = 16 * 1024 * 1024


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
        # Its own thread: in asyncio's shared pool an fsync (and every ack) waited behind
        # whatever else ran there (figures and alert queries).
        self._fsync_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spool-fsync")
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
        # Faults and their recovery
        self._broken: BaseException | None = None  # an append failed: seal before going on
        self._sealed: dict[int, int] = {}  # segment → end of its good frames after a failure
        self.error: str | None = None  # the last write-side failure, until an fsync succeeds
        self.bad_frames = 0  # damaged frames skipped while reading
        self.skipped_bytes = 0
        # (position, wall time of the append there), at most one a second: the age of the
        # oldest reading not yet in the store, for /healthz
        self._marks: deque[tuple[Position, float]] = deque()

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
        """Recover from disk (synchronous; call once before the event loop work starts).

        Only the newest segment can end in a torn frame (kill -9 or power loss while appending:
        never acknowledged), so only there is a tail cut. Older segments were fsync'd whole
        before the next one began: a bad frame there is damage to acknowledged data, so it is
        skipped (counted, logged) and reading goes on with the next good frame."""
        try:
            self.seg_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"cannot create spool directory {self.seg_dir}: {exc}") from exc
        self._checkpoint = self._load_checkpoint()
        segments = self._segments()
        for seg in [s for s in segments if s < self._checkpoint.segment]:
            self._seg_path(seg).unlink(missing_ok=True)
        segments = [s for s in segments if s >= self._checkpoint.segment]
        pending = 0
        for seg in segments:
            start = self._checkpoint.offset if seg == self._checkpoint.segment else 0
            size = self._seg_path(seg).stat().st_size
            if seg == segments[-1]:
                valid_end = self._scan(seg)
                if valid_end < size:
                    log.warning(
                        "spool segment %s: cut %d bytes of torn tail (never acknowledged)",
                        seg,
                        size - valid_end,
                    )
                    with open(self._seg_path(seg), "r+b") as fh:
                        fh.truncate(valid_end)
                        os.fsync(fh.fileno())
                    size = valid_end
            pending += max(0, size - start)
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
        if pending:
            mtime = self._seg_path(segments[0]).stat().st_mtime
            self._marks.append((self._read, mtime))
        self._report_size()
        if pending:
            log.info("spool: %d bytes from before the restart will be written first", pending)

    def _scan(self, segment: int) -> int:
        """Byte offset after the last whole, checksummed frame of a segment (bad frames before
        it are left for the reader to skip; only what follows the last good frame is a tail)."""
        with open(self._seg_path(segment), "rb") as fh:
            data = fh.read()
        end = 0
        off = 0
        n = len(data)
        while off + HEADER.size <= n:
            stop = _frame_end(data, off)
            if stop is None:
                nxt = _next_frame(data, off + 1)
                if nxt is None:
                    break
                off = nxt
                continue
            end = off = stop
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
        """Start writing `segment`; on OSError nothing changed (the caller retries later)."""
        path = self._seg_path(segment)
        file = open(path, "ab")  # noqa: SIM115 - closed on rotation / close()
        try:
            # The directory entry of a new segment must be durable before anything in it is
            # acknowledged, or a power cut could take the whole file.
            self._fsync_dir()
        except OSError:
            file.close()
            raise
        self._file = file
        self._sealed.pop(segment, None)
        self._segment = segment
        self._seg_size = 0
        self._written = Position(segment, 0)
        self._durable = Position(segment, 0)

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
        """Write frames (not yet durable: await `durable()` before acknowledging).

        Raises SpoolError when the disk refuses; the spool recovers by itself (a fresh segment
        on the next append), so the caller retries the same records later."""
        if self._closed:
            raise SpoolError("spool is closed")
        if self._broken is not None:
            raise SpoolError(f"spool write failed: {self._broken}")
        if self._file is None:
            try:
                self._open_segment(self._segment + 1)
            except OSError as exc:
                self._file = None
                self.error = f"cannot open a new spool segment: {exc}"
                raise SpoolError(self.error) from exc
        buf = bytearray()
        for rec in records:
            buf += HEADER.pack(len(rec), zlib.crc32(rec))
            buf += rec
        assert self._file is not None
        try:
            self._file.write(buf)
        except (OSError, ValueError) as exc:
            # Part of buf may be in the file: the committer seals the segment at its last
            # durable frame before anything else is written (never here: an fsync may be
            # running on this file in a worker thread).
            self._broken = exc
            self.error = f"spool write failed: {exc}"
            if self._kick is not None:
                self._kick.set()
            raise SpoolError(self.error) from exc
        now = time.time()
        if not self._marks or now - self._marks[-1][1] >= 1.0:
            self._marks.append((self._written, now))
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
            except Exception as exc:  # never hang the waiters, whatever went wrong
                log.exception("spool fsync failed")
                self._seal(exc)

    async def _sync_once(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._data_ready is not None and self._kick is not None
        file = self._file
        if self._broken is not None:
            self._seal(self._broken)
            return
        if file is None:  # sealed, or a new segment could not be opened: nothing unsynced
            self._resolve(self._durable)
            return
        target = self._written
        try:
            file.flush()
            await loop.run_in_executor(self._fsync_pool, self.fsync, file.fileno())
        except Exception as exc:
            # Never fsync this descriptor again: after a failed fsync the kernel may have
            # dropped the dirty pages and a second fsync would report success for data that
            # is not on disk. Everything since the last good fsync is not durable (and was
            # never acknowledged): cut it and go on in a fresh segment.
            log.error("spool fsync failed: %s", exc)
            self._seal(exc)
            return
        if self._broken is not None:  # an append failed while the fsync ran
            self._durable = max(self._durable, target)
            self._resolve(target)
            self._seal(self._broken)
            return
        if self._seg_size >= self.segment_bytes and self._file is file:
            # Rotate. Appends may have landed while the fsync ran: make the whole old segment
            # durable before closing it (a short blocking fsync, once per segment).
            try:
                file.flush()
                self.fsync(file.fileno())
            except Exception as exc:
                self._durable = max(self._durable, target)
                self._resolve(target)
                self._seal(exc)
                return
            target = self._written
            self._durable = target
            self._file = None
            with contextlib.suppress(OSError):
                file.close()
            try:
                self._open_segment(self._segment + 1)
            except OSError as exc:  # EMFILE, ENOSPC: the next append tries again
                self._file = None
                self.error = f"cannot open a new spool segment: {exc}"
                log.error("spool: %s", self.error)
        elif target > self._durable:
            self._durable = target
        if self._file is not None:
            self.error = None
        self._resolve(target)

    def _resolve(self, target: Position) -> None:
        assert self._kick is not None and self._data_ready is not None
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

    def _seal(self, exc: BaseException) -> None:
        """End the current segment at its last durable frame and fail every waiter: what was
        appended since the last good fsync is not durable and must not be acknowledged. The
        next append opens a fresh segment (and a fresh descriptor)."""
        file, self._file = self._file, None
        self._broken = None
        seg = self._segment
        end = self._durable.offset if self._durable.segment == seg else 0
        lost = self._seg_size - end
        if file is not None:
            with contextlib.suppress(Exception):
                file.close()  # may flush more bytes: cut below
        try:
            if end == 0:
                # Nothing durable in it: remove it, or every retry on a full disk leaves one more
                # empty segment behind (the reader passes over a missing number).
                self._seg_path(seg).unlink()
            else:
                os.truncate(self._seg_path(seg), end)
        except OSError as err:
            log.error("spool segment %s: cannot cut at %d (%s); reading stops there", seg, end, err)
        self._sealed[seg] = end
        self._seg_size = end
        self._written = self._durable = Position(seg, end)
        self._pending_bytes = max(0, self._pending_bytes - lost)
        self._report_size()
        self.error = f"spool write failed: {exc}"
        waiters, self._waiters = self._waiters, []
        for _, fut in waiters:
            if not fut.done():
                fut.set_exception(SpoolError(self.error))

    # ---- read side (the writer) ------------------------------------------------------------

    def _readable_end(self, segment: int) -> int | None:
        """Durable end of a segment being written; None for a finished segment (read to EOF)."""
        sealed = self._sealed.get(segment)
        if sealed is not None:
            return sealed
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
                if pos.segment < self._durable.segment:  # a segment sealed after a failure
                    pos = Position(pos.segment + 1, 0)
                    continue
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
                # Damage in the middle of acknowledged data: skip to the next good frame.
                nbytes += off
                bad = pos.offset + off
                resume = self._next_good(fh, bad, limit)
                end = resume if resume is not None else (limit if limit is not None else None)
                if end is None:
                    fh.seek(0, os.SEEK_END)
                    end = fh.tell()
                skipped = max(0, end - bad)
                self.bad_frames += 1
                self.skipped_bytes += skipped
                nbytes += skipped
                log.error(
                    "spool segment %s: unreadable frame at %d; skipped %d bytes",
                    pos.segment,
                    bad,
                    skipped,
                )
                if resume is not None:
                    pos = Position(pos.segment, resume)
                elif limit is None:
                    pos = Position(pos.segment + 1, 0)
                else:
                    pos = Position(pos.segment, limit)
                continue
            nbytes += off
            pos = Position(pos.segment, pos.offset + off)
        self._read = pos
        if not records:
            return None
        return Batch(records, pos, nbytes)

    def _next_good(self, fh: BinaryIO, bad: int, limit: int | None) -> int | None:
        """Offset of the first whole, checksummed frame after `bad` in this segment, or None."""
        fh.seek(bad)
        data = fh.read() if limit is None else fh.read(max(0, limit - bad))
        nxt = _next_frame(data, 1)
        return None if nxt is None else bad + nxt

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
        try:
            self._write_checkpoint(batch.end)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            # The spool filled its own disk: the checkpoint (a new file) cannot be written, so
            # nothing would ever be deleted and the disk would stay full for good. The segments
            # wholly before the batch's end are in the store: delete them first (a restart
            # from the old checkpoint starts at the first segment still there), then try again.
            freed = self._free_committed(batch.end.segment)
            self._write_checkpoint(batch.end)
            batch.nbytes = max(0, batch.nbytes - freed)  # those bytes are already off the count
        self._checkpoint = batch.end
        marks = self._marks
        while len(marks) > 1 and marks[1][0] <= batch.end:
            marks.popleft()
        for seg in self._segments():
            if seg < batch.end.segment:
                if self._read_file_segment == seg and self._read_file is not None:
                    self._read_file.close()
                    self._read_file = None
                    self._read_file_segment = -1
                self._seg_path(seg).unlink(missing_ok=True)
                self._sealed.pop(seg, None)
        self._pending_bytes = max(0, self._pending_bytes - batch.nbytes)
        if self._pending_bytes == 0:
            marks.clear()
        self._report_size()
        if self._space is not None and not self.full:
            self._space.set()

    def _write_checkpoint(self, end: Position) -> None:
        tmp = self.dir / "checkpoint.json.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(orjson.dumps({"segment": end.segment, "offset": end.offset}))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.dir / "checkpoint.json")
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def _free_committed(self, before: int) -> int:
        """Delete the segments before `before` (the store has them) and move the in-memory
        checkpoint to the start of `before`, so a rewind re-reads from there and the pending
        byte count stays true."""
        if self._checkpoint.segment >= before:
            return 0
        freed = 0
        for seg in self._segments():
            if seg >= before:
                continue
            path = self._seg_path(seg)
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            start = self._checkpoint.offset if seg == self._checkpoint.segment else 0
            if seg < self._checkpoint.segment:
                start = size  # already counted as committed
            if self._read_file_segment == seg and self._read_file is not None:
                self._read_file.close()
                self._read_file = None
                self._read_file_segment = -1
            path.unlink(missing_ok=True)
            self._sealed.pop(seg, None)
            freed += max(0, size - start)
        log.warning(
            "spool: its disk is full; deleted the segments before %d (in the store) to make "
            "room for the checkpoint",
            before,
        )
        self._checkpoint = Position(before, 0)
        self._pending_bytes = max(0, self._pending_bytes - freed)
        self._report_size()
        return freed

    def oldest_age_s(self) -> float:
        """Seconds since the oldest reading not yet in the store was spooled (0 if none)."""
        if self._pending_bytes == 0 or not self._marks:
            return 0.0
        return max(0.0, time.time() - self._marks[0][1])

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
        self._fsync_pool.shutdown(wait=False)
        if self._file is not None:
            try:
                self._file.flush()
                self.fsync(self._file.fileno())
            except Exception:  # what it did not cover was never acknowledged
                log.exception("spool: final fsync failed")
            with contextlib.suppress(Exception):
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
        if length == 0 or length > MAX_FRAME:
            return off, True  # we never write these: a zeroed or damaged header
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


def _frame_end(data: bytes, off: int) -> int | None:
    """End offset of a whole, checksummed frame at `off`, or None."""
    length, crc = HEADER.unpack_from(data, off)
    if length == 0 or length > MAX_FRAME:
        return None
    stop = off + HEADER.size + length
    if stop > len(data) or zlib.crc32(data[off + HEADER.size : stop]) != crc:
        return None
    return stop


def _next_frame(data: bytes, start: int) -> int | None:
    """The first offset at or after `start` where a whole, checksummed frame begins."""
    for off in range(start, len(data) - HEADER.size + 1):
        if _frame_end(data, off) is not None:
            return off
    return None
