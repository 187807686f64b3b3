"""HTTP: the alert list and the lifecycle actions (contract §3), as an APIRouter the app mounts.

    GET  /api/alerts            ?state=&rule=&device=&severity=&since=&limit=&overdue=  → {"items": [...]}
    GET  /api/alerts/{id}       → alert (404 unknown)
    GET  /api/alerts/{id}/history → {"items": [change, ...]} (the audit trail)
    POST /api/alerts/{id}/ack | dispatch | resolve | close
         Authorization: Bearer <a token of http.tokens, or http.token>;
         optional JSON body {"note", "assignee", "force", "who"}
         → the alert after the change; 401 bad/missing token, 403 no token configured,
           404 unknown id, 409 not allowed in the alert's state (or the condition is still
           present: resolve needs force), 422 bad input.

The audit trail's `who` is the name of the token that matched (`operator` for http.token); a `who`
in the body is only kept beside it as a display note (`shown_as`).

`state` takes one state, several separated by commas, or `open` (all but closed). `since` is RFC 3339
with an offset, or epoch milliseconds, and keeps alerts updated at or after it.

Every handler is a plain function, so FastAPI runs it in its thread pool: a large list or a slow
disk never holds up the event loop the ingest and the rule engine run on. Every error body is
`{"detail": "…"}` (409 adds `state`, `action` and `reason`), as the OpenAPI document says.

`{id}` only matches the shape of an alert id (32 hex digits), so `/api/alerts/stream` (SSE, added on
the same prefix later) is never swallowed by the by-id route, whatever order the routes are mounted in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.convertors import CONVERTOR_TYPES, Convertor, register_url_convertor

from alerts.auth import Credentials, bearer
from alerts.errors import AlertNotFound, AlertStoreError, ConditionStillPresent, InvalidTransition
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
    """Body of a POST action; every field is optional (dispatch: see DispatchBody)."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=4000)
    assignee: str | None = Field(None, min_length=1, max_length=128)
    # resolve: also while the condition is still present (needs a note saying why)
    force: bool = False
    # A display name for the audit trail, kept beside the token's name (never instead of it).
    who: str | None = Field(None, min_length=1, max_length=128)


class DispatchBody(ActionBody):
    """Dispatch names the crew or person sent."""

    assignee: str = Field(min_length=1, max_length=128, pattern=r"\S")


# ---- what the API answers, for the OpenAPI document ------------------------------------------


class ErrorBody(BaseModel):
    detail: str


class ConflictBody(BaseModel):
    detail: str
    state: str
    action: str
    reason: Literal["invalid_transition", "condition_still_present"]


class AlertOut(BaseModel):
    """The contract's alert object (§3) and the fields beyond it."""

    model_config = ConfigDict(extra="allow")

    id: str
    rule: str
    device: str
    kind: str
    severity: Literal["critical", "major", "minor", "warning"]
    state: Literal["active", "acknowledged", "dispatched", "cleared", "closed"]
    message: str
    raised_at: str
    updated_at: str
    cleared_at: str | None = None
    level: int | None = None
    value: float | None = None
    road: str | None = None
    assignee: str | None = None
    condition_active: bool
    condition_still_present: bool


class AlertList(BaseModel):
    items: list[AlertOut]


class ChangeOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    seq: int
    alert_id: str
    action: str
    at: str
    who: str
    state_from: str | None
    state_to: str


class ChangeList(BaseModel):
    items: list[ChangeOut]


_STATE = "(active|acknowledged|dispatched|cleared|closed|open)"
STATES_PATTERN = f"^{_STATE}(,{_STATE})*$"
Severity = Literal["critical", "major", "minor", "warning"]


def error_doc(text: str) -> dict[str, Any]:
    """One documented error answer: `{"detail": "…"}` (the shape every route's 4xx/5xx has)."""
    return {"model": ErrorBody, "description": text}


READ_ERRORS: dict[int | str, dict[str, Any]] = {
    401: error_doc("a token is required to read (http.read_token_required) and none matched"),
    422: error_doc("a query parameter is not valid"),
    503: error_doc("the alert store is not open, or alerts are switched off"),
}
ONE_ERRORS: dict[int | str, dict[str, Any]] = {
    **READ_ERRORS,
    404: error_doc("no alert has that id"),
}
ACTION_ERRORS: dict[int | str, dict[str, Any]] = {
    **ONE_ERRORS,
    401: error_doc("no token, or a token that matches none"),
    403: error_doc("no token is configured: the actions are switched off"),
    409: {"model": ConflictBody, "description": "not allowed in the alert's state"},
    400: error_doc("the body is not JSON (or not UTF-8)"),
    422: error_doc("the body is not valid (dispatch needs an assignee; force needs a note)"),
}


# ---- who is asking ----------------------------------------------------------------------------


