"""`streetwatch demo`: everything embedded, nothing to install beyond the pip package.

An amqtt broker in-process (MQTT 3.1.1), the service with the SQLite store, and a simulated fleet
of the city's lamps and waterlogging points with faults on a sped-up clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streetwatch.config import load_settings

log = logging.getLogger("streetwatch.demo")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _pick_port(host: str, wanted: int) -> int:
    if wanted and _port_free(host, wanted):
        return wanted
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def _start_broker(host: str, port: int) -> Any:
    from amqtt.broker import Broker

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    return broker


def _demo_notices(host: str, http_port: int, crews: list[Any]) -> tuple[Any, dict[str, Any]]:
    """Without crews in the config, the demo starts a local receiver (apprise json://) for a demo
    crew and prints each notice it gets, as a crew member's phone would show it."""
    import secrets

    from notify.receiver import JsonReceiver

    notify: dict[str, Any] = {"base_url": f"http://{host}:{http_port}"}
    if crews:
        return None, notify

    def show(notice: dict[str, Any]) -> None:
        body = "\n".join(f"    {line}" for line in str(notice["message"]).splitlines())
        print(f"\n📱 演示维修班 ← {notice['title']}\n{body}", flush=True)

    receiver = JsonReceiver(_pick_port(host, 0), host=host, on_notice=show).start()
    notify |= {
        "link_secret": secrets.token_urlsafe(16),
        "crews": [{"name": "演示维修班", "urls": [receiver.url("demo")]}],
    }
    return receiver, notify


async def run_demo(args: argparse.Namespace, config_path: str | None) -> int:
    from simulator.demo import run_demo_fleet, write_demo_registry
    from streetwatch.app import Service

    host = "127.0.0.1"
    # amqtt and its transitions library log every connection at INFO: keep the demo's output
    # to what a newcomer needs.
    for noisy in ("amqtt", "transitions", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    base = load_settings(config_path)
    data_dir = Path(args.data_dir or Path(base.storage.data_dir) / "demo")
    data_dir.mkdir(parents=True, exist_ok=True)
    mqtt_port = _pick_port(host, args.mqtt_port)
    http_port = _pick_port(host, args.port if args.port is not None else base.http.port)
    registry = data_dir / "registry.csv"
    write_demo_registry(registry, speed=args.speed)
    receiver, notify = _demo_notices(host, http_port, base.notify.crews)

    settings = load_settings(
        config_path,
        overrides={
            "mqtt": {
                "host": host,
                "port": mqtt_port,
                "protocol": "3.1.1",
                "client_id": "streetwatch-demo",
            },
            "storage": {"backend": "sqlite", "data_dir": str(data_dir)},
            "http": {"host": host, "port": http_port, "enabled": True},
            "registry": {"path": str(registry)},
            # The demo's report intervals are sped up (300 s / speed): the rules' event-time
            # ordering slack must stay well below three of them, or sensors that report a moment
            # after the first lamp would look "offline" from the start.
            "rules": {"clock": {"delay_s": min(10.0, 300.0 / args.speed)}},
            # The lighting rate counts from the demo's start: nobody watched the night before it.
            "figures": {"not_before": datetime.now(UTC).isoformat()},
            "notify": notify,
        },
    )
    broker = await _start_broker(host, mqtt_port)
    service = Service(settings)
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    fleet = asyncio.create_task(
        run_demo_fleet(
            host=host,
            port=mqtt_port,
            prefix=settings.mqtt.topic_prefix,
            speed=args.speed,
            stop=stop,
        ),
        name="demo-fleet",
    )
    url = f"http://{host}:{http_port}"
    print(
        f"""
streetwatch demo is running — a simulated fleet of Jining's lamps and waterlogging points,
reporting {args.speed:g}× faster than real time, with faults (a cabinet out, a lamp failure, a storm).

  control centre:  {url}/
  alerts (JSON):   {url}/api/alerts
  health, metrics: {url}/healthz   {url}/metrics
  MQTT broker:     mqtt://{host}:{mqtt_port}  (topics {settings.mqtt.topic_prefix}/#)
  data:            {data_dir} (points.sqlite, alerts.sqlite, deadletter.jsonl)
  crew notices:    {receiver.url() if receiver else "the crews of your config"} (printed here as they arrive)

Press Ctrl-C to stop.
""",
        flush=True,
    )
    started = time.monotonic()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            if fleet.done():
                if fleet.exception() is not None:
                    log.error("demo fleet stopped", exc_info=fleet.exception())
                break
            if args.duration is not None and time.monotonic() - started >= args.duration:
                break
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(fleet, timeout=5)
        open_alerts = []
        if service.alerting is not None:
            with contextlib.suppress(Exception):
                open_alerts = service.alerting.store.list(state="open")
        await service.stop()
        with contextlib.suppress(Exception):
            await broker.shutdown()
        if receiver is not None:
            receiver.stop()
    m = service.metrics
    print(
        f"demo stopped: {m.messages} messages, {m.points_written} points stored, "
        f"{sum(m.rejected.values())} dead-lettered, {len(open_alerts)} open alerts",
        file=sys.stderr,
    )
    return 0
