"""`streetwatch check-config`: which roads and cabinets of the registry no crew covers."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from devices.registry import load_registry
from notify.routing import coverage
from notify.service import check_urls

if TYPE_CHECKING:
    from streetwatch.config import Settings


def report_coverage(settings: Settings) -> None:
    """Printed on stderr, after the effective config on stdout (which stays plain JSON)."""
    from streetwatch.errors import ConfigError

    config = settings.notify
    if not config.enabled:
        return
    try:
        check_urls(settings)
    except Exception as exc:
        raise ConfigError(str(exc)) from exc
    if not config.crews:
        print("notify: no crews configured; alerts reach no crew's phone", file=sys.stderr)
        return
    try:
        registry = load_registry(settings.registry.path)
    except Exception as exc:
        raise ConfigError(f"registry.path: {exc}") from exc
    if len(registry) == 0:
        print("notify: no registry (registry.path): crew coverage not checked", file=sys.stderr)
        return
    roads, cabinets = coverage(config, registry)
    where = (
        " (they go to notify.fallback)" if config.fallback else " (and notify.fallback is empty)"
    )
    if roads:
        print(f"notify: roads no crew covers{where}: {', '.join(roads)}", file=sys.stderr)
    if cabinets:
        print(f"notify: cabinets no crew covers{where}: {', '.join(cabinets)}", file=sys.stderr)
    if not roads and not cabinets:
        print(
            f"notify: every road and cabinet of the registry ({len(registry)} devices) has a crew",
            file=sys.stderr,
        )
