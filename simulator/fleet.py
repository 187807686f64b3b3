"""The simulated fleet: from the city's registry CSV, or generated over Jining's roads.

A generated fleet is a pure function of (lamps, waterlevel, seed): the same ids, roads, cabinets
and rated powers every time, so a scenario can name devices and `--write-registry` can hand the
service the very fleet the simulator drives.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from devices.errors import RegistryError
from devices.registry import KNOWN_COLUMNS, Device, load_registry
from simulator.errors import FleetError

DEFAULT_LAMPS = 790
DEFAULT_WATERLEVEL = 12
DEFAULT_RATED_W = 150.0
ReportIntervals = float | tuple[float, ...] | tuple[float, float, str]
REGISTRY_COLUMNS = KNOWN_COLUMNS  # the contract's registry columns (§4), in order


@dataclass(frozen=True, slots=True)
class Road:
    name: str
    code: str  # pinyin initials: readable, ASCII device ids
    road_class: str
    start: tuple[float, float]  # (lat, lon)
    end: tuple[float, float]
    rated_w: tuple[float, ...]  # LED lamp ratings used on this road
    weight: float  # share of the lamps (roughly the road's length and sides lit)


# Jining's central city, roughly: east-west roads at their latitude, north-south at their longitude.
ROADS: tuple[Road, ...] = (
    Road("洸河路", "GHL", "main", (35.4050, 116.5450), (35.4065, 116.6250), (250.0, 200.0), 1.4),
    Road("济安桥路", "JAQ", "main", (35.3900, 116.5720), (35.4350, 116.5735), (200.0,), 1.2),
    Road("运河路", "YHL", "secondary", (35.3950, 116.5560), (35.4280, 116.5890), (150.0,), 1.0),
    Road("太白楼路", "TBL", "main", (35.4130, 116.5500), (35.4140, 116.6200), (250.0, 200.0), 1.3),
    Road(
        "共青团路",
        "GQT",
        "secondary",
        (35.3920, 116.5850),
        (35.4320, 116.5860),
        (150.0, 120.0),
        0.9,
    ),
    Road("红星路", "HXL", "main", (35.4200, 116.5500), (35.4210, 116.6150), (200.0,), 1.1),
    Road("建设路", "JSL", "main", (35.3950, 116.5960), (35.4380, 116.5970), (200.0, 150.0), 1.1),
    Road("琵琶山路", "PPS", "secondary", (35.3980, 116.5780), (35.4300, 116.5790), (120.0,), 0.8),
    Road(
        "古槐路", "GHU", "secondary", (35.3970, 116.5900), (35.4250, 116.5905), (120.0, 100.0), 0.8
    ),
    Road("吴泰闸路", "WTZ", "branch", (35.4280, 116.5600), (35.4285, 116.6000), (80.0, 60.0), 0.6),
    Road("火炬路", "HJL", "main", (35.3850, 116.6150), (35.4300, 116.6160), (250.0,), 1.0),
)
ROAD_BY_NAME = {road.name: road for road in ROADS}

# Waterlogging points: underpasses and low spots that flood in a summer storm (name, road).
WATER_POINTS: tuple[tuple[str, str], ...] = (
    ("济安桥路铁路桥下穿", "济安桥路"),
    ("太白楼路与共青团路路口", "太白楼路"),
    ("火炬路京杭运河涵洞", "火炬路"),
    ("红星路与建设路路口", "红星路"),
    ("运河路低洼段", "运河路"),
    ("洸河路桥下", "洸河路"),
    ("建设路立交桥下", "建设路"),
    ("琵琶山路下穿", "琵琶山路"),
    ("古槐路与红星路路口", "古槐路"),
    ("共青团路铁路桥下", "共青团路"),
    ("吴泰闸路低洼段", "吴泰闸路"),
    ("洸河路与火炬路路口", "洸河路"),
)


@dataclass(frozen=True, slots=True)
class Fleet:
    """The devices the simulator drives, in a fixed order (the order of the stream's ties)."""

    devices: tuple[Device, ...]

    def __len__(self) -> int:
        return len(self.devices)

    @property
    def lamps(self) -> list[Device]:
        return [d for d in self.devices if d.kind == "lamp"]

    @property
    def waterlevel(self) -> list[Device]:
        return [d for d in self.devices if d.kind == "waterlevel"]

    def cabinets(self) -> dict[str, list[Device]]:
        """Cabinet id → its lamps, in fleet order."""
        out: dict[str, list[Device]] = {}
        for device in self.devices:
            if device.kind == "lamp" and device.cabinet:
                out.setdefault(device.cabinet, []).append(device)
        return out


def _split(total: int, weights: Sequence[float]) -> list[int]:
    """Largest-remainder split of `total` by `weights` (deterministic, sums exactly)."""
    wsum = sum(weights)
    raw = [total * w / wsum for w in weights]
    counts = [math.floor(x) for x in raw]
    order = sorted(range(len(weights)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def generate_fleet(
    lamps: int = DEFAULT_LAMPS,
    waterlevel: int = DEFAULT_WATERLEVEL,
    *,
    seed: int = 1,
    report_interval_s: ReportIntervals = 300.0,
) -> Fleet:
    """A city's worth of lamps over ROADS in cabinets of ~20-40, and waterlogging points.

    `report_interval_s`: one interval for every device; a tuple of intervals, each device one of
    them; or `(low, high, "range")`, each device a whole number of seconds within it. Drawn per
    device id, so a device keeps its interval whatever the fleet's size.
    """
    if lamps < 0 or waterlevel < 0:
        raise FleetError("--lamps and --waterlevel must be >= 0")
    if lamps > 99_999 or waterlevel > 999:
        raise FleetError("at most 99999 lamps and 999 waterlevel points")
    rng = random.Random(f"fleet:{seed}")
    devices: list[Device] = []

    def interval(device_id: str) -> float:
        spec = report_interval_s
        if isinstance(spec, int | float):
            return float(spec)
        pick = random.Random(f"{seed}:interval:{device_id}")
        if len(spec) == 3 and spec[2] == "range":
            return float(round(pick.uniform(float(spec[0]), float(spec[1]))))
        return float(pick.choice([float(x) for x in spec]))

    for road, count in zip(ROADS, _split(lamps, [r.weight for r in ROADS]), strict=True):
        # Cabinets of ~20-40 lamps: a feeder circuit's worth, sized a little differently each.
        n_cabinets = max(1, round(count / 30)) if count else 0
        sizes = _split(count, [rng.uniform(0.7, 1.3) for _ in range(n_cabinets)])
        index = 0
        for cabinet_no, size in enumerate(sizes, start=1):
            cabinet = f"C-{road.code}-{cabinet_no:02d}"
            rated = rng.choice(road.rated_w)
            for _ in range(size):
                index += 1
                frac = (index - 0.5) / max(count, 1)
                lat = road.start[0] + (road.end[0] - road.start[0]) * frac
                lon = road.start[1] + (road.end[1] - road.start[1]) * frac
                side = 0.00012 if index % 2 else -0.00012  # lamps on both sides of the road
                devices.append(
                    Device(
                        device_id=f"L-{road.code}-{index:03d}",
                        kind="lamp",
                        road=road.name,
                        road_class=road.road_class,
                        cabinet=cabinet,
                        rated_w=rated,
                        lat=round(lat + side, 6),
                        lon=round(lon + side, 6),
                        report_interval_s=interval(f"L-{road.code}-{index:03d}"),
                    )
                )
    for n in range(waterlevel):
        point, road_name = WATER_POINTS[n % len(WATER_POINTS)]
        road = ROAD_BY_NAME[road_name]
        cycle = n // len(WATER_POINTS)
        if cycle:
            point = f"{point}{cycle + 1}号"
        frac = rng.uniform(0.15, 0.85)
        devices.append(
            Device(
                device_id=f"W-{road.code}-{n + 1:02d}",
                kind="waterlevel",
                road=road.name,
                road_class=road.road_class,
                point=point,
                lat=round(road.start[0] + (road.end[0] - road.start[0]) * frac, 6),
                lon=round(road.start[1] + (road.end[1] - road.start[1]) * frac, 6),
                report_interval_s=interval(f"W-{road.code}-{n + 1:02d}"),
            )
        )
    return Fleet(tuple(devices))


def load_fleet(path: str | Path) -> Fleet:
    """The fleet of a registry CSV (contract §4), in file order."""
    try:
        registry = load_registry(path)
    except RegistryError as exc:
        raise FleetError(str(exc)) from exc
    if len(registry) == 0:
        raise FleetError(f"registry {path} lists no devices")
    for device in registry:
        # A device cannot report more often than its modem can send; nor can we simulate it.
        if device.report_interval_s < 1.0:
            raise FleetError(
                f"registry {path}: {device.device_id} reports every {device.report_interval_s:g} s;"
                " the simulator drives devices reporting at most once a second"
            )
    return Fleet(tuple(registry))


def write_registry(devices: Iterable[Device], path: str | Path) -> None:
    """Write a registry CSV the service loads (`registry.path`): UTF-8, header row."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    with file.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(REGISTRY_COLUMNS)
        for d in devices:
            writer.writerow(
                [
                    d.device_id,
                    d.kind,
                    d.road or "",
                    d.road_class or "",
                    d.cabinet or "",
                    _num(d.rated_w),
                    d.point or "",
                    _num(d.lat),
                    _num(d.lon),
                    _num(d.report_interval_s),
                ]
            )


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
