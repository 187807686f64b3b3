"""HTTP: the alert list and the lifecycle actions (contract §3), as an APIRouter the app mounts.

    GET  /api/alerts            ?state=&rule=&device=&severity=&since=&limit=&overdue=  → {"items": [...]}
    GET  /api/alerts/{id}       → alert (404 unknown)
    GET  /api/alerts/{id}/history → {"items": [change, ...]} (the audit trail)
    POST /api/alerts/{id}/ack | dispatch | resolve | close
         Authorization: Bearer <http.token>; optional JSON body {"who", "assignee", "note"}
         → the alert after the change; 401 bad/missing token, 403 no token configured,
           404 unknown id, 409 not allowed in the alert's state, 422 bad input.

`state` takes one state, several separated by commas, or `open` (all but closed). `since` is RFC 3339
with an offset, or epoch milliseconds, and keeps alerts updated at or after it.

`{id}` only matches the shape of an alert id (32 hex digits), so `/api/alerts/stream` (SSE, added on
the same prefix later) is never swallowed by the by-id route, whatever order the routes are mounted in.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.convertors import CONVERTOR_TYPES, Convertor, register_url_convertor

from alerts.errors import AlertNotFound, AlertStoreError, InvalidTransition
from alerts.model import Alert, parse_time
from alerts.store import AlertStore


class AlertIdConvertor(Convertor[str]):
    regex = "[0-9a-f]{32}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


if "alert_id" not in CONVERTOR_TYPES:
    register_url_convertor("alert_id", AlertIdConvertor())
ID = "{alert_id:alert_id}"


class ActionBody(BaseModel):
    """Body of a POST action; every field is optional except `assignee` for dispatch."""

    model_config = ConfigDict(extra="forbid")

    who: str | None = Field(None, min_length=1, max_length=128)
    assignee: str | None = Field(None, min_length=1, max_length=128)
    note: str | None = Field(None, max_length=4000)


def _require_token(token: str | None) -> Callable[[str | None], None]:
    def check(authorization: Annotated[str | None, Header()] = None) -> None:
        if not token:  # None or "": an empty token must never match an empty header
            # No token configured: POSTs are refused outright (403), whatever the request carries,
            # because no credential could make them acceptable (config http.token: null).
            raise HTTPException(403, "alert actions are disabled: set http.token to allow them")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            given.strip().encode(), token.encode()
        ):
            raise HTTPException(
                401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )

    return check


def build_router(
    store: AlertStore,
    *,
    token: str | None,
    default_limit: int = 100,
    max_limit: int = 1000,
    enabled: bool = True,
) -> APIRouter:
    """The /api/alerts routes over `store`. `token` is http.token (None: every POST gets 403)."""
    router = APIRouter(prefix="/api/alerts", tags=["alerts"])
    auth = Depends(_require_token(token))

    def _store() -> AlertStore:
        if not enabled:
            raise HTTPException(503, "alerts are disabled (alerts.enabled: false)")
        if not store.is_open:
            raise HTTPException(503, "the alert store is not open yet")
        return store

    def _json(alert: Alert) -> dict[str, Any]:
        return alert.to_json()

    @router.get("")
    def list_alerts(
        state: str | None = None,
        rule: str | None = None,
        device: str | None = None,
        severity: str | None = None,
        since: str | None = None,
        limit: Annotated[int | None, Query(ge=1)] = None,
        overdue: bool | None = None,
    ) -> dict[str, Any]:
        s = _store()
        try:
            since_ms = None if since is None else parse_time(since)
            items = s.list(
                state=state,
                rule=rule,
                device=device,
                severity=severity,
                since=since_ms,
                limit=min(limit or default_limit, max_limit),
                overdue=overdue,
            )
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {"items": [_json(a) for a in items]}

    @router.get(f"/{ID}")
    def get_alert(alert_id: str) -> dict[str, Any]:
        alert = _store().get(alert_id)
        if alert is None:
            raise HTTPException(404, f"no alert with id {alert_id!r}")
        return _json(alert)

    @router.get(f"/{ID}/history")
    def alert_history(alert_id: str) -> dict[str, Any]:
        try:
            changes = _store().history(alert_id)
        except AlertNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        return {"items": [c.to_json() for c in changes]}

    def _act(alert_id: str, action: Callable[[AlertStore], Alert]) -> Any:
        try:
            return _json(action(_store()))
        except AlertNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except InvalidTransition as exc:
            return JSONResponse(
                {"detail": str(exc), "state": exc.state, "action": exc.action}, status_code=409
            )
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        except AlertStoreError as exc:
            raise HTTPException(503, str(exc)) from exc

    # Who did it: the body's `who`, else a generic name (the token is shared, not personal).
    default_who = "operator"

    @router.post(f"/{ID}/ack", dependencies=[auth])
    def ack(alert_id: str, body: ActionBody | None = None) -> Any:
        b = body or ActionBody()
        return _act(alert_id, lambda s: s.ack(alert_id, b.who or default_who, b.note))

    @router.post(f"/{ID}/dispatch", dependencies=[auth])
    def dispatch(alert_id: str, body: ActionBody | None = None) -> Any:
        b = body or ActionBody()
        if not b.assignee:
            raise HTTPException(422, "dispatch needs an assignee (the crew or person sent)")
        assignee = b.assignee
        return _act(
            alert_id, lambda s: s.dispatch(alert_id, b.who or default_who, assignee, b.note)
        )

    @router.post(f"/{ID}/resolve", dependencies=[auth])
    def resolve(alert_id: str, body: ActionBody | None = None) -> Any:
        b = body or ActionBody()
        return _act(alert_id, lambda s: s.resolve(alert_id, b.who or default_who, b.note))

    @router.post(f"/{ID}/close", dependencies=[auth])
    def close(alert_id: str, body: ActionBody | None = None) -> Any:
        b = body or ActionBody()
        return _act(alert_id, lambda s: s.close(alert_id, b.who or default_who, b.note))

    return router
