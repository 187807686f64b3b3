"""The one place that knows the device kinds.

Adding a kind (say `manhole`) means: a reading model in `models.py` and one `KindSpec` line here.
Topic parsing, validation, InfluxDB measurement and registry tags, the simulator and the rules all
look kinds up in `KINDS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.models import LampReading, Reading, WaterLevelReading


@dataclass(frozen=True, slots=True)
class KindSpec:
    """What the service needs to know about one device kind."""

    name: str
    reading_model: type[Reading]
    measurement: str
    # Registry columns that become InfluxDB tags on this kind's points (besides `device`).
    registry_tags: tuple[str, ...]
    default_report_interval_s: float = 300.0


KINDS: dict[str, KindSpec] = {
    spec.name: spec
    for spec in (
        KindSpec("lamp", LampReading, "lamp", ("road", "cabinet")),
        KindSpec("waterlevel", WaterLevelReading, "waterlevel", ("road", "point")),
    )
}

CHANNELS: tuple[str, ...] = ("telemetry", "event", "status")

EVENT_MEASUREMENT = "device_event"
