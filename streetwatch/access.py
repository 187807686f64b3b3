"""Who may reach the HTTP app, and the answers every route shares.

- **Host check** (`http.allowed_hosts`): a request whose `Host` header names another host is
  answered 400 before any route runs. This is what stops DNS rebinding: a web page elsewhere that
  points its own name at 127.0.0.1 can make the operator's browser send requests here, but they
  carry the page's host name. With no list configured, a service bound to a loopback address
  answers only to loopback names, and one bound elsewhere to any name.
- **Read tokens** (`http.read_token_required: true`): every GET except `/healthz` and a crew's
  one-tap ack page `/a/…` (its signed link is its credential) needs a token of
  `http.tokens` / `http.token`, as `Authorization: Bearer …` or as `?access_token=` (RFC 6750 §2.3;
  a browser cannot put a header on the page's own address or on an EventSource). The crews' ack
  page `/a/{id}` is the other exception: its signed link is its credential (notify/links.py), and a
  crew's phone has no API token.
- **One error shape**: every 4xx/5xx body is `{"detail": "…"}`; a request that fails validation
  (bad query or body) is 422 with `detail` as one readable line and `errors` with the particulars.
- **The API documentation** at `/api/docs` works without internet: Swagger UI's files come from the
  `fastapi-offline` package, served here, started by a script file (no inline script), under a
  Content-Security-Policy as strict as the control-centre page's.

Pure ASGI middleware, so the server-sent event stream passes through untouched.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from alerts.auth import Credentials, bearer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
OPEN_PATHS = frozenset({"/healthz"})  # probes never need a token
# The page's own script and style files (package data, no readings or alerts): a <script src> or
# <link> cannot carry a token, and the scripts send it with every data request they make.
STATIC_PREFIX = "/static/"
SIGNED_PATH = re.compile(r"/a/[^/]+")  # the crews' ack page: the page checks its signed link
DOCS = "/api/docs"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_host_names(configured: list[str] | None, bind_host: str) -> frozenset[str] | None:
    """The host names to answer to; None: any."""
    if configured is None:
        return frozenset(LOOPBACK_NAMES) if _is_loopback(bind_host) else None
    names = {h.strip().lower().strip("[]") for h in configured if h.strip()}
    return None if "*" in names else frozenset(names)


def _host_of(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8080
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value


class AccessGuard:
    """ASGI middleware: the host check, then the read token (see the module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        hosts: frozenset[str] | None,
        credentials: Credentials,
        read_token_required: bool,
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.credentials = credentials
        self.read_token_required = read_token_required

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if self.hosts is not None:
            host = _host_of(headers.get("host", ""))
            if host not in self.hosts:
                await _answer(
                    send, 400, "this service does not answer to that Host (http.allowed_hosts)"
                )
                return
        if (
            self.read_token_required
            and scope["method"] in ("GET", "HEAD")
            and scope["path"] not in OPEN_PATHS
            and not scope["path"].startswith(STATIC_PREFIX)
            and not SIGNED_PATH.fullmatch(scope["path"])
        ):
            token = bearer(headers.get("authorization"))
            if token is None:
                query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
                token = (query.get("access_token") or [None])[0]
            if self.credentials.identify(token) is None:
                await _answer(
                    send,
                    401,
                    "a valid token is required to read (http.read_token_required)",
                    {"www-authenticate": "Bearer"},
                )
                return
        await self.app(scope, receive, send)


async def _answer(
    send: Send, status: int, detail: str, extra: dict[str, str] | None = None
) -> None:
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = []
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        lines.append(f"{where}: {err.get('msg', 'invalid')}")
        errors.append({"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg"))})
    return JSONResponse({"detail": "; ".join(lines) or "invalid request", "errors": errors}, 422)


# The body `_validation_error` answers, for the OpenAPI document (FastAPI's own default 422 entry
# describes `detail` as a list, which is not what this app sends).
VALIDATION_ERROR_BODY: dict[str, Any] = {
    "title": "ValidationErrorBody",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string", "title": "Detail"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": "string"}},
                    "msg": {"type": "string"},
                },
            },
        },
    },
}
_DEFAULT_422 = "#/components/schemas/HTTPValidationError"


def _document_validation_errors(app: FastAPI) -> None:
    """Rewrite FastAPI's default 422 entries to the shape `_validation_error` really sends."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        doc = generate()  # FastAPI caches it; the rewrite below is idempotent
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                answer = operation.get("responses", {}).get("422", {})
                media = answer.get("content", {}).get("application/json", {})
                if media.get("schema", {}).get("$ref") == _DEFAULT_422:
                    media["schema"] = {"$ref": "#/components/schemas/ValidationErrorBody"}
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas["ValidationErrorBody"] = VALIDATION_ERROR_BODY
        if _DEFAULT_422 not in orjson.dumps(doc.get("paths", {})).decode():
            schemas.pop("HTTPValidationError", None)
            if '#/components/schemas/ValidationError"' not in orjson.dumps(doc).decode():
                schemas.pop("ValidationError", None)
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


_DOCS_HTML = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>streetwatch API</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{docs}/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{docs}/swagger-ui-bundle.js"></script>
<script src="{docs}/init.js"></script></body></html>
"""
_DOCS_INIT = """window.ui = SwaggerUIBundle({
  url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout",
  validatorUrl: null, tryItOutEnabled: false
});
"""
_DOCS_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)


def _swagger_files() -> Path | None:
    # fastapi-offline ships Swagger UI 5 (OpenAPI 3.1, which FastAPI writes) as package data; only
    # its files are used: its own docs page has an inline script, which our CSP does not allow.
    try:
        import fastapi_offline
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    return Path(fastapi_offline.__file__).parent / "static"


def mount_docs(app: FastAPI) -> None:
    """Swagger UI at /api/docs from the package's files: no CDN, no inline script."""
    files = _swagger_files()
    headers = {"Content-Security-Policy": _DOCS_CSP, "X-Content-Type-Options": "nosniff"}
    allowed = {"swagger-ui.css", "swagger-ui-bundle.js"}

    @app.get(DOCS, include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(_DOCS_HTML.format(docs=DOCS), headers=headers)

    @app.get(DOCS + "/init.js", include_in_schema=False)
    def docs_init() -> Response:
        return Response(_DOCS_INIT, media_type="text/javascript", headers=headers)

    @app.get(DOCS + "/{name}", include_in_schema=False)
    def docs_file(name: str) -> Response:
        if files is None or name not in allowed:
            return JSONResponse({"detail": "not found"}, 404)
        return FileResponse(files / name, headers={**headers, "Cache-Control": "max-age=86400"})


def harden(
    app: FastAPI,
    *,
    allowed_hosts: list[str] | None,
    bind_host: str,
    credentials: Credentials,
    read_token_required: bool,
) -> None:
    """Install the host check, the read token and the shared error shape on `app`."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    _document_validation_errors(app)
    app.add_middleware(
        AccessGuard,
        hosts=allowed_host_names(allowed_hosts, bind_host),
        credentials=credentials,
        read_token_required=read_token_required,
    )


__all__ = ["AccessGuard", "allowed_host_names", "harden", "mount_docs"]
