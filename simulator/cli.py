"""`streetwatch simulate` and `streetwatch record` (registered by streetwatch.cli).

    simulate                         a generated city (790 lamps, 12 points) at 60× to the broker
    simulate --dry-run --seed 3      the same stream as JSONL on stdout (byte-identical per seed)
    simulate --scenario storm --check --api http://127.0.0.1:8080
    simulate --fault cabinet_out@23:30+90m --fault malformed:W-JAQ-01@1h,reason=not_utf8
    simulate --write-registry city.csv   write the generated fleet for the service, and exit
    simulate --replay night.jsonl --speed 10 --shift-to-now
    simulate --rate 30000 --duration 30s  load mode
    record --out night.jsonl --duration 1h

Broker and prefix default to the service's own environment (STREETWATCH_MQTT__HOST, …__PORT,
…__TOPIC_PREFIX), else 127.0.0.1:1883 and city/jining.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from devices.location import LocationConfig
from devices.topics import device_topic
from simulator.clock import (
    FUTURE_LIMIT_S,
    SERVICE_MAX_AGE_S,
    parse_duration,
    parse_speed,
    parse_start,
)
from simulator.errors import OptionError, SimulatorError
from simulator.faults import ALIASES, FAULT_KINDS, parse_fault_spec, resolve_faults
from simulator.fleet import (
    DEFAULT_LAMPS,
    DEFAULT_WATERLEVEL,
    Fleet,
    generate_fleet,
    load_fleet,
    write_registry,
)
from simulator.lamp import DEFAULT_DIMMING, parse_dimming
from simulator.malformed import DEVICE_REASONS
from simulator.progress import RunProgress, summary_lines
from simulator.publish import BrokerOptions, JsonlSink, MqttSink, SendStats, play
from simulator.storm import Storm
from simulator.stream import DEFAULT_PREFIX, Message, RunPlan, generate

# The most recent 18:00 whose run has ended: never older than the service accepts, on any date.
DEFAULT_START = "18:00"


def _env(key: str, default: str) -> str:
    return os.environ.get(f"STREETWATCH_MQTT__{key}", default)


def _add_broker_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("broker")
    g.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    g.add_argument("--port", type=int, default=int(_env("PORT", "1883")))
    g.add_argument("--username", default=os.environ.get("STREETWATCH_MQTT__USERNAME"))
    g.add_argument("--password", default=os.environ.get("STREETWATCH_MQTT__PASSWORD"))
    g.add_argument("--prefix", default=_env("TOPIC_PREFIX", DEFAULT_PREFIX), help="topic prefix")
    g.add_argument("--mqtt-version", default="3.1.1", choices=["3.1.1", "5"], help="MQTT protocol")
    g.add_argument("--client-id", default=None, help="prefix of the MQTT client ids")


def faults_help() -> str:
    """The epilog of `simulate --help`: every fault kind, what it does, and an example."""
    lines = [
        "faults (--fault KIND[:TARGET][@AT][+FOR][,key=value]; AT: 2h from the start or 23:30):"
    ]
    for kind, (target, what, example) in FAULT_KINDS.items():
        lines.append(f"  {kind} ({target}): {what}")
        lines.append(f"      --fault {example}")
    aliases = ", ".join(f"{a}={k}" for a, k in ALIASES.items())
    lines.append(f"  aliases: {aliases}")
    lines.append(
        "  group TARGET: a road name, a cabinet id, a device id, several joined by |, or all"
    )
    return "\n".join(lines)


def register(subparsers: Any) -> None:
    """Add `simulate` and `record` to the `streetwatch` command."""
    sim = subparsers.add_parser(
        "simulate",
        help="simulated lamps and waterlogging points: publish, dry-run, replay, scenarios, load",
        description=__doc__,
        epilog=faults_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fleet = sim.add_argument_group("fleet")
    fleet.add_argument("--registry", help="drive the devices of this registry CSV")
    fleet.add_argument("--lamps", type=int, default=DEFAULT_LAMPS, help="generated lamps")
    fleet.add_argument(
        "--waterlevel", type=int, default=DEFAULT_WATERLEVEL, help="generated points"
    )
    fleet.add_argument(
        "--report-interval",
        default="300s",
        help="generated devices' report interval: 300s, or per device one of 60s,300s,15m "
        "or within 60s..15m",
    )
    fleet.add_argument(
        "--write-registry", metavar="FILE", help="write the fleet as a registry CSV and exit"
    )
    when = sim.add_argument_group("time")
    when.add_argument(
        "--start",
        default=None,
        help="2026-07-15T18:00+08:00; a date 2026-07-15 (at the scenario's clock time); 18:00 "
        "(the most recent such run that has ended); now or now-12h (default: a scenario's own "
        f"clock time, else {DEFAULT_START})",
    )
    when.add_argument("--duration", default=None, help="12h, 90m, … (default 12h)")
    when.add_argument("--speed", default="60", help="times real time, or max (default 60)")
    when.add_argument("--seed", type=int, default=None, help="same seed, same bytes (default 1)")
    world = sim.add_argument_group("world")
    world.add_argument(
        "--storm",
        action="append",
        default=[],
        metavar="AT+DURATION[,total=MM][,peak=F][,points=ID|ID]",
        help="a Chicago design storm, e.g. 1h+2h,total=80,peak=0.4",
    )
    world.add_argument(
        "--dimming", default=None, help='dimming plan, e.g. "00:00-04:30=50" ("" = none)'
    )
    world.add_argument("--lat", type=float, default=None, help="latitude (default Jining)")
    world.add_argument("--lon", type=float, default=None, help="longitude")
    world.add_argument("--tz", default=None, help="time zone (default Asia/Shanghai)")
    world.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND[:TARGET][@AT][+FOR][,k=v]",
        help="inject a fault (repeatable); every kind with an example is listed below",
    )
    world.add_argument(
        "--max-payload-bytes", type=int, default=262_144, help="the service's limit (malformed)"
    )
    scen = sim.add_argument_group("scenario")
    scen.add_argument("--scenario", help="a shipped scenario (clear-night, storm) or a YAML file")
    scen.add_argument("--check", action="store_true", help="compare expected and raised alerts")
    scen.add_argument("--api", default="http://127.0.0.1:8080", help="the service's HTTP API")
    scen.add_argument("--check-timeout", default="60s", help="how long to wait for alerts")
    out = sim.add_argument_group("output")
    out.add_argument("--dry-run", action="store_true", help="write JSONL instead of publishing")
    out.add_argument("--out", help="JSONL file for --dry-run (default stdout)")
    out.add_argument("--replay", metavar="FILE", help="publish a recording (JSONL)")
    out.add_argument("--shift-to-now", action="store_true", help="move replayed ts to now")
    out.add_argument("--connections", type=int, default=None, help="MQTT connections")
    out.add_argument("--window", type=int, default=None, help="publishes in flight per connection")
    out.add_argument("--no-progress", action="store_true")
    out.add_argument(
        "--cleanup",
        action="store_true",
        help="clear the retained statuses a run of this fleet (or --replay FILE) left, and exit",
    )
    load = sim.add_argument_group("load")
    load.add_argument("--rate", default=None, help="load mode: msg/s (or max)")
    load.add_argument("--processes", type=int, default=1, help="load mode processes")
    load.add_argument("--devices", type=int, default=5000, help="load mode distinct lamps")
    _add_broker_args(sim)
    sim.set_defaults(handler=simulate_command)

    rec = subparsers.add_parser(
        "record", help="capture live device traffic from a broker into replayable JSONL"
    )
    rec.add_argument("--out", required=True, help="JSONL file ('-' for stdout)")
    rec.add_argument("--topic", action="append", default=None, help="topic filter(s)")
    rec.add_argument("--duration", default=None, help="stop after this long")
    rec.add_argument("--count", type=int, default=None, help="stop after this many messages")
    rec.add_argument("--include-alerts", action="store_true", help="keep {prefix}/alerts/…")
    _add_broker_args(rec)
    rec.set_defaults(handler=record_command)


def _broker(args: argparse.Namespace, *, connections: int = 4, window: int = 100) -> BrokerOptions:
    return BrokerOptions(
        host=args.host,
        port=args.port,
        username=args.username,
        password=args.password,
        protocol=args.mqtt_version,
        client_id=args.client_id,
        connections=connections,
        window=window,
    )


def _location(args: argparse.Namespace) -> LocationConfig:
    values = LocationConfig().model_dump()
    for key, option, value in (
        ("latitude", "--lat", args.lat),
        ("longitude", "--lon", args.lon),
        ("timezone", "--tz", args.tz),
    ):
        if value is None:
            continue
        values[key] = value
        try:
            LocationConfig.model_validate(values)
        except ValidationError as exc:
            raise OptionError(f"{option} {value}: {exc.errors()[0]['msg']}") from None
    try:
        ZoneInfo(values["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        raise OptionError(
            f"--tz {values['timezone']!r} is not a time zone (e.g. Asia/Shanghai)"
        ) from None
    return LocationConfig.model_validate(values)


STORM_KEYS = ("total", "peak", "points", "b", "c")


def parse_storm(text: str, fleet: Fleet | None = None) -> Storm:
    """`AT+DURATION[,total=80][,peak=0.4][,points=W-A|W-B][,b=10][,c=0.7]`."""
    head, *params = text.split(",")
    at, _, length = head.partition("+")
    opts: dict[str, str] = {}
    for param in params:
        key, eq, value = param.partition("=")
        if not eq or key not in STORM_KEYS:
            raise OptionError(
                f"--storm {text!r}: unknown setting {param!r} (known: {', '.join(STORM_KEYS)})"
            )
        opts[key] = value
    try:
        storm = Storm(
            start_s=parse_duration(at or "0", option="storm"),
            duration_s=parse_duration(length or "2h", option="storm"),
            total_mm=float(opts.get("total", 80)),
            peak=float(opts.get("peak", 0.4)),
            b=float(opts.get("b", 10.0)),
            c=float(opts.get("c", 0.7)),
            points=tuple(opts["points"].split("|")) if "points" in opts else None,
        )
    except ValueError as exc:
        raise OptionError(f"--storm {text!r}: {exc}") from exc
    if not (math.isfinite(storm.total_mm) and storm.total_mm <= 1000):
        raise OptionError(f"--storm {text!r}: total must be within 0 … 1000 mm")
    if not (0 < storm.b <= 100 and 0 < storm.c < 1.5):
        raise OptionError(f"--storm {text!r}: b must be within 0 … 100 and c within 0 … 1.5")
    if fleet is not None and storm.points is not None:
        points = {d.device_id for d in fleet.waterlevel}
        for point in storm.points:
            if point not in points:
                raise OptionError(f"--storm {text!r}: no waterlevel point {point!r} in the fleet")
    return storm


def parse_report_interval(text: str) -> float | tuple[float, ...] | tuple[float, float, str]:
    """`300s` (every device), `60s,300s,15m` (each device one of them) or `60s..15m` (a range)."""
    try:
        if ".." in text:
            lo_text, _, hi_text = text.partition("..")
            lo = parse_duration(lo_text, option="report-interval")
            hi = parse_duration(hi_text, option="report-interval")
            values: tuple[float, ...] = (lo, hi)
            if lo > hi:
                raise OptionError(f"--report-interval {text!r}: the range goes backwards")
        else:
            values = tuple(
                parse_duration(part, option="report-interval") for part in text.split(",")
            )
    except OptionError as exc:
        raise OptionError(f"{exc} (or A,B,C or A..B)") from None
    for value in values:
        if not 1.0 <= value <= 86400.0:
            raise OptionError(
                f"--report-interval {text!r}: every interval must be within 1 s … 1 d"
            )
    if ".." in text:
        return (values[0], values[1], "range")
    return values[0] if len(values) == 1 else values


def _check_counts(args: argparse.Namespace) -> None:
    for option, value, lo in (
        ("--connections", args.connections, 1),
        ("--window", args.window, 1),
        ("--processes", args.processes, 1),
        ("--devices", args.devices, 1),
        ("--max-payload-bytes", args.max_payload_bytes, 1024),
    ):
        if value is not None and value < lo:
            raise OptionError(f"{option} {value}: must be at least {lo}")
    _check_port(args.port)


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise OptionError(f"--port {port}: not a TCP port (1 … 65535)")


def check_modes(args: argparse.Namespace) -> None:
    """Options that make no sense together are refused before anything is sent."""
    if args.check:
        if not args.scenario:
            raise OptionError("--check needs --scenario (the alerts to expect come from it)")
        for flag, on in (
            ("--dry-run", args.dry_run),
            ("--replay", args.replay),
            ("--rate", args.rate is not None),
            ("--write-registry", args.write_registry),
            ("--cleanup", args.cleanup),
        ):
            if on:
                raise OptionError(f"--check cannot be used with {flag}: nothing would be checked")
    if args.cleanup and (args.dry_run or args.write_registry or args.rate is not None):
        raise OptionError(
            "--cleanup publishes to the broker: not with --dry-run, --rate or --write-registry"
        )
    if args.shift_to_now and not args.replay:
        raise OptionError("--shift-to-now needs --replay")
    if args.rate is not None and (args.replay or args.scenario or args.dry_run):
        raise OptionError(
            "--rate (load mode) cannot be used with --replay, --scenario or --dry-run"
        )


def build_plan(args: argparse.Namespace) -> tuple[RunPlan, Any]:
    """The run plan from the options (or a scenario with the options' overrides), all checked."""
    location = _location(args)
    if args.scenario:
        from simulator.scenario import load_scenario

        scenario = load_scenario(
            args.scenario,
            location=location,
            start=args.start,
            duration=args.duration,
            seed=args.seed,
            prefix=args.prefix,
        )
        pinned = scenario.pinned_seed
        if args.check and pinned is not None and args.seed not in {None, pinned}:
            raise OptionError(
                f"--seed {args.seed}: scenario {scenario.name} expects its alerts for seed "
                f"{scenario.pinned_seed} only (its storm peaks follow the seed); drop --seed "
                "to check it, or run without --check"
            )
        plan = scenario.plan
        if args.fault:
            extra = resolve_faults(
                [parse_fault_spec(f) for f in args.fault],
                plan.fleet,
                start_ms=plan.start_ms,
                tz=location.timezone,
                seed=plan.seed,
                duration_s=plan.duration_s,
            )
            plan.faults = [*plan.faults, *extra]
        plan.storms = [*plan.storms, *(parse_storm(s, plan.fleet) for s in args.storm)]
        if args.dimming is not None:
            plan.dimming = parse_dimming(args.dimming)
        plan.max_payload_bytes = args.max_payload_bytes
        return plan, scenario
    seed = 1 if args.seed is None else args.seed
    dimming = DEFAULT_DIMMING if args.dimming is None else parse_dimming(args.dimming)
    duration_s = parse_duration(args.duration or "12h")
    if duration_s <= 0:
        raise OptionError("--duration must be longer than 0")
    if args.registry:
        fleet = load_fleet(args.registry)
    else:
        fleet = generate_fleet(
            args.lamps,
            args.waterlevel,
            seed=seed,
            report_interval_s=parse_report_interval(args.report_interval),
        )
    if len(fleet) == 0:
        raise OptionError("the fleet is empty: give --lamps or --waterlevel more than 0")
    start_ms = parse_start(
        args.start or DEFAULT_START,
        tz=location.timezone,
        clock=DEFAULT_START,
        duration_s=duration_s,
    )
    faults = resolve_faults(
        [parse_fault_spec(f) for f in args.fault],
        fleet,
        start_ms=start_ms,
        tz=location.timezone,
        seed=seed,
        duration_s=duration_s,
    )
    plan = RunPlan(
        fleet=fleet,
        start_ms=start_ms,
        duration_s=duration_s,
        seed=seed,
        prefix=args.prefix,
        location=location,
        faults=faults,
        storms=[parse_storm(s, fleet) for s in args.storm],
        dimming=dimming,
        max_payload_bytes=args.max_payload_bytes,
    )
    return plan, None


def simulate_command(args: argparse.Namespace) -> int:
    try:
        return _simulate(args)
    except SimulatorError as exc:
        print(f"streetwatch simulate: {exc}", file=sys.stderr)
        return 2


def _open_out(path: str | None) -> IO[bytes] | None:
    """The --out file, opened before any work so a bad path fails first (None: stdout)."""
    if path is None or path == "-":
        return None
    try:
        return open(path, "wb")  # closed by the caller
    except OSError as exc:
        raise OptionError(f"--out {path}: {exc.strerror or exc}") from None


def _simulate(args: argparse.Namespace) -> int:
    check_modes(args)
    _check_counts(args)
    speed = parse_speed(args.speed)
    check_timeout = parse_duration(args.check_timeout, option="check-timeout")
    if args.rate is not None:
        return _load(args)
    if args.replay:
        return _replay(args, speed)
    plan, scenario = build_plan(args)
    if args.write_registry:
        try:
            write_registry(plan.fleet.devices, args.write_registry)
        except OSError as exc:
            raise OptionError(f"--write-registry {args.write_registry}: {exc}") from None
        print(
            f"wrote {len(plan.fleet)} devices ({len(plan.fleet.lamps)} lamps, "
            f"{len(plan.fleet.waterlevel)} waterlevel) to {args.write_registry}",
            file=sys.stderr,
        )
        return 0
    if args.cleanup:
        return _cleanup(args, status_topics(plan))
    if args.dry_run:
        return _dry_run(plan, args.out)
    progress = RunProgress(
        enabled=not args.no_progress,
        start_ms=plan.start_ms,
        duration_s=plan.duration_s,
        tz=plan.location.timezone,
        label=scenario.name if scenario is not None else "simulating",
    )
    end_ms = plan.start_ms + int((plan.duration_s or 0) * 1000)
    # A scenario file may pin its own date (a full `start:`); then --start is the way out too.
    pinned = " (the scenario's start: pins a date)" if scenario and args.start is None else ""
    _warn_window(plan.start_ms, end_ms, speed, "--start", pinned)
    since = time.time()  # --check judges only alerts raised from here on
    sink = MqttSink(_broker(args, connections=args.connections or 4, window=args.window or 100))
    stats = asyncio.run(_publish(generate(plan), sink, speed, progress))
    for line in summary_lines(stats, what="published", published=True):
        print(line, file=sys.stderr)
    if args.check:
        return _check(
            args, scenario, since_ms=plan.start_ms, started_s=since, timeout_s=check_timeout
        )
    return 0 if stats.failed == 0 else 1


def _warn_window(first_ms: int, last_ms: int, speed: float, flag: str, why: str = "") -> None:
    """One line before publishing when a default-config service would refuse the readings."""
    line = stale_warning(first_ms, last_ms, int(time.time() * 1000), speed, flag, why)
    if line is not None:
        print(f"streetwatch simulate: warning: {line}", file=sys.stderr)


def stale_warning(
    first_ms: int, last_ms: int, now_ms: int, speed: float, flag: str, why: str = ""
) -> str | None:
    """Why readings stamped `first_ms` … `last_ms`, sent from `now_ms` at `speed`, would be
    dead-lettered by a service with the default `ingest.max_age` (contract §1), or None.

    The first reading goes out at once and is the oldest on arrival; the last goes out after
    (last − first) / speed and is the furthest ahead of the service clock."""
    span_ms = max(0, last_ms - first_ms)
    sent_last_ms = now_ms + (0.0 if math.isinf(speed) else span_ms / speed)
    ahead_ms = last_ms - sent_last_ms
    if ahead_ms > FUTURE_LIMIT_S * 1000:
        return (
            f"readings run up to {ahead_ms / 60000:.0f} min ahead of now; the service "
            f"dead-letters those as ts_in_future (more than {FUTURE_LIMIT_S / 60:.0f} min): "
            f"use {flag} with an earlier time"
            + (" (e.g. --start now-12h, or drop --start)" if flag == "--start" else "")
        )
    age_ms = now_ms - first_ms
    if age_ms > SERVICE_MAX_AGE_S * 1000:
        fix = (
            "give --start a clock time (16:00: the most recent such night) or a date within "
            f"{SERVICE_MAX_AGE_S / 86400:g} days"
            if flag == "--start"
            else f"use {flag} to move them to now"
        )
        return (
            f"readings start {age_ms / 86_400_000:.0f} days ago; a service with the default "
            f"ingest.max_age ({SERVICE_MAX_AGE_S / 86400:g} days) dead-letters them as "
            f"ts_too_old{why}: {fix}"
        )
    return None


async def _publish(messages: Any, sink: MqttSink, speed: float, progress: RunProgress) -> SendStats:
    await sink.open()
    with progress:
        return await play(messages, sink, speed=speed, on_progress=progress.update)


def _dry_run(plan: RunPlan, out: str | None) -> int:
    opened = _open_out(out)
    handle: IO[bytes] = opened if opened is not None else sys.stdout.buffer
    sink = JsonlSink(handle)
    try:
        for message in generate(plan):
            sink.write(message)
        handle.flush()
    finally:
        if opened is not None:
            opened.close()
    sink.stats.finished = time.monotonic()
    for line in summary_lines(sink.stats, what="dry run", published=False):
        print(line, file=sys.stderr)
    return 0


def _check(
    args: argparse.Namespace,
    scenario: Any,
    *,
    since_ms: int,
    started_s: float,
    timeout_s: float,
) -> int:
    from simulator.check import report_lines, run_check

    result = asyncio.run(
        run_check(
            args.api,
            scenario.expected,
            scenario.scope,
            timeout_s=timeout_s,
            since_ms=since_ms,
            started_s=started_s,
        )
    )
    for line in report_lines(result):
        print(line)
    return 0 if result.ok else 1


def _cleanup(args: argparse.Namespace, topics: list[str]) -> int:
    """Clear the retained statuses a run left: an empty retained message on each status topic."""
    from simulator.cleanup import clear_retained_statuses

    count = asyncio.run(
        clear_retained_statuses(
            _broker(args, connections=args.connections or 1, window=args.window or 100), topics
        )
    )
    print(f"cleared {count:,} retained status topics", file=sys.stderr)
    return 0


def status_topics(plan: RunPlan) -> list[str]:
    return [
        device_topic(plan.prefix, d.kind, d.device_id, "status")
        for d in plan.fleet.devices
        if d.kind in {"lamp", "waterlevel"}
    ]


def _replay(args: argparse.Namespace, speed: float) -> int:
    from simulator.replay import (
        read_recording,
        recording_base_ms,
        shift_delta_ms,
        shifted,
    )

    messages = list(read_recording(args.replay))
    if not messages:
        raise OptionError(f"--replay {args.replay} holds no messages")
    if args.cleanup:
        statuses = sorted({m.topic for m in messages if m.topic.endswith("/status") and m.retain})
        return _cleanup(args, statuses)
    first = messages[0].offset_ms
    messages = [Message(m.offset_ms - first, m.topic, m.payload, m.retain) for m in messages]
    stream: Any = messages
    if args.shift_to_now:
        base = recording_base_ms(messages)
        if base is None:
            raise OptionError(f"--shift-to-now: {args.replay} holds no reading with a ts")
        delta = shift_delta_ms(base, messages[-1].offset_ms, int(time.time() * 1000), speed)
        stream = shifted(messages, delta)
    if args.dry_run:
        opened = _open_out(args.out)
        handle: IO[bytes] = opened if opened is not None else sys.stdout.buffer
        try:
            for message in stream:
                handle.write(message.to_jsonl())
            handle.flush()
        finally:
            if opened is not None:
                opened.close()
        return 0
    progress = RunProgress(
        enabled=not args.no_progress,
        duration_s=messages[-1].offset_ms / 1000,
        label=f"replay {Path(args.replay).name}",
    )
    if not args.shift_to_now:
        # The recording's own clock (its readings' ts at offset 0), not a garbage message's ts.
        live = recording_base_ms(messages)
        if live is not None:
            _warn_window(live, live + messages[-1].offset_ms, speed, "--shift-to-now")
    mqtt = MqttSink(_broker(args, connections=args.connections or 4, window=args.window or 100))
    stats = asyncio.run(_publish(stream, mqtt, speed, progress))
    for line in summary_lines(stats, what="replayed", published=True):
        print(line, file=sys.stderr)
    return 0 if stats.failed == 0 else 1


def _load(args: argparse.Namespace) -> int:
    from simulator.load import LoadOptions, run_load

    rate = parse_speed(args.rate)  # same grammar: a number or max
    duration = parse_duration(args.duration or "30s")
    if duration <= 0:
        raise OptionError("--duration must be longer than 0")
    location = _location(args)
    opts = LoadOptions(
        host=args.host,
        port=args.port,
        username=args.username,
        password=args.password,
        prefix=args.prefix,
        rate=rate,
        duration_s=duration,
        connections=args.connections or 16,
        processes=max(1, args.processes),
        devices=max(1, args.devices),
        window=args.window or 1000,
        client_id=args.client_id or f"streetwatch-load-{os.getpid()}",
        location=location,
    )
    progress = RunProgress(enabled=not args.no_progress, label="load", total=duration)
    t0 = time.monotonic()
    with progress:
        result = run_load(
            opts, lambda sent, acked: progress.update_load(sent, acked, time.monotonic() - t0)
        )
    pct = result.percentiles()
    target = "max" if math.isinf(rate) else f"{rate:,.0f}"
    print(
        f"load: target {target} msg/s over {opts.connections} connections x {opts.processes} "
        f"process(es), {duration:.0f} s"
    )
    print(
        f"  sent {result.sent:,}, acked {result.acked:,} (QoS 1) in {result.total_s:.2f} s: "
        f"achieved {result.rate:,.0f} msg/s"
    )
    print("  ack latency " + ", ".join(f"p{q:g} {v * 1000:.2f} ms" for q, v in pct.items()))
    for error in result.errors:
        print(f"  error: {error}", file=sys.stderr)
    return 0 if result.acked == result.sent else 1


def record_command(args: argparse.Namespace) -> int:
    try:
        return _record(args)
    except SimulatorError as exc:
        print(f"streetwatch record: {exc}", file=sys.stderr)
        return 2


def _record(args: argparse.Namespace) -> int:
    from simulator.record import record

    duration = None if args.duration is None else parse_duration(args.duration)
    if args.count is not None and args.count < 1:
        raise OptionError(f"--count {args.count}: must be at least 1")
    _check_port(args.port)
    opened = _open_out(args.out)
    options = _broker(args)
    if options.client_id is None:
        options = BrokerOptions(
            **{**_asdict(options), "client_id": f"streetwatch-record-{os.getpid()}"}
        )
    try:
        count = asyncio.run(
            record(
                options,
                opened if opened is not None else sys.stdout.buffer,
                prefix=args.prefix,
                topics=args.topic,
                duration_s=duration,
                count=args.count,
                include_alerts=args.include_alerts,
            )
        )
    finally:
        if opened is not None:
            opened.close()
    print(f"recorded {count:,} messages", file=sys.stderr)
    return 0


def _asdict(options: BrokerOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in options.__dataclass_fields__}


__all__ = ["DEVICE_REASONS", "build_plan", "parse_storm", "register"]
