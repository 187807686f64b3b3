"""`streetwatch alerts …` (the alert API from a terminal) and `streetwatch notify test --crew NAME`.

    streetwatch alerts list [--state open] [--rule R] [--device D] [--severity S] [--json]
    streetwatch alerts show ID
    streetwatch alerts ack|resolve|close ID [--note TEXT]      (resolve: [--force])
    streetwatch alerts dispatch ID --assignee CREW [--note TEXT]

`--url` (default `$STREETWATCH_URL` or http://127.0.0.1:8080) and a bearer token from `--token` or
`$STREETWATCH_TOKEN` (needed for the actions). Tables for people, `--json` for scripts. Exit 0 on
success, 1 when the service refused or could not be reached (one line on stderr), 2 on misuse.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import httpx

from devices.catalog import language, rule_name, severity_name, state_name

ACTIONS = ("ack", "dispatch", "resolve", "close")


def register(sub: Any) -> None:
    alerts = sub.add_parser("alerts", help="list, show and act on alerts through the HTTP API")
    alerts.add_argument("--url", default=None, help="service address (default $STREETWATCH_URL)")
    alerts.add_argument("--token", default=None, help="bearer token (default $STREETWATCH_TOKEN)")
    alerts.add_argument("--json", action="store_true", help="JSON output for scripts")
    alerts.add_argument("--lang", choices=("zh", "en"), default="zh", help="table language")
    verbs = alerts.add_subparsers(dest="verb", required=True)
    ls = verbs.add_parser("list", help="alerts, most recently updated first")
    ls.add_argument("--state", default=None, help="a state, several (a,b) or open")
    ls.add_argument("--rule", default=None)
    ls.add_argument("--device", default=None)
    ls.add_argument("--severity", default=None)
    ls.add_argument("--since", default=None, help="RFC 3339 time or epoch ms")
    ls.add_argument("--limit", type=int, default=None)
    show = verbs.add_parser("show", help="one alert and its history")
    show.add_argument("id")
    for verb in ACTIONS:
        act = verbs.add_parser(verb, help=f"{verb} an alert")
        act.add_argument("id")
        act.add_argument("--note", default=None)
        if verb == "dispatch":
            act.add_argument("--assignee", required=True, help="the crew or person sent")
        if verb == "resolve":
            act.add_argument("--force", action="store_true", help="even if the condition holds")
    alerts.set_defaults(handler=run_alerts)

    notify = sub.add_parser("notify", help="crew notices")
    notify_verbs = notify.add_subparsers(dest="verb", required=True)
    test = notify_verbs.add_parser("test", help="send a test notice down each channel of a crew")
    test.add_argument("-c", "--config", default=None, help="config.yaml")
    test.add_argument("--crew", required=True, help="crew name as in notify.crews")
    test.add_argument("--json", action="store_true")
    notify.set_defaults(handler=run_notify)


def _fail(message: str, code: int = 1) -> int:
    print(f"streetwatch: {message}", file=sys.stderr)
    return code


def run_alerts(args: argparse.Namespace) -> int:
    base = (args.url or os.environ.get("STREETWATCH_URL") or "http://127.0.0.1:8080").rstrip("/")
    token = args.token or os.environ.get("STREETWATCH_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=15.0) as client:
            return _alerts(client, args, token)
    except httpx.HTTPError as exc:
        return _fail(f"cannot reach {base}: {exc}")


def _answer(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
            detail = body.get("detail", body) if isinstance(body, dict) else body
        except ValueError:
            detail = response.text[:200]
        raise _Refused(f"{response.status_code}: {detail}")
    return response.json()


class _Refused(Exception):
    pass


def _alerts(client: httpx.Client, args: argparse.Namespace, token: str | None) -> int:
    lang = language(args.lang)
    try:
        if args.verb == "list":
            params = {
                k: v
                for k in ("state", "rule", "device", "severity", "since", "limit")
                if (v := getattr(args, k)) is not None
            }
            items = _answer(client.get("/api/alerts", params=params))["items"]
            if args.json:
                _print_json({"items": items})
            else:
                _table_alerts(items, lang)
            return 0
        if args.verb == "show":
            alert = _answer(client.get(f"/api/alerts/{args.id}"))
            history = _answer(client.get(f"/api/alerts/{args.id}/history"))["items"]
            if args.json:
                _print_json({"alert": alert, "history": history})
            else:
                _show(alert, history, lang)
            return 0
        if not token:
            return _fail("this action needs a token: --token or STREETWATCH_TOKEN", 2)
        body: dict[str, Any] = {}
        if args.note is not None:
            body["note"] = args.note
        if args.verb == "dispatch":
            body["assignee"] = args.assignee
        if args.verb == "resolve" and args.force:
            body["force"] = True
        alert = _answer(client.post(f"/api/alerts/{args.id}/{args.verb}", json=body))
        if args.json:
            _print_json(alert)
        else:
            _table_alerts([alert], lang)
        return 0
    except _Refused as exc:
        return _fail(str(exc))


def _console() -> Any:
    from rich.console import Console

    # Piped output keeps whole lines (ids are copied from it), whatever the terminal's width.
    return Console(markup=False, highlight=False, width=None if sys.stdout.isatty() else 200)


def _print_json(data: Any) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _table_alerts(items: list[dict[str, Any]], lang: Any) -> None:
    from rich.table import Table

    zh = lang == "zh"
    table = Table(
        *(
            ("编号", "规则", "设备", "道路", "等级", "状态", "发生时间")
            if zh
            else ("id", "rule", "device", "road", "severity", "state", "raised")
        )
    )
    for a in items:
        table.add_row(
            a["id"],
            rule_name(a["rule"], lang),
            a["device"],
            a.get("road") or "",
            severity_name(a["severity"], lang),
            state_name(a["state"], lang),
            a["raised_at"],
        )
    _console().print(table)


def _show(alert: dict[str, Any], history: list[dict[str, Any]], lang: Any) -> None:
    from rich.table import Table

    _table_alerts([alert], lang)
    console = _console()
    console.print(alert.get("message", ""))
    table = Table("seq", "at", "action", "who", "state", "note")
    for h in history:
        table.add_row(
            str(h["seq"]), h["at"], h["action"], h["who"], h["state_to"], h.get("note") or ""
        )
    console.print(table)


def run_notify(args: argparse.Namespace) -> int:
    from notify.routing import channel_id
    from notify.sender import send_now
    from notify.text import Writer
    from streetwatch.cli import _config_path
    from streetwatch.config import load_settings

    settings = load_settings(_config_path(args.config))
    crews = {c.name: c for c in settings.notify.crews}
    crew = crews.get(args.crew)
    if crew is None:
        known = ", ".join(crews) or "none configured"
        return _fail(f"no crew {args.crew!r} in notify.crews ({known})", 2)
    config = settings.notify
    writer = Writer(
        language=config.language,
        timezone=settings.location.timezone,
        base_url=config.base_url,
        map_url=config.map_url,
    )
    title, body = writer.test_notice(crew.name)
    results: list[dict[str, Any]] = []
    for url in crew.urls:
        error = send_now(url, title, body)
        results.append({"channel": channel_id(url), "ok": error is None, "error": error})
    if args.json:
        _print_json({"crew": crew.name, "channels": results})
    else:
        from rich.table import Table

        table = Table("channel", "result")
        for r in results:
            table.add_row(str(r["channel"]), "ok" if r["ok"] else f"FAILED: {r['error']}")
        _console().print(table)
    return 0 if all(r["ok"] for r in results) else 1
