"""Load mode (`--rate N`): sustained QoS 1 lamp readings over many connections, acks counted.

Every message is a valid contract §1 lamp reading with a live timestamp, from `--devices` distinct
lamps (`LD-00001` …), so the service under test does its full work for each. What a store can keep,
one to one with the acks: each device's `ts` strictly increases (a device sending twice in one
millisecond takes the next one), its energy never goes backwards, and lamps are lit only at night
(the floor's sun), so "acked" and "points stored" can be compared exactly. Each connection sends
its share of the rate in small batches on a 2 ms tick, never more than `window` unacknowledged;
PUBACK latency (write → ack) is kept per message for percentiles. With `--processes P` the work is
split over P processes (spawned, each with its own event loop) and the figures are merged.
The packets are written by simulator.wire (why: see its docstring).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import time
from array import array
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from devices.location import LocationConfig
from devices.sun import SunTimes
from devices.topics import device_topic
from simulator.errors import PublishError
from simulator.publish import percentile
from simulator.wire import QoS1Publisher, connect_packet, publish_packet, topic_field

TICK_S = 0.002
MAX_BATCH = 2000
_TEMPLATE = (
    b'{"ts":%d,"seq":%d,"on":true,"dim":100,"voltage":%s,"current":%s,"power":%s,'
    b'"power_factor":0.96,"energy":%d.%03d,"temperature":31.5,"rssi":-71}'
)
_OFF_TEMPLATE = (
    b'{"ts":%d,"seq":%d,"on":false,"dim":0,"voltage":%s,"current":0.007,"power":0.5,'
    b'"power_factor":0.32,"energy":%d.%03d,"temperature":24.5,"rssi":-71}'
)
# A few plausible (voltage, current, power) triples, cycled: real values, no per-message maths.
_VARIANTS = [
    (b"%.1f" % v, b"%.3f" % (p / (v * 0.96)), b"%.1f" % p)
    for v, p in ((221.4, 151.2), (219.8, 149.7), (223.1, 150.4), (218.6, 152.0))
]


@dataclass(frozen=True, slots=True)
class LoadOptions:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    prefix: str = "city/jining"
    rate: float = 30_000.0  # msg/s over all connections; math.inf: as fast as acks come back
    duration_s: float = 30.0
    connections: int = 16
    processes: int = 1
    devices: int = 5000
    window: int = 1000  # unacknowledged publishes per connection
    client_id: str = "streetwatch-load"
    worker: int = 0  # this process's index (set by run_load)
    location: LocationConfig = field(default_factory=LocationConfig)  # whose night lights lamps


@dataclass(slots=True)
class LoadResult:
    sent: int = 0
    acked: int = 0
    send_s: float = 0.0  # the sending phase
    total_s: float = 0.0  # until the last ack (or the drain timeout)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Acknowledged messages per second of the run (send phase and drain)."""
        return self.acked / self.total_s if self.total_s > 0 else 0.0

    def merge(self, other: LoadResult) -> None:
        self.sent += other.sent
        self.acked += other.acked
        self.send_s = max(self.send_s, other.send_s)
        self.total_s = max(self.total_s, other.total_s)
        self.latencies.extend(other.latencies)
        self.errors.extend(other.errors)

    def percentiles(self, qs: tuple[float, ...] = (50, 90, 99, 99.9)) -> dict[float, float]:
        ordered = sorted(self.latencies)
        return {q: percentile(ordered, q) for q in qs}


Progress = Callable[[int, int], None]  # (sent, acked) so far


class LoadDevices:
    """The load lamps' own state: last ts, seq and energy (Wh) per device."""

    def __init__(self, count: int, first: int = 0) -> None:
        self.last_ts = [0] * count
        self.seqs = [0] * count
        # Years of service so far, different per lamp; whole Wh so the text is exact.
        self.energy_wh = [1_000_000 + ((first + i) * 7919) % 5_000_000 for i in range(count)]

    def payload(self, i: int, now_ms: int, lit: bool, variant: int) -> bytes:
        ts = now_ms if now_ms > self.last_ts[i] else self.last_ts[i] + 1
        self.last_ts[i] = ts
        seq = self.seqs[i] = self.seqs[i] + 1
        volts, amps, watts = _VARIANTS[variant & 3]
        if lit:
            self.energy_wh[i] += 3  # ~150 W for ~70 s of a lamp's life per reading
            kwh, wh = divmod(self.energy_wh[i], 1000)
            return _TEMPLATE % (ts, seq, volts, amps, watts, kwh, wh)
        kwh, wh = divmod(self.energy_wh[i], 1000)
        return _OFF_TEMPLATE % (ts, seq, volts, kwh, wh)


