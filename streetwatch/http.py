"""The service's HTTP app (FastAPI): /healthz, /metrics, and whatever routers the parts add."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def create_app(
    metrics_registry: CollectorRegistry, health: Callable[[], dict[str, Any]]
) -> FastAPI:
    app = FastAPI(title="streetwatch", version="0.1.0", docs_url="/api/docs", redoc_url=None)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return health()

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    return app
