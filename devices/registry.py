"""The city's asset list (contract §4): a CSV with a header row, columns in any order."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from devices.errors import RegistryError
from devices.kinds import KINDS
from devices.topics import DEVICE_ID_RE

KNOWN_COLUMNS = (
    "device_id",
    "kind",
    "road",
    "road_class",
    "cabinet",
    "rated_w",
    "point",
    "lat",
    "lon",
    "report_interval_s",
)
ROAD_CLASSES = ("expressway", "main", "secondary", "branch")
DEFAULT_REPORT_INTERVAL_S = 300.0


@dataclass(frozen=True, slots=True)
class Device:
    """One registered device."""

    device_id: str
    kind: str
    road: str | None = None
    road_class: str | None = None
    cabinet: str | None = None
    rated_w: float | None = None
    point: str | None = None
    lat: float | None = None
    lon: float | None = None
    report_interval_s: float = DEFAULT_REPORT_INTERVAL_S
    attributes: dict[str, str] = field(default_factory=dict)

    def tag(self, name: str) -> str | None:
        value = getattr(self, name, None) if name in KNOWN_COLUMNS else self.attributes.get(name)
        return None if value in (None, "") else str(value)


class Registry:
    """Devices by id, with the derived tag sets the writer uses on every point."""

    def __init__(self, devices: Iterable[Device] = ()) -> None:
        self._devices: dict[str, Device] = {}
        self._tags: dict[tuple[str, str], dict[str, str]] = {}
        for device in devices:
            self._devices[device.device_id] = device

    def __len__(self) -> int:
        return len(self._devices)

    def __iter__(self) -> Iterator[Device]:
        return iter(self._devices.values())

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._devices

    def get(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)

    def by_kind(self, kind: str) -> list[Device]:
        return [d for d in self._devices.values() if d.kind == kind]

    def by_cabinet(self, cabinet: str) -> list[Device]:
        return [d for d in self._devices.values() if d.cabinet == cabinet]

    def tags(self, kind: str, device_id: str) -> dict[str, str]:
        """InfluxDB tags of a device's points: `device` plus the kind's registry tags it knows."""
        key = (kind, device_id)
        cached = self._tags.get(key)
        if cached is not None:
            return cached
        tags = {"device": device_id}
        device = self._devices.get(device_id)
        spec = KINDS.get(kind)
        if device is not None and spec is not None:
            for name in spec.registry_tags:
                value = device.tag(name)
                if value is not None:
                    tags[name] = value
        if len(self._tags) < 100_000:
            self._tags[key] = tags
        return tags


def _float(row: dict[str, str], column: str, where: str) -> float | None:
    text = (row.get(column) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # "nan" and "inf" parse, but no interval or position is one
        raise RegistryError(f"{where}: column {column!r} is not a number: {text!r}")
    return value


def load_registry(path: str | Path | None) -> Registry:
    """Load the registry CSV; no path means an empty registry (every device unregistered)."""
    if path is None or str(path) == "":
        return Registry()
    file = Path(path)
    if not file.exists():
        raise RegistryError(f"registry file {file} does not exist (registry.path)")
    devices: list[Device] = []
    seen: set[str] = set()
    with file.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "device_id" not in reader.fieldnames:
            raise RegistryError(f"{file}: header row must have a device_id column")
        for line, row in enumerate(reader, start=2):
            where = f"{file}:{line}"
            device_id = (row.get("device_id") or "").strip()
            if not device_id:
                continue
            if not DEVICE_ID_RE.fullmatch(device_id):
                raise RegistryError(f"{where}: device_id {device_id!r} is not allowed")
            if device_id in seen:
                raise RegistryError(f"{where}: device_id {device_id!r} is listed twice")
            seen.add(device_id)
            kind = (row.get("kind") or "").strip()
            if kind not in KINDS:
                raise RegistryError(f"{where}: kind {kind!r} is not one of {sorted(KINDS)}")
            road_class = (row.get("road_class") or "").strip() or None
            if road_class is not None and road_class not in ROAD_CLASSES:
                raise RegistryError(
                    f"{where}: road_class {road_class!r} is not one of {ROAD_CLASSES}"
                )
            interval = _float(row, "report_interval_s", where)
            if interval is not None and interval <= 0:
                raise RegistryError(f"{where}: report_interval_s must be > 0")
            attributes = {
                k: (v or "")
                for k, v in row.items()
                if k is not None and k not in KNOWN_COLUMNS and isinstance(v, str)
            }
            devices.append(
                Device(
                    device_id=device_id,
                    kind=kind,
                    road=(row.get("road") or "").strip() or None,
                    road_class=road_class,
                    cabinet=(row.get("cabinet") or "").strip() or None,
                    rated_w=_float(row, "rated_w", where),
                    point=(row.get("point") or "").strip() or None,
                    lat=_float(row, "lat", where),
                    lon=_float(row, "lon", where),
                    report_interval_s=interval or KINDS[kind].default_report_interval_s,
                    attributes=attributes,
                )
            )
    return Registry(devices)
