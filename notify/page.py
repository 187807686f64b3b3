"""The one-tap ack page a crew opens from a notice: `GET/POST /a/{alert_id}?c={crew}&t={token}`.

A small page for a phone: what, where (with a map link), since when, the history, and an 确认
button with an optional note. The link is the credential (see `links`): it acts for one alert and
one crew until it expires, and the audit trail records the crew's name as `who`. Anything else — an
altered, expired or foreign link — gets a clear refusal page with a 4xx, never a 500.

Every piece of text on the page is escaped (registry and device text is untrusted), and the page is
served with a CSP that allows no script at all.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from alerts.errors import AlertError, AlertNotFound, InvalidTransition
from alerts.model import Alert, Change
from devices.catalog import Language, phrase, rule_name, severity_name, state_name
from notify import links
from notify.errors import LinkRefused

if TYPE_CHECKING:
    from notify.service import Notifier

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none';"
    " frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
STATUS = {"off": 404, "bad": 403, "expired": 410, "missing": 404, "unavailable": 503}
MAX_NOTE = 500


# What the page answers, for the OpenAPI document: always an HTML page, a refusal page on a 4xx/5xx.
def _html(text: str) -> dict[str, Any]:
    return {"description": text, "content": {"text/html": {"schema": {"type": "string"}}}}


PAGE_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: _html("the alert and its history, with the 确认 button while it is active"),
    403: _html("an altered or foreign link, or one for a crew no longer configured"),
    404: _html("ack links are switched off (no notify.link_secret), or no such alert"),
    410: _html("the link has expired"),
    503: _html("the alert store is not open (the service is starting or stopping)"),
}
ACK_ANSWERS: dict[int | str, dict[str, Any]] = {
    **PAGE_ANSWERS,
    200: _html("acknowledged: the page says so"),
    409: _html("already acknowledged (or further on): the page shows its state"),
}
# The 确认 form's body; the page reads it itself (bounded), so FastAPI does not declare it.
ACK_FORM = {
    "requestBody": {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "note": {
                            "type": "string",
                            "description": f"optional; cut to {MAX_NOTE} characters",
                        }
                    },
                }
            }
        },
    }
}

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;padding:12px;font-size:17px;line-height:1.45;
background:#f4f5f7;color:#111}
h1{font-size:20px;margin:4px 0 10px}
.card{background:#fff;border-radius:8px;padding:12px;margin-bottom:12px}
dt{color:#666;font-size:14px}dd{margin:0 0 8px}
.sev-critical{color:#b00020}.sev-major{color:#c25400}
textarea{width:100%;box-sizing:border-box;font-size:16px;min-height:60px}
button{width:100%;font-size:20px;padding:14px;margin-top:10px;background:#0a6cff;color:#fff;
border:0;border-radius:8px}
.ok{color:#0a7a2f;font-weight:bold}.refused{color:#b00020}
ol{padding-left:20px}li{margin-bottom:6px;font-size:15px}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _page(title: str, body: str, status: int = 200, lang: Language = "zh") -> HTMLResponse:
    doc = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>"
    )
    return HTMLResponse(doc, status_code=status, headers=HEADERS)


async def _read_form(request: Request, limit: int = 8192) -> bytes:
    """At most `limit` bytes of the body: a note is short, a huge body is not read into memory."""
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) >= limit:
            return data[:limit]
    return data


def build_page_router(notifier: Notifier) -> APIRouter:
    router = APIRouter(tags=["crew notices"])
    lang: Language = notifier.config.language
    store = notifier.store

    def refuse(reason: str) -> HTMLResponse:
        title = phrase("page.refused", lang)
        key = f"refuse.{reason}"
        body = f'<div class="card"><h1 class="refused">{_e(title)}</h1><p>{_e(phrase(key, lang))}</p></div>'
        return _page(title, body, STATUS.get(reason, 403), lang)

    def check(alert_id: str, crew: str, token: str) -> None:
        config = notifier.config
        if not notifier.enabled:
            raise LinkRefused("off")
        links.verify(config.link_secret, alert_id, crew, token, time.time())
        if crew not in notifier.router.by_crew:
            raise LinkRefused("bad")  # signed, but for a crew no longer configured

    def render(alert: Alert, history: list[Change], crew: str, token: str, done: str) -> str:
        place = notifier.place(alert)
        w = notifier.writer
        headline = f"【{severity_name(alert.severity, lang)}】{w.headline(alert)}"
        facts: list[tuple[str, str]] = []
        facts.append((phrase("label.road", lang), alert.road or phrase("road.unknown", lang)))
        facts.append((phrase("label.device", lang), alert.device))
        if place.point:
            facts.append((phrase("label.point", lang), place.point))
        if place.cabinet:
            facts.append((phrase("label.cabinet", lang), place.cabinet))
        if place.lat is not None and place.lon is not None:
            facts.append((phrase("label.coords", lang), f"{place.lat:.5f}, {place.lon:.5f}"))
        facts.append((phrase("label.since", lang), w.local_time(alert.raised_at)))
        if alert.value is not None:
            facts.append((phrase("label.value", lang), f"{alert.value:g}"))
        if alert.level is not None:
            facts.append((phrase("label.level", lang), str(alert.level)))
        facts.append((phrase("label.state", lang), state_name(alert.state, lang)))
        if alert.message:
            facts.append((phrase("label.detail", lang), alert.message))
        facts.append((phrase("label.alert_id", lang), alert.id))
        dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
        map_link = w.map_link(place)
        if map_link:
            dl += (
                f'<dt>{_e(phrase("label.map", lang))}</dt><dd><a href="{_e(map_link)}"'
                f' rel="noopener noreferrer">{_e(phrase("label.map", lang))}</a></dd>'
            )
        items = "".join(
            f"<li>{_e(w.local_time(c.at))} · {_e(c.action)} · {_e(c.who)}"
            + (f" · {_e(c.note)}" if c.note else "")
            + "</li>"
            for c in history[-20:]
        )
        action = f"/a/{quote(alert.id)}?c={quote(crew)}&t={quote(token)}"
        if done:
            form = f'<p class="ok" id="done">{_e(done)}</p>'
        elif alert.state == "active":
            form = (
                f'<form method="post" action="{_e(action)}">'
                f'<label for="note">{_e(phrase("page.note", lang))}</label>'
                f'<textarea id="note" name="note" maxlength="{MAX_NOTE}"></textarea>'
                f'<button type="submit" id="ack">{_e(phrase("page.ack", lang))}</button></form>'
            )
        else:
            form = f'<p id="state">{_e(phrase("page.not_active", lang, state=state_name(alert.state, lang)))}</p>'
        return (
            f'<div class="card"><h1 class="sev-{_e(alert.severity)}">{_e(headline)}</h1>'
            f"<dl>{dl}</dl>{form}</div>"
            f'<div class="card"><h2>{_e(phrase("page.history", lang))}</h2><ol>{items}</ol></div>'
        )

    def load(alert_id: str) -> tuple[Alert, list[Change]]:
        alert = store.get(alert_id)
        if alert is None:
            raise AlertNotFound(alert_id)
        return alert, store.history(alert_id)

    @router.get("/a/{alert_id}", response_class=HTMLResponse, responses=PAGE_ANSWERS)
    async def ack_page(alert_id: str, c: str = "", t: str = "") -> HTMLResponse:
        try:
            check(alert_id, c, t)
            alert, history = await run_in_threadpool(load, alert_id)
        except LinkRefused as exc:
            return refuse(exc.reason)
        except AlertNotFound:
            return refuse("missing")
        except AlertError:  # the store is closed (stopping): try again in a moment
            return refuse("unavailable")
        title = rule_name(alert.rule, lang)
        return _page(title, render(alert, history, c, t, ""), 200, lang)

    @router.post(
        "/a/{alert_id}", response_class=HTMLResponse, responses=ACK_ANSWERS, openapi_extra=ACK_FORM
    )
    async def ack(request: Request, alert_id: str, c: str = "", t: str = "") -> HTMLResponse:
        try:
            check(alert_id, c, t)
        except LinkRefused as exc:
            return refuse(exc.reason)
        raw = (await _read_form(request)).decode("utf-8", errors="replace")
        note = (parse_qs(raw).get("note") or [""])[0].strip()[:MAX_NOTE] or None
        done = phrase("page.acked", lang)
        status = 200
        try:
            await run_in_threadpool(store.ack, alert_id, c, note)
        except AlertNotFound:
            return refuse("missing")
        except InvalidTransition:
            done = ""  # already acknowledged (or further on): the page shows the state
            status = 409
        except AlertError:
            return refuse("unavailable")
        try:
            alert, history = await run_in_threadpool(load, alert_id)
        except AlertNotFound:
            return refuse("missing")
        except AlertError:
            return refuse("unavailable")
        return _page(rule_name(alert.rule, lang), render(alert, history, c, t, done), status, lang)

    return router
