"""HTTP: the control centre's figures (contract §7), as an APIRouter the app mounts.

    GET /api/kpi/lighting?date=YYYY-MM-DD   the lighting rate of the night starting that local date
    GET /api/kpi/online                      devices heard within hold_intervals × report interval
    GET /api/kpi/flood                       every waterlogging point: depth, level, trend, rain
    GET /api/kpi/cases?date=YYYY-MM-DD       case figures of the alerts raised that local day
    GET /api/kpi/overview                    the page header's figures
    GET /api/devices                         the registry for the map, with each device's state
    GET /api/series?device=&field=&from=&to=&step=   mean/min/max per step (≤ figures.max_points)
    GET /api/reports/daily?date=&format=json|html

Bad input answers 400 with a message; a store that does not answer, 503.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from alerts.api import ErrorBody
from alerts.config import parse_duration
from alerts.model import parse_time
from figures.errors import BadQuery, StoreReadError

if TYPE_CHECKING:
    from figures.report import DailyReports
    from figures.service import Figures


def parse_date(text: str | None) -> dt.date | None:
    if text is None or text == "":
        return None
    try:
        date = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise HTTPException(400, f"date must be YYYY-MM-DD, got {text[:40]!r}") from None
    if not 1970 <= date.year <= 2200:  # beyond it the night's sunrise may not be a datetime
        raise HTTPException(400, "date must be between 1970 and 2200")
    return date


LATEST_MS = int(dt.datetime(2200, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
MAX_STEP_S = 400 * 86400.0


def _time(name: str, text: str | None) -> int | None:
    if text is None or text == "":
        return None
    try:
        ms = parse_time(text)
    except ValueError:
        raise HTTPException(
            400, f"{name} must be RFC 3339 with an offset or epoch ms, got {text[:40]!r}"
        ) from None
    if not 0 <= ms < LATEST_MS:  # beyond it the stores (InfluxDB ends in 2262) cannot answer
        raise HTTPException(400, f"{name} must be between 1970 and 2200")
    return ms


def _step(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        value = parse_duration(text)
        step = float(value)
    except (TypeError, ValueError):
        raise HTTPException(
            400, f"step must be a duration such as 60s or 5m, got {text[:40]!r}"
        ) from None
    if not step > 0:
        raise HTTPException(400, "step must be > 0")
    if step > MAX_STEP_S:  # inf too: a step longer than the longest series is no question
        raise HTTPException(400, "step must be at most 400 days")
    return step


def _err(text: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": text}


# What the figures answer besides 200, in the OpenAPI document (the API's own checks hold us to it).
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _err("a bad question: unknown device or field, bad date, time or step"),
    401: _err("a token is required to read (http.read_token_required) and none matched"),
    422: _err("a query parameter is not valid"),
    503: _err("the point store or the alert store does not answer"),
}
REPORT_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: _err("reports are switched off (reports.enabled)"),
}


# The page's own files and the vendored chart library (package data, served as they are).
STATIC_TYPES = {
    "figures.js": "text/javascript; charset=utf-8",
    "figures.css": "text/css; charset=utf-8",
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
}


def _static(name: str) -> bytes:
    from importlib import resources

    return resources.files("figures").joinpath(f"static/{name}").read_bytes()


def build_router(figures: Figures, reports: DailyReports | None) -> APIRouter:
    router = APIRouter()
    files = {name: _static(name) for name in STATIC_TYPES}

    @router.get("/static/figures/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in files:
            raise HTTPException(404, "no such file")
        return Response(
            files[name],
            media_type=STATIC_TYPES[name],
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    async def guarded(coro: Any) -> Any:
        try:
            return await coro
        except BadQuery as exc:
            raise HTTPException(400, str(exc)) from exc
        except StoreReadError as exc:
            raise HTTPException(503, str(exc)) from exc

    @router.get("/api/kpi/lighting", responses=ERRORS)
    async def lighting(date: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await guarded(figures.lighting(parse_date(date)))
        return result

    @router.get("/api/kpi/online", responses=ERRORS)
    async def online(devices: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = await guarded(figures.online())
        if not devices:
            result.pop("devices", None)
        return result

    @router.get("/api/kpi/flood", responses=ERRORS)
    async def flood() -> dict[str, Any]:
        result: dict[str, Any] = await guarded(figures.flood())
        return result

    @router.get("/api/kpi/cases", responses=ERRORS)
    async def cases(date: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await guarded(figures.cases(parse_date(date)))
        return result

    @router.get("/api/kpi/overview", responses=ERRORS)
    async def overview() -> dict[str, Any]:
        result: dict[str, Any] = await guarded(figures.overview())
        return result

    @router.get("/api/devices", responses=ERRORS)
    async def devices() -> dict[str, Any]:
        result: dict[str, Any] = await guarded(figures.devices())
        return result

    @router.get("/api/series", responses=ERRORS)
    async def series(
        field: Annotated[str, Query(min_length=1, max_length=64)],
        device: Annotated[str | None, Query(max_length=64)] = None,
        kind: Annotated[str | None, Query(max_length=32)] = None,
        from_: Annotated[str | None, Query(alias="from")] = None,
        to: str | None = None,
        step: str | None = None,
    ) -> dict[str, Any]:
        result: dict[str, Any] = await guarded(
            figures.series(
                device=device,
                kind=kind,
                field=field,
                start=_time("from", from_),
                end=_time("to", to),
                step_s=_step(step),
            )
        )
        return result

    @router.get("/api/reports/daily", response_model=None, responses=REPORT_ERRORS)
    async def daily(date: str | None = None, format: str = "json") -> Any:
        if reports is None:
            raise HTTPException(404, "reports are switched off (reports.enabled)")
        if format not in ("json", "html"):
            raise HTTPException(400, "format must be json or html")
        day = parse_date(date) or figures.today()
        report = await guarded(reports.get(day))
        if format == "html":
            from figures.report_html import render_html

            return HTMLResponse(render_html(report))
        return report

    return router
