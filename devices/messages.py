"""What a validated message becomes: the common currency of ingest, rules and simulator tests."""

from __future__ import annotations

from dataclasses import dataclass

from devices.models import DeviceEvent, DeviceStatus, Reading


@dataclass(frozen=True, slots=True)
class Observation:
    """One accepted item: a telemetry reading, a device event or a status change.

    `received_ms` is the wall clock when the service took the message; rules use the data's own
    `ts` (event time) and only use `received_ms` to judge whether the stream is live.
    """

    kind: str
    device_id: str
    channel: str
    data: Reading | DeviceEvent | DeviceStatus
    received_ms: int

    @property
    def ts_ms(self) -> int | None:
        return self.data.ts
