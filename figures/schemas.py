"""What the figures routes answer, for the OpenAPI document (the bodies are built as dicts in
`figures.service` and `figures.report`; these models describe them, they do not filter them).

Times are RFC 3339 strings; rates are percentages (0–100, one decimal), null where nothing counts
(no lamp should have been lit, no device registered, no case opened)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Kind = Literal["lamp", "waterlevel"]


# ---- lighting rate (contract §7) ----------------------------------------------------------------


class LightingEntry(BaseModel):
    lamps: int
    rate: float | None
    target: float | None
    ok: bool | None


class LightingOverall(LightingEntry):
    lit_hours: float
    should_hours: float
    complete: bool  # whether the night is over (else: so far)


class LightingRoad(LightingEntry):
    road: str
    road_class: str | None


class LightingClass(LightingEntry):
    road_class: str


class Lighting(BaseModel):
    date: str
    from_: str = Field(alias="from")  # `from` is a Python keyword
    to: str
    overall: LightingOverall
    by_road: list[LightingRoad]
    by_class: list[LightingClass]


# ---- online rate --------------------------------------------------------------------------------


class OnlineEntry(BaseModel):
    devices: int
    online: int
    rate: float | None


class OnlineKind(OnlineEntry):
    kind: str


class OnlineRoad(OnlineEntry):
    kind: str
    road: str


class DeviceSeen(BaseModel):
    online: bool
    last_seen: str | None


class Online(BaseModel):
    at: str
    overall: OnlineEntry
    by_kind: list[OnlineKind]
    by_road: list[OnlineRoad]
    devices: dict[str, DeviceSeen] | None = None  # only with ?devices=true


# ---- flood board --------------------------------------------------------------------------------


class FloodPoint(BaseModel):
    device: str
    point: str | None
    road: str | None
    lat: float | None
    lon: float | None
    levels: list[float]
    depth_cm: float | None  # null: never heard lately
    level: int
    trend: Literal["rising", "steady", "receding"] | None
    cm_per_10min: float | None = None
    rain_mm_1h: float | None = None
    battery: float | None = None
    at: str | None = None
    above_level1_since: str | None = None
    stale: bool | None = None


class Flood(BaseModel):
    at: str
    in_flood: int
    points: list[FloodPoint]


# ---- cases --------------------------------------------------------------------------------------


class CaseFigures(BaseModel):
    opened: int
    acked_in_time: int
    closed_in_time: int
    closed: int
    still_open: int
    overdue: int
    mtta_min: float | None
    mttr_min: float | None
    closure_rate: float | None


class CaseRule(CaseFigures):
    rule: str


class CaseRoad(CaseFigures):
    road: str


class Cases(BaseModel):
    date: str
    overall: CaseFigures
    by_rule: list[CaseRule]
    by_road: list[CaseRoad]


# ---- the page header ----------------------------------------------------------------------------


class OverviewLighting(BaseModel):
    date: str
    rate: float | None
    worst_roads: list[LightingRoad]


class OpenAlerts(BaseModel):
    total: int
    by_severity: dict[str, int]


class Overview(BaseModel):
    at: str
    lighting: OverviewLighting
    online: OnlineEntry
    open_alerts: OpenAlerts
    in_flood: int
    overdue: int


# ---- the map ------------------------------------------------------------------------------------


class DeviceItem(BaseModel):
    device: str
    kind: str
    road: str | None
    road_class: str | None
    cabinet: str | None
    point: str | None
    lat: float | None
    lon: float | None
    online: bool
    last_seen: str | None
    alerts: list[str]  # the severities of its open alerts
    lit: bool | None = None  # lamps heard lately
    depth_cm: float | None = None  # waterlogging points heard lately
    level: int | None = None


class Devices(BaseModel):
    at: str
    items: list[DeviceItem]


# ---- chart series -------------------------------------------------------------------------------


class Series(BaseModel):
    device: str | None
    kind: Kind
    field: str
    from_: str = Field(alias="from")
    to: str
    step_s: float
    t: list[int]  # bucket starts, epoch ms
    mean: list[float]
    min: list[float | None]
    max: list[float | None]
    n: list[int]  # readings per bucket


# ---- the daily report ---------------------------------------------------------------------------


class ReportNight(BaseModel):
    date: str
    from_: str = Field(alias="from")
    to: str
    overall: LightingOverall
    by_class: list[LightingClass]
    by_road: list[LightingRoad]


class FloodPeak(BaseModel):
    device: str
    point: str | None
    road: str | None
    peak_cm: float
    peak_at: str
    level: int
    first_over_level1: str
    minutes_over_level1: int


class OfflineDevice(BaseModel):
    device: str
    kind: str
    road: str | None
    last_seen: str | None


class DailyReport(BaseModel):
    date: str
    made_at: str
    provisional: bool  # made before its time (or before the night's readings are all in): not kept
    night: ReportNight
    cases: Cases
    flood: list[FloodPeak]
    offline: list[OfflineDevice]
