"""Where the city is: sunset/sunrise for lamp schedules (rules) and simulated nights (simulator)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LocationConfig(BaseModel):
    """Config section `location`. Default: Jining, Shandong (35.415 N, 116.587 E, Asia/Shanghai)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "Jining"
    region: str = "China"
    latitude: float = Field(35.415, ge=-90, le=90)
    longitude: float = Field(116.587, ge=-180, le=180)
    timezone: str = "Asia/Shanghai"
