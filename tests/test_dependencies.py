"""Every runtime dependency in pyproject.toml is imported by the product; test-only ones live in
the `test` extra."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("devices", "ingest", "rules", "alerts", "simulator", "streetwatch", "notify", "figures")
IMPORT_NAME = {
    "paho-mqtt": "paho",
    "influxdb-client": "influxdb_client",
    "pydantic-settings": "pydantic_settings",
    "pyyaml": "yaml",
    "prometheus-client": "prometheus_client",
    "fastapi-offline": "fastapi_offline",
}


def _name(spec: str) -> str:
    return re.split(r"[<>=!;\[ ]", spec, maxsplit=1)[0].strip().lower()


def _imported(module: str, dirs: tuple[str, ...]) -> bool:
    pattern = re.compile(rf"^\s*(import|from)\s+{re.escape(module)}\b", re.M)
    for d in dirs:
        for path in (ROOT / d).rglob("*.py") if (ROOT / d).is_dir() else ():
            if pattern.search(path.read_text(encoding="utf-8")):
                return True
    return False


def test_runtime_dependencies_are_all_imported_by_the_product() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    unused = []
    for spec in project["dependencies"]:
        name = _name(spec)
        module = IMPORT_NAME.get(name, name.replace("-", "_"))
        if not _imported(module, PRODUCT):
            unused.append(name)
    assert unused == [], f"declared but never imported by the product: {unused}"


def test_test_only_packages_are_in_the_test_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(s) for s in project["dependencies"]}
    for name in ("pytest", "hypothesis", "playwright", "schemathesis", "mypy", "ruff"):
        assert name not in runtime
    test = {_name(s) for s in project["optional-dependencies"]["test"]}
    for module, package in (("paho", "paho-mqtt"), ("playwright", "playwright")):
        if _imported(module, ("tests",)) and not _imported(module, PRODUCT):
            assert package in test
