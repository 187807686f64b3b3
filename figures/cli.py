"""`streetwatch report daily [--date YYYY-MM-DD] [--html FILE]`: the daily report in the terminal
(rich tables) or as print-ready HTML, read from the same stores the service writes."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    report = subparsers.add_parser("report", help="the control centre's reports")
    kinds = report.add_subparsers(dest="report_kind", required=True)
    daily = kinds.add_parser(
        "daily", help="the daily report (last night's lighting rate, cases, flood)"
    )
    daily.add_argument(
        "-c", "--config", default=None, help="config.yaml (default: ./config.yaml if present)"
    )
    daily.add_argument(
        "--date", default=None, help="the report's date, YYYY-MM-DD (default: today)"
    )
    daily.add_argument("--html", metavar="FILE", default=None, help="write print-ready HTML here")
    daily.add_argument("--json", action="store_true", help="print the report as JSON")
    daily.set_defaults(handler=run_daily)


def run_daily(args: argparse.Namespace) -> int:
    from streetwatch.cli import _config_path
    from streetwatch.config import load_settings

    date: dt.date | None = None
    if args.date:
        try:
            date = dt.date.fromisoformat(args.date)
        except ValueError:
            print(
                f"streetwatch report: --date must be YYYY-MM-DD, got {args.date!r}", file=sys.stderr
            )
            return 2
    settings = load_settings(_config_path(args.config))
    report = asyncio.run(_make(settings, date))
    if args.html:
        from figures.report_html import render_html

        Path(args.html).write_text(render_html(report), encoding="utf-8")
        print(f"wrote {args.html}")
        return 0
    if args.json:
        import orjson

        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    print_report(report)
    return 0


async def _make(settings: Any, date: dt.date | None) -> dict[str, Any]:
    from devices.registry import load_registry
    from figures.report import DailyReports
    from figures.service import Figures
    from streetwatch.errors import ConfigError

    try:
        registry = load_registry(settings.registry.path)
    except Exception as exc:
        raise ConfigError(f"registry.path: {exc}") from exc
    figures = Figures(settings, registry)
    reports = DailyReports(figures, settings.reports, settings.data_dir / "reports.sqlite")
    try:
        return await reports.get(date or figures.today())
    finally:
        reports.close()
        await figures.aclose()


def print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from figures.report_html import CLASS_ZH

    console = Console()
    night = report["night"]
    head = f"日报 Daily report {report['date']}"
    if report.get("provisional"):
        head += " (临时 provisional)"
    console.print(f"[bold]{head}[/bold]  night {night['from']} → {night['to']}")
    console.print(
        f"亮灯率 Lighting rate: [bold]{_s(night['overall']['rate'])} %[/bold] of {night['overall']['lamps']} lamps"
    )
    roads = Table(title="各道路亮灯率 Lighting rate by road")
    for col in ("道路 Road", "等级 Class", "灯 Lamps", "亮灯率 %", "目标 %", "OK"):
        roads.add_column(col)
    for r in night["by_road"]:
        ok = "" if r["ok"] is None else ("✔" if r["ok"] else "[red]✘[/red]")
        roads.add_row(
            r["road"],
            CLASS_ZH.get(r["road_class"] or "", r["road_class"] or ""),
            str(r["lamps"]),
            _s(r["rate"]),
            _s(r["target"]),
            ok,
        )
    console.print(roads)
    cases = report["cases"]
    table = Table(title="案件 Cases")
    for col in (
        "规则 Rule",
        "Opened",
        "Acked in time",
        "Closed in time",
        "Open",
        "Overdue",
        "MTTA min",
        "MTTR min",
    ):
        table.add_column(col)
    for r in [*cases["by_rule"], {"rule": "合计 total", **cases["overall"]}]:
        table.add_row(
            r["rule"],
            str(r["opened"]),
            str(r["acked_in_time"]),
            str(r["closed_in_time"]),
            str(r["still_open"]),
            str(r["overdue"]),
            _s(r["mtta_min"]),
            _s(r["mttr_min"]),
        )
    console.print(table)
    if report["flood"]:
        flood = Table(title="积水点超一级 Flood points over level 1")
        for col in ("Point", "Road", "Peak cm", "At", "Level", "Min over L1"):
            flood.add_column(col)
        for f in report["flood"]:
            flood.add_row(
                f["point"] or f["device"],
                f["road"] or "",
                _s(f["peak_cm"]),
                f["peak_at"],
                str(f["level"]),
                str(f["minutes_over_level1"]),
            )
        console.print(flood)
    if report["offline"]:
        off = Table(title="离线最久 Offline longest")
        for col in ("Device", "Kind", "Road", "Last seen"):
            off.add_column(col)
        for o in report["offline"]:
            off.add_row(o["device"], o["kind"], o["road"] or "", o["last_seen"] or "从未 never")
        console.print(off)


def _s(value: Any) -> str:
    return "—" if value is None else str(value)
