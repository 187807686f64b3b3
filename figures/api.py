"""HTTP: the control centre's figures (contract §7), as an APIRouter the app mounts.

    GET /api/kpi/lighting?date=YYYY-MM-DD   the lighting rate of the night starting that local date
    GET /api/kpi/online                      devices heard within hold_intervals × report interval
    GET /api/kpi/flood                       every waterlogging point: depth, level, trend, rain
    GET /api/kpi/cases?date=YYYY-MM-DD       case figures of the alerts raised that local day
    GET /api/kpi/overview                    the page header's figures
    GET /api/devices                         the registry for the map, with each device's state
    GET /api/series?device=&field=&from=&to=&step=   mean/min/max per step (≤ figures.max_points)
    GET /api/reports/daily?date=&format=json|html

As on the alert routes: a query the figures cannot answer is 422 with `{"detail": "…"}`, a device
the registry does not know 404, a store that does not answer 503. What each route answers is in the
OpenAPI document (`figures.schemas`), and tests/test_api_schema.py holds the routes to it.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from alerts.api import error_doc
from alerts.config import parse_duration
from alerts.model import parse_time
from figures import schemas
from figures.errors import BadQuery, StoreReadError, UnknownDevice
from figures.service import SERIES_FIELDS

if TYPE_CHECKING:
    from figures.report import DailyReports
    from figures.service import Figures

# A real calendar date from 1970 to 2200 (beyond them a night's sunrise may not be a datetime), or
# empty (the default day). Exact, leap days included, so that the document says which dates are
# answered and a client never learns it from a 422.
_YEAR = r"(19[7-9][0-9]|20[0-9]{2}|21[0-9]{2}|2200)"
_LEAP = r"(19(7[26]|8[048]|9[26])|20([02468][048]|[13579][26])|21([02468][48]|[13579][26]|[2468]0))"
DATE_PATTERN = (
    rf"^({_YEAR}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
    rf"|{_YEAR}-(0[13-9]|1[0-2])-(29|30)"
    rf"|{_YEAR}-(0[13578]|1[02])-31"
    rf"|{_LEAP}-02-29"
    r")?$"
)
# 90, 90s, 5m, 1h30m (parse_duration's forms; 0 asks for the finest step allowed).
STEP_PATTERN = r"^([0-9]{1,9}(\.[0-9]{1,6})?|([0-9]{1,9}(\.[0-9]{1,6})?[smhd])+)$"
FIELDS = sorted({f for fields in SERIES_FIELDS.values() for f in fields})
FIELD_PATTERN = "^(" + "|".join(FIELDS) + ")$"

ERRORS: dict[int | str, dict[str, Any]] = {
    401: error_doc("a token is required to read (http.read_token_required) and none matched"),
    422: error_doc("a query parameter is not valid (the detail says which and why)"),
    503: error_doc("the point store or the alert store did not answer"),
}
DateQuery = Annotated[
    str | None,
    Query(
        pattern=DATE_PATTERN,
        description="a local date YYYY-MM-DD from 1970 to 2200; empty or left out: the default day",
        examples=["2026-07-14"],
    ),
]
TIME_DOC: dict[str, Any] = {
    "description": "RFC 3339 with an offset, or epoch milliseconds",
    "json_schema_extra": {"format": "date-time"},
}


def _doc(model: type[Any], more: dict[int | str, dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"response_model": None, "responses": {200: {"model": model}, **ERRORS, **(more or {})}}


def parse_date(text: str | None) -> dt.date | None:
    if text is None or text == "":
        return None
    try:
        date = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise HTTPException(422, f"date must be YYYY-MM-DD, got {text[:40]!r}") from None
    if not 1970 <= date.year <= 2200:  # beyond it the night's sunrise may not be a datetime
        raise HTTPException(422, "date must be between 1970 and 2200")
    return date


LATEST_MS = int(dt.datetime(2200, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
MAX_STEP_S = 400 * 86400.0


def _time(name: str, text: str | None) -> int | None:
    if text is None:
        return None
    try:
        ms = parse_time(text)
    except ValueError:
        raise HTTPException(
            422, f"{name} must be RFC 3339 with an offset or epoch ms, got {text[:40]!r}"
        ) from None
    if not 0 <= ms < LATEST_MS:  # beyond it the stores (InfluxDB ends in 2262) cannot answer
        raise HTTPException(422, f"{name} must be between 1970 and 2200")
    return ms


def _step(text: str | None) -> float | None:
    if text is None or text == "":
        return None
    try:
        value = parse_duration(text)
        step = float(value)
    except (TypeError, ValueError):
        raise HTTPException(
            422, f"step must be a duration such as 60s or 5m, got {text[:40]!r}"
        ) from None
    if not (math.isfinite(step) and step >= 0):  # "inf" would overflow the bucket arithmetic
        raise HTTPException(422, "step must be a duration ≥ 0")
    if step > MAX_STEP_S:  # a step longer than the longest series is no question
        raise HTTPException(422, "step must be at most 400 days")
    return step


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
        except UnknownDevice as exc:
            raise HTTPException(404, str(exc)) from exc
        except BadQuery as exc:
            raise HTTPException(422, str(exc)) from exc
        except StoreReadError as exc:
            raise HTTPException(503, str(exc)) from exc

    @router.get("/api/kpi/lighting", **_doc(schemas.Lighting))
    async def lighting(date: DateQuery = None) -> dict[str, Any]:
        result: dict[str, Any] = await guarded(figures.lighting(parse_date(date)))
        return result

    @router.get("/api/kpi/online", **_doc(schemas.Online))
    async def online(devices: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = await guarded(figures.online())
        if not devices:
            result.pop("devices", None)
        return result

    @router.get("/api/kpi/flood", **_doc(schemas.Flood))
    async def flood() -> dict[str, Any]:
        result: dict[str, Any] = await guarded(figures.flood())
        return result

    @router.get("/api/kpi/cases", **_doc(schemas.Cases))
    async def cases(date: DateQuery = None) -> dict[str, Any]:
        result: dict[str, Any] = await guarded(figures.cases(parse_date(date)))
        return result

    @router.get("/api/kpi/overview", **_doc(schemas.Overview))
    async def overview() -> dict[str, Any]:
        result: dict[str, Any] = await guarded(figures.overview())
        return result

    @router.get("/api/devices", **_doc(schemas.Devices))
    async def devices() -> dict[str, Any]:
        result: dict[str, Any] = await guarded(figures.devices())
        return result

    @router.get("/api/series", **_doc(schemas.Series, {404: error_doc("no device has that id")}))
    async def series(
        field: Annotated[str, Query(pattern=FIELD_PATTERN, description="a field of the kind")],
        device: Annotated[str | None, Query(max_length=64)] = None,
        kind: Literal["lamp", "waterlevel"] | None = None,
        from_: Annotated[str | None, Query(alias="from", **TIME_DOC)] = None,
        to: Annotated[str | None, Query(**TIME_DOC)] = None,
        step: Annotated[
            str | None,
            Query(
                pattern=STEP_PATTERN,
                description="the narrowest bucket wanted: 60s, 5m, 1h (0: the finest allowed)",
            ),
        ] = None,
    ) -> dict[str, Any]:
        """Mean, min and max per step. A schema-valid query may still be refused with 422 for
        what one parameter cannot say alone: a field of another kind than the device's, `from`
        not before `to`, more than 400 days."""
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

    report_doc = _doc(schemas.DailyReport, {404: error_doc("reports are switched off")})
    report_doc["responses"][200] = {
        "model": schemas.DailyReport,
        "description": "the report: JSON, or with format=html a page to print",
        "content": {"text/html": {"schema": {"type": "string"}}},
    }

    @router.get("/api/reports/daily", **report_doc)
    async def daily(date: DateQuery = None, format: Literal["json", "html"] = "json") -> Any:
        if reports is None:
            raise HTTPException(404, "reports are switched off (reports.enabled)")
        day = parse_date(date) or figures.today()
        report = await guarded(reports.get(day))
        if format == "html":
            from figures.report_html import render_html

            return HTMLResponse(render_html(report))
        return report

    return router
