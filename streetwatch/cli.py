"""`streetwatch` command line: run, demo, simulate, record, check-config."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from ingest.errors import MqttSeamError
from streetwatch.errors import ConfigError


def _add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", default=None, help="config.yaml (default: ./config.yaml if present)"
    )


def _config_path(arg: str | None) -> str | None:
    from pathlib import Path

    if arg is not None:
        return arg
    return "config.yaml" if Path("config.yaml").exists() else None


def _run(coro: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop where it is installed (Linux/macOS): the ingest spends much of its time in
    the event loop's socket and callback machinery, which uvloop does in C."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on the platforms we ship
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streetwatch",
        description="Streetlight and waterlogging telemetry: MQTT → InfluxDB + alerts.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the service")
    _add_config_arg(run)

    demo = sub.add_parser(
        "demo", help="run everything embedded: broker, service, SQLite store and a simulated fleet"
    )
    _add_config_arg(demo)
    demo.add_argument("--port", type=int, default=None, help="HTTP port (default: http.port)")
    demo.add_argument("--mqtt-port", type=int, default=1884, help="embedded broker port")
    demo.add_argument("--data-dir", default=None, help="where the demo keeps its files")
    demo.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    demo.add_argument("--speed", type=float, default=60.0, help="simulated-time speed-up")

    check = sub.add_parser(
        "check-config", help="validate the config and print the effective values"
    )
    _add_config_arg(check)

    from simulator.cli import register as register_simulator

    register_simulator(sub)
    from figures.cli import register as register_reports

    register_reports(sub)
    from notify.cli import register as register_notify

    register_notify(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Counters, not per-request log lines: the writer posts a batch every second.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "run":
            from streetwatch.app import run_service
            from streetwatch.config import load_settings

            settings = load_settings(_config_path(args.config))
            logging.getLogger().setLevel(settings.log.level)
            from streetwatch.broker_warnings import broker_warnings

            for warning in broker_warnings(settings):
                logging.getLogger("streetwatch").warning("%s", warning)
            return _run(run_service(settings))
        if args.command == "demo":
            from streetwatch.demo import run_demo

            return _run(run_demo(args, _config_path(args.config)))
        if args.command == "check-config":
            from streetwatch.config import load_settings

            settings = load_settings(_config_path(args.config))
            import json

            from streetwatch.config import redacted

            print(json.dumps(redacted(settings), indent=2, ensure_ascii=False))
            from notify.coverage import report_coverage

            report_coverage(settings)
            from streetwatch.broker_warnings import broker_warnings

            for warning in broker_warnings(settings):
                print(f"streetwatch: warning: {warning}", file=sys.stderr)
            return 0
        handler = getattr(args, "handler", None)
        if handler is not None:
            return int(handler(args) or 0)
    except ConfigError as exc:
        print(f"streetwatch: configuration error: {exc}", file=sys.stderr)
        return 2
    except MqttSeamError as exc:
        print(f"streetwatch: cannot start: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
