"""The service's HTTP app (FastAPI): /healthz, /metrics, the control-centre page at /, and whatever
routers the parts add (the alerts add /api/alerts and /api/alerts/stream).

The page (`streetwatch/static/index.html`, package data) is one self-contained file: inline CSS and
JavaScript, no build step, nothing from a CDN (a city's control room may have no internet). It is
served with a Content-Security-Policy that allows exactly its own inline script and style (by their
SHA-256, computed here at start), and connections to this origin only, so text from alerts or the
registry can never run as script even if an escaping bug slipped in.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import HTMLResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streetwatch.access import mount_docs

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)
_SCRIPT_FILE = re.compile(r'<script src="/static/([a-z_]+)/([A-Za-z0-9_.-]+)"></script>')


def _with_integrity(html: str, hashes: list[str]) -> str:
    """Pin each same-origin script file (`/static/<package>/<file>`, package data) by its SHA-256:
    an `integrity` attribute on the tag and the hash in script-src, so no other URL of this origin
    (an API answer, say) can ever run as script on the page."""

    def pin(match: re.Match[str]) -> str:
        package, name = match.group(1), match.group(2)
        body = resources.files(package).joinpath(f"static/{name}").read_bytes()
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        hashes.append(f"'sha256-{digest}'")
        return f'<script src="/static/{package}/{name}" integrity="sha256-{digest}"></script>'

    return _SCRIPT_FILE.sub(pin, html)


def control_centre_page() -> tuple[bytes, dict[str, str]]:
    """The page's bytes and the headers to serve it with."""
    html = resources.files("streetwatch").joinpath("static/index.html").read_text(encoding="utf-8")
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for tag, body in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes[tag].append(f"'sha256-{digest}'")
    html = _with_integrity(html, hashes["script"])
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {' '.join(hashes['script'])}",
            # 'self': the figures' style sheet and the vendored chart library's.
            f"style-src 'self' {' '.join(hashes['style'])}",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )
    headers = {
        "Content-Security-Policy": csp,
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return html.encode(), headers


def create_app(
    metrics_registry: CollectorRegistry, health: Callable[[], dict[str, Any]]
) -> FastAPI:
    # The API documentation is served from our own files (streetwatch.access), never a CDN.
    app = FastAPI(title="streetwatch", version="0.1.0", docs_url=None, redoc_url=None)
    mount_docs(app)
    page, page_headers = control_centre_page()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def control_centre() -> HTMLResponse:
        return HTMLResponse(page, headers=page_headers)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return health()

    @app.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text exposition format",
                "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            }
        },
    )
    def metrics() -> Response:
        return Response(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    return app
