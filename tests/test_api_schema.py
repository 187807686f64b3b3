"""Schemathesis against the app's own OpenAPI document, with all its checks: no 5xx, and every
status code, header and body the API really answers is the one the document says (401/403/404/409,
the 422 shape, /metrics as text, the figures' bodies, the crews' ack page as HTML). A bounded run:
a few dozen examples per operation.

The live stream (`/api/alerts/stream`) never ends, so it is left to tests/test_alerts_stream.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.config import SchemathesisConfig

from alerts.testing import T0, cond
from ingest.stores.sqlite import SqliteStore
from notify import links
from streetwatch.app import Service
from streetwatch.config import load_settings

TOKEN = "schema-token"
SECRET = "schema-link-secret"
CREW = "运河路维修班"
IDS: list[str] = []  # the seeded alerts' ids
PAGE_IDS: list[str] = []  # more, for the crews' ack page only (the API's actions close the others)
REGISTRY = """device_id,kind,road,road_class,cabinet,rated_w,point,report_interval_s,lat,lon
WL-017,waterlevel,运河路,main,,,运河路下穿,60,35.41,116.58
L-001,lamp,红星路,branch,C1,150,,300,35.40,116.57
"""
# Two operations may refuse (422) a request whose every part is schema-valid, for what no schema
# can say: /api/series for what one parameter cannot say alone (a field of another kind than the
# device's, `from` not before `to`, more than 400 days); resolve for the alert's state (`force`
# needs a note only while the condition is still present). Every other operation must take every
# schema-valid request.
_MAY_REFUSE = {
    "checks": {
        "positive_data_acceptance": {
            "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "503"]
        }
    }
}
CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {"include-path": "/api/series", **_MAY_REFUSE},
            {"include-path-regex": "^/api/alerts/.*/resolve$", **_MAY_REFUSE},
        ]
    }
)


async def _readings(data: Path) -> None:
    """An hour of a lamp and a rising waterlogging point, so the figures' bodies have rows."""
    store = SqliteStore(data / "points.sqlite")
    await store.start()
    now = int(time.time() * 1000)
    lines = []
    for i in range(12):
        ts = now - (12 - i) * 300_000
        lines.append(f"lamp,device=L-001 on={'true' if i % 3 else 'false'},power=140.0 {ts}")
        lines.append(f"waterlevel,device=WL-017 depth_cm={5.0 + 2 * i},rain_mm=1.5 {ts}")
    await store.write([line.encode() for line in lines])
    await store.aclose()


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    data = tmp_path_factory.mktemp("schema")
    registry = data / "registry.csv"
    registry.write_text(REGISTRY, encoding="utf-8")
    asyncio.run(_readings(data))
    config = load_settings(
        overrides={
            "storage": {"data_dir": str(data), "backend": "sqlite"},
            "registry": {"path": str(registry)},
            "http": {"tokens": {"schemathesis": TOKEN}, "allowed_hosts": ["testserver"]},
            "alerts": {"mqtt": {"enabled": False}, "sla": {"enabled": False}},
            "rules": {"enabled": False},
            # The service is not started, so no notice is ever sent: only the ack page is reached.
            "notify": {
                "base_url": "http://testserver",
                "link_secret": SECRET,
                "crews": [{"name": CREW, "urls": ["json://127.0.0.1:9/hook"]}],
            },
        },
        env={},
    )
    service = Service(config)
    store = service.alerting.store
    store.open()
    for i in range(6):  # a few real alerts, so that some ids and actions hit something
        store.on_condition(cond(device=f"WL-{i:03d}", at=T0 + i))
    IDS[:] = [a.id for a in store.open_alerts()]
    for i in range(6):
        store.on_condition(cond(device=f"WL-{i + 100:03d}", at=T0 + i))
    PAGE_IDS[:] = [a.id for a in store.open_alerts() if a.id not in IDS]
    schema = schemathesis.openapi.from_asgi("/openapi.json", service.http_app, config=CONFIG)
    yield schema.exclude(path="/api/alerts/stream")
    store.shutdown()


def test_the_api_answers_what_its_document_says(api_schema: Any) -> None:
    # One hypothesis run per operation and generation mode (schemathesis' own pytest plugin does
    # not work with this pytest); every failure is collected, so one run shows them all. Half the
    # cases that name an alert name a real one, so actions and their 409s are reached too; half of
    # those on the crews' ack page carry a link signed for it, so its page and its ack are reached.
    failures: list[str] = []
    seen: set[tuple[str, int]] = set()
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in schemathesis.GenerationMode:
            strategy = st.tuples(
                operation.as_strategy(generation_mode=mode),
                st.sampled_from([None, *IDS]),
                st.booleans(),
            )

            @given(pair=strategy)
            @settings(
                max_examples=25,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
                derandomize=True,
            )
            def run(pair: tuple[schemathesis.Case, str | None, bool]) -> None:
                case, real_id, signed = pair
                if real_id is not None and "alert_id" in (case.path_parameters or {}):
                    page = case.path.startswith("/a/")
                    if page:
                        real_id = PAGE_IDS[IDS.index(real_id)]
                    case.path_parameters["alert_id"] = real_id  # type: ignore[index]
                    if page and signed and isinstance(case.query, dict):
                        token = links.sign(SECRET, real_id, CREW, int(time.time()) + 3600)
                        case.query = {**case.query, "c": CREW, "t": token}
                response = case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})
                seen.add((case.operation.label, response.status_code))

            try:
                run()
            except Unsatisfiable:
                pass  # nothing to get wrong in this mode (an operation without parameters)
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
    assert operations >= 18
    # The run reached the answers that matter, not only 404s.
    wanted = [
        ("GET /api/alerts", 200),
        ("GET /api/alerts", 422),
        ("GET /api/alerts/{alert_id}", 200),
        ("POST /api/alerts/{alert_id}/ack", 200),
        ("POST /api/alerts/{alert_id}/resolve", 409),
        ("GET /metrics", 200),
        ("GET /api/kpi/lighting", 200),
        ("GET /api/kpi/lighting", 422),
        ("GET /api/series", 200),
        ("GET /api/reports/daily", 200),
        ("GET /a/{alert_id}", 200),
        ("GET /a/{alert_id}", 403),
        ("POST /a/{alert_id}", 200),
    ]
    missing = [w for w in wanted if w not in seen]
    assert not missing, f"not reached: {missing}; reached: {sorted(seen)}"


def test_every_422_in_the_document_is_the_shape_the_app_sends(api_schema: Any) -> None:
    # The app answers a failed validation {"detail": "…", "errors": […]} (streetwatch/access.py),
    # so FastAPI's default entry (detail as a list) must not be left on any route.
    doc = api_schema.raw_schema
    text = json.dumps(doc)
    assert "HTTPValidationError" not in text
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            answer = operation["responses"].get("422")
            if answer is None:
                continue
            schema = answer["content"]["application/json"]["schema"]
            name = schema["$ref"].rsplit("/", 1)[-1]
            detail = doc["components"]["schemas"][name]["properties"]["detail"]
            assert detail["type"] == "string", (method, path, name)
