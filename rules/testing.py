"""Test helpers for code that uses the rule engine: a recording sink and observation builders.

Not imported by production code.
"""

from __future__ import annotations

from typing import Any

from devices.messages import Observation
from devices.models import DeviceEvent, DeviceStatus, LampReading, WaterLevelReading
from rules.signals import Condition


class RecordingSink:
    """A ConditionSink that keeps every Condition, in order."""

    def __init__(self) -> None:
        self.conditions: list[Condition] = []

    def on_condition(self, condition: Condition) -> None:
        self.conditions.append(condition)

    def of(self, rule: str, device: str | None = None) -> list[Condition]:
        return [
            c for c in self.conditions if c.rule == rule and (device is None or c.device == device)
        ]

    def open(self) -> set[tuple[str, str]]:
        """(rule, device) pairs whose last Condition is active."""
        last: dict[tuple[str, str], bool] = {}
        for c in self.conditions:
            last[(c.rule, c.device)] = c.active
        return {key for key, active in last.items() if active}

    def clear(self) -> None:
        self.conditions.clear()


def lamp(device: str, ts: int, *, received: int | None = None, **fields: Any) -> Observation:
    """A lamp telemetry observation; `received` defaults to ts (live)."""
    fields.setdefault("on", True)
    for name, value in fields.items():
        if isinstance(value, int) and not isinstance(value, bool):
            fields[name] = float(value)
    reading = LampReading(ts=ts, **fields)
    return Observation("lamp", device, "telemetry", reading, ts if received is None else received)


def water(
    device: str, ts: int, depth_cm: float, *, received: int | None = None, **fields: Any
) -> Observation:
    fields = {k: float(v) for k, v in fields.items()}
    reading = WaterLevelReading(ts=ts, depth_cm=float(depth_cm), **fields)
    return Observation(
        "waterlevel", device, "telemetry", reading, ts if received is None else received
    )


def event(
    device: str, ts: int, name: str, state: str = "raised", *, kind: str = "lamp"
) -> Observation:
    data = DeviceEvent.model_validate({"ts": ts, "event": name, "state": state})
    return Observation(kind, device, "event", data, ts)


def status(
    device: str, online: bool, ts: int | None = None, *, kind: str = "lamp", received: int = 0
) -> Observation:
    data = DeviceStatus(online=online, ts=ts)
    return Observation(kind, device, "status", data, ts if ts is not None else received)