async def _connection(
    opts: LoadOptions, index: int, rate: float, devices: list[str], counters: list[int]
) -> LoadResult:
    loop = asyncio.get_running_loop()
    try:
        transport, proto = await loop.create_connection(QoS1Publisher, opts.host, opts.port)
    except OSError as exc:
        raise PublishError(f"cannot connect to mqtt://{opts.host}:{opts.port}: {exc}") from exc
    transport.write(
        connect_packet(
            f"{opts.client_id}-{opts.worker}-{index}",
            username=opts.username,
            password=opts.password,
        )
    )
    try:
        await asyncio.wait_for(proto.connected, 10)
    except (TimeoutError, ConnectionError) as exc:
        transport.close()
        raise PublishError(f"mqtt://{opts.host}:{opts.port}: {exc or 'no CONNACK'}") from exc
    topics = [topic_field(device_topic(opts.prefix, "lamp", d, "telemetry")) for d in devices]
    state = LoadDevices(len(devices), first=opts.worker * 100_003 + index * len(devices))
    sun = SunTimes(opts.location)
    ndev = len(devices)
    window = opts.window
    result = LoadResult()
    t0 = time.perf_counter()
    end = t0 + opts.duration_s
    sent = mid = k = 0
    while not proto.closed.done():
        now = time.perf_counter()
        if now >= end:
            break
        due = (sent + MAX_BATCH) if math.isinf(rate) else int(rate * (now - t0)) + 1
        room = window - proto.inflight
        n = min(due - sent, room, MAX_BATCH)
        if n <= 0:
            if room <= 0:
                proto.wakeup.clear()
                if proto.inflight >= window:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(proto.wakeup.wait(), max(0.001, end - now))
            else:
                await asyncio.sleep(TICK_S)
            continue
        ts = int(time.time() * 1000)
        lit = sun.is_night(ts)
        packets: list[bytes] = []
        mids: list[int] = []
        for _ in range(n):
            mid = mid % 65535 + 1
            i = k % ndev
            k += 1
            payload = state.payload(i, ts, lit, k)
            packets.append(publish_packet(topics[i], mid, payload))
            mids.append(mid)
        proto.write_batch(packets, mids)
        sent += n
        counters[0] = sent
        counters[1] = proto.acked
        if not proto.can_write.is_set():
            await proto.can_write.wait()
        await asyncio.sleep(0)
    result.send_s = time.perf_counter() - t0
    drain_until = time.perf_counter() + 15.0
    while proto.acked < sent and time.perf_counter() < drain_until and not proto.closed.done():
        proto.wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proto.wakeup.wait(), 0.2)
    result.total_s = time.perf_counter() - t0
    result.sent, result.acked = sent, proto.acked
    counters[0], counters[1] = sent, proto.acked
    result.latencies = proto.latencies
    if proto.acked < sent:
        result.errors.append(f"connection {index}: {sent - proto.acked} publishes never acked")
    transport.write(b"\xe0\x00")  # DISCONNECT
    transport.close()
    return result


async def run_worker(
    opts: LoadOptions, progress: Progress | None = None, shared: Any = None
) -> LoadResult:
    """One process's share: `opts.connections` connections at `opts.rate` together."""
    # Each device belongs to one process and one connection, so its ts stay unique and ordered.
    names = [f"LD-{n + 1:05d}" for n in range(opts.devices)][
        opts.worker :: max(1, opts.processes)
    ] or [f"LD-P{opts.worker:03d}"]
    conns = max(1, min(opts.connections, len(names)))
    per_conn = opts.rate / conns
    counters = [[0, 0] for _ in range(conns)]
    tasks = [
        asyncio.create_task(
            _connection(opts, c, per_conn, names[c::conns], counters[c]),
            name=f"load-conn-{c}",
        )
        for c in range(conns)
    ]

    async def report() -> None:
        while True:
            await asyncio.sleep(0.2)
            sent = sum(c[0] for c in counters)
            acked = sum(c[1] for c in counters)
            if shared is not None:
                shared[2 * opts.worker], shared[2 * opts.worker + 1] = sent, acked
            if progress is not None:
                progress(sent, acked)

    reporter = asyncio.create_task(report(), name="load-progress")
    try:
        results = await asyncio.gather(*tasks)
    finally:
        reporter.cancel()
    total = LoadResult()
    for r in results:
        total.merge(r)
    if shared is not None:
        shared[2 * opts.worker], shared[2 * opts.worker + 1] = total.sent, total.acked
    return total


def _worker_main(opts: LoadOptions, shared: Any) -> tuple[int, int, float, float, bytes, list[str]]:
    result = asyncio.run(run_worker(opts, shared=shared))
    return (
        result.sent,
        result.acked,
        result.send_s,
        result.total_s,
        result.latencies.tobytes(),
        result.errors,
    )


_shared: Any = None


def _init_worker(shared: Any) -> None:
    global _shared
    _shared = shared


def _worker_entry(opts: LoadOptions) -> tuple[int, int, float, float, bytes, list[str]]:
    return _worker_main(opts, _shared)


def run_load(opts: LoadOptions, progress: Progress | None = None) -> LoadResult:
    """Run the load; blocking. Several processes when `opts.processes` > 1."""
    if opts.processes <= 1:
        return asyncio.run(run_worker(opts, progress))
    procs = opts.processes
    ctx = multiprocessing.get_context("spawn")
    shared = ctx.Array("q", 2 * procs, lock=False)
    shares = [
        replace(
            opts,
            rate=opts.rate / procs,
            connections=max(1, opts.connections // procs),
            worker=w,
        )
        for w in range(procs)
    ]
    total = LoadResult()
    with ProcessPoolExecutor(
        procs, mp_context=ctx, initializer=_init_worker, initargs=(shared,)
    ) as pool:
        futures = [pool.submit(_worker_entry, share) for share in shares]
        while not all(f.done() for f in futures):
            time.sleep(0.2)
            if progress is not None:
                sent = sum(shared[2 * w] for w in range(procs))
                acked = sum(shared[2 * w + 1] for w in range(procs))
                progress(sent, acked)
        for f in futures:
            sent, acked, send_s, total_s, lat, errors = f.result()
            part = LoadResult(sent, acked, send_s, total_s, array("d"), errors)
            part.latencies.frombytes(lat)
            total.merge(part)
    return total
