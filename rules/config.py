"""Rule settings (owned by the rules package; assembled into Settings by streetwatch.config)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class RulesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    overrides: dict[str, Any] = {}