def writer(credentials: Credentials) -> Callable[..., str]:
    """The dependency of every POST: the name of the credential (401/403 otherwise)."""

    def check(authorization: Annotated[str | None, Header()] = None) -> str:
        if not credentials.configured:
            # No token configured: POSTs are refused outright (403), whatever the request
            # carries, because no credential could make them acceptable.
            raise HTTPException(
                403, "alert actions are disabled: set http.tokens (or http.token) to allow them"
            )
        name = credentials.identify(bearer(authorization))
        if name is None:
            raise HTTPException(
                401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        return name

    return check


def build_router(
    store: AlertStore,
    *,
    token: str | None = None,
    tokens: Mapping[str, str] | None = None,
    credentials: Credentials | None = None,
    default_limit: int = 100,
    max_limit: int = 1000,
    enabled: bool = True,
) -> APIRouter:
    """The /api/alerts routes over `store`. Credentials: `credentials`, or built from `tokens`
    (http.tokens) and `token` (http.token, as `operator`); none: every POST gets 403."""
    router = APIRouter(prefix="/api/alerts", tags=["alerts"])
    creds = credentials if credentials is not None else Credentials(tokens, legacy=token)
    principal = Depends(writer(creds))

    def _store() -> AlertStore:
        if not enabled:
            raise HTTPException(503, "alerts are disabled (alerts.enabled: false)")
        if not store.is_open:
            raise HTTPException(503, "the alert store is not open yet")
        return store

    def _json(alert: Alert) -> dict[str, Any]:
        return alert.to_json()

    @router.get("", response_model=None, responses={200: {"model": AlertList}, **READ_ERRORS})
    def list_alerts(
        state: Annotated[
            str | None,
            Query(
                pattern=STATES_PATTERN,
                description="one state, several separated by commas, or `open` (all but closed)",
            ),
        ] = None,
        rule: Annotated[str | None, Query(max_length=128)] = None,
        device: Annotated[str | None, Query(max_length=128)] = None,
        severity: Annotated[Severity | None, Query()] = None,
        since: Annotated[
            str | None,
            Query(
                description="RFC 3339 with an offset (or epoch milliseconds): alerts updated at"
                " or after it",
                json_schema_extra={"format": "date-time"},
            ),
        ] = None,
        limit: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
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
        except AlertStoreError as exc:
            raise HTTPException(503, str(exc)) from exc
        return {"items": [_json(a) for a in items]}

    @router.get(f"/{ID}", response_model=None, responses={200: {"model": AlertOut}, **ONE_ERRORS})
    def get_alert(alert_id: str) -> dict[str, Any]:
        try:
            alert = _store().get(alert_id)
        except AlertStoreError as exc:
            raise HTTPException(503, str(exc)) from exc
        if alert is None:
            raise HTTPException(404, f"no alert with id {alert_id!r}")
        return _json(alert)

    @router.get(
        f"/{ID}/history", response_model=None, responses={200: {"model": ChangeList}, **ONE_ERRORS}
    )
    def alert_history(alert_id: str) -> dict[str, Any]:
        try:
            changes = _store().history(alert_id)
        except AlertNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except AlertStoreError as exc:
            raise HTTPException(503, str(exc)) from exc
        return {"items": [c.to_json() for c in changes]}

    def _act(action: str, alert_id: str, who: str, body: ActionBody | None) -> Any:
        b = body or ActionBody()
        if action == "dispatch" and not b.assignee:
            raise HTTPException(422, "dispatch needs an assignee (the crew or person sent)")
        try:
            alert = _store().act(
                action,
                alert_id,
                who=who,
                note=b.note,
                assignee=b.assignee,
                force=b.force,
                shown_as=b.who,
            )
        except AlertNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except InvalidTransition as exc:
            reason = (
                "condition_still_present"
                if isinstance(exc, ConditionStillPresent)
                else "invalid_transition"
            )
            return JSONResponse(
                {"detail": str(exc), "state": exc.state, "action": exc.action, "reason": reason},
                status_code=409,
            )
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        except AlertStoreError as exc:
            raise HTTPException(503, str(exc)) from exc
        return _json(alert)

    action_doc: dict[str, Any] = {
        "response_model": None,
        "responses": {200: {"model": AlertOut}, **ACTION_ERRORS},
    }

    @router.post(f"/{ID}/ack", **action_doc)
    def ack(alert_id: str, body: ActionBody | None = None, who: str = principal) -> Any:
        return _act("ack", alert_id, who, body)

    @router.post(f"/{ID}/dispatch", **action_doc)
    def dispatch(alert_id: str, body: DispatchBody, who: str = principal) -> Any:
        return _act("dispatch", alert_id, who, body)

    @router.post(f"/{ID}/resolve", **action_doc)
    def resolve(alert_id: str, body: ActionBody | None = None, who: str = principal) -> Any:
        """Refused with 409 (`reason: condition_still_present`) while the rules still see the
        condition, unless the body says `force: true` with a note."""
        return _act("resolve", alert_id, who, body)

    @router.post(f"/{ID}/close", **action_doc)
    def close(alert_id: str, body: ActionBody | None = None, who: str = principal) -> Any:
        return _act("close", alert_id, who, body)

    return router
