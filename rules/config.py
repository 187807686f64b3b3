"""Rule settings: config section `rules` (assembled into Settings by streetwatch.config).

Every rule is one of a few generic kinds (threshold, levels, rate, absence, stuck, band, event,
schedule, group). The twelve standard rules of contract §3 are fields of `RulesConfig`, each a small
subclass of its kind whose only job is to carry the city defaults, so `rules.lamp_dark.severity` or
`STREETWATCH_RULES__LAMP_DARK__ENABLED=false` work and a typo fails with the key named. Users add
their own rules under `rules.custom` (id → rule of any kind) without writing code.

Any rule can be tuned per road class (`by_road_class: {main: {...}}`) or per device
(`by_device: {L-0001: {...}}`); an override is merged onto the rule and validated as the same kind at
start, so a bad override key stops the start too.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from devices.registry import ROAD_CLASSES
from devices.rule_ids import STANDARD_RULE_IDS
from rules.signals import Severity
from rules.templates import check_template

RULE_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleBase(_Model):
    """What every rule has, whatever its kind."""

    kind: str
    enabled: bool = True
    severity: Severity = "major"
    # Device kinds the rule applies to; null: every kind that has the rule's field.
    kinds: list[str] | None = None
    # Raise only after the condition held this long (event time) AND for this many readings in a row.
    for_s: float = Field(0.0, ge=0)
    for_readings: int = Field(1, ge=1)
    # Clear only after the clear condition held this long AND for this many readings in a row.
    clear_for_s: float = Field(0.0, ge=0)
    clear_readings: int = Field(1, ge=1)
    # A raised alert stays at least this long (event time): flapping is held down.
    min_hold_s: float = Field(300.0, ge=0)
    # Optional text for the crew; placeholders: {device} {road} {value} {level} {unit} {point} …
    message: str | None = None
    by_road_class: dict[str, dict[str, Any]] = {}
    by_device: dict[str, dict[str, Any]] = {}

    # Keys an override may not change (they decide what the rule is, not how it is tuned).
    _fixed_keys: ClassVar[frozenset[str]] = frozenset({"kind", "by_road_class", "by_device"})

    @model_validator(mode="after")
    def _check_overrides(self) -> RuleBase:
        if self.message is not None:
            try:
                check_template(self.message)
            except ValueError as exc:
                raise ValueError(f"message: {exc}") from None
        for road_class in self.by_road_class:
            if road_class not in ROAD_CLASSES:
                raise ValueError(f"by_road_class: {road_class!r} is not one of {ROAD_CLASSES}")
        for where, table in (("by_road_class", self.by_road_class), ("by_device", self.by_device)):
            for name, override in table.items():
                self._validate_override(f"{where}.{name}", override)
        return self

    def _validate_override(self, where: str, override: dict[str, Any]) -> None:
        fixed = self._fixed_keys & set(override)
        if fixed:
            raise ValueError(f"{where}: {sorted(fixed)[0]!r} cannot be overridden")
        try:
            self.merged(override)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                raise ValueError(f"{where}: unknown key {key!r}") from None
            raise ValueError(f"{where}.{key}: {err['msg']}") from None

    def merged(self, *overrides: dict[str, Any]) -> RuleBase:
        """This rule with overrides applied (validated as the same kind)."""
        if not any(overrides):
            return self
        data = self.model_dump(exclude={"by_road_class", "by_device"})
        for override in overrides:
            data.update(override)
        return type(self).model_validate(data)


class ThresholdRule(RuleBase):
    """Raise when `field` > `above` or < `below`; clear when back within the clear levels.

    The clear levels (hysteresis) default to the raise levels; set them apart so a value hovering
    around a level does not flap.
    """

    kind: Literal["threshold"] = "threshold"
    field: str
    above: float | None = None
    below: float | None = None
    clear_above: float | None = None  # clears only once value <= this (default: `above`)
    clear_below: float | None = None  # clears only once value >= this (default: `below`)
    # Judge only readings whose fields equal these values, e.g. {on: true}.
    when: dict[str, bool | float | str] = {}
    unit: str = ""

    @model_validator(mode="after")
    def _levels(self) -> ThresholdRule:
        if self.above is None and self.below is None:
            raise ValueError("threshold needs `above` or `below`")
        if (
            self.above is not None
            and self.clear_above is not None
            and self.clear_above > self.above
        ):
            raise ValueError("clear_above must be <= above")
        if (
            self.below is not None
            and self.clear_below is not None
            and self.clear_below < self.below
        ):
            raise ValueError("clear_below must be >= below")
        return self


class Level(_Model):
    at: float  # level reached when value >= at
    severity: Severity


class LevelsRule(RuleBase):
    """One alert whose `level` and severity move with the value (levels ascending, value >= at).

    Up a level at once (after `for_s`); down only once the value stayed `clear_delta` below the
    level for `clear_for_s`.
    """

    kind: Literal["levels"] = "levels"
    field: str
    levels: list[Level] = Field(min_length=1)
    clear_delta: float = Field(0.0, ge=0)
    unit: str = ""

    @model_validator(mode="after")
    def _ascending(self) -> LevelsRule:
        ats = [lv.at for lv in self.levels]
        if ats != sorted(ats) or len(set(ats)) != len(ats):
            raise ValueError("levels must be strictly ascending by `at`")
        return self


class RateRule(RuleBase):
    """Raise when `field` changed by >= `change` within `within_s` (rise or fall)."""

    kind: Literal["rate"] = "rate"
    field: str
    change: float = Field(gt=0)
    within_s: float = Field(gt=0)
    direction: Literal["rise", "fall"] = "rise"
    clear_change: float | None = None  # clears once the change in the window is below this
    unit: str = ""


class AbsenceRule(RuleBase):
    """Raise when a device sent nothing for `intervals` × its report_interval_s, or said offline."""

    kind: Literal["absence"] = "absence"
    intervals: float = Field(3.0, gt=0)
    # Raise on a `status` message {"online": false} (normally the device's MQTT last will).
    offline_status: bool = True
    # Registered devices never heard since start count as absent too (a lamp that died while the
    # service was down is the one the crew most needs to hear about).
    track_registered: bool = True


class StuckRule(RuleBase):
    """Raise when `field` has not changed (within `tolerance`) for `unchanged_for_s`."""

    kind: Literal["stuck"] = "stuck"
    field: str
    unchanged_for_s: float = Field(gt=0)
    tolerance: float = Field(0.0, ge=0)
    # Values that are normal to sit at (a dry road reads 0 cm for weeks).
    skip_values: list[float] = []
    unit: str = ""


class BandRule(RuleBase):
    """Raise when `field` is outside low…high × expected, expected = registry `expected_from`
    × `scale_field` / 100 (lamp power vs rated_w × dim / 100)."""

    kind: Literal["band"] = "band"
    field: str
    expected_from: str  # a registry column or attribute, e.g. rated_w
    scale_field: str | None = None  # a reading field in % (dim); null: no scaling
    low: float = Field(ge=0)
    high: float = Field(gt=0)
    clear_low: float | None = None  # default: low
    clear_high: float | None = None  # default: high
    min_expected: float = Field(0.0, ge=0)  # below this expected value, don't judge
    when: dict[str, bool | float | str] = {}
    unit: str = ""

    @model_validator(mode="after")
    def _band(self) -> BandRule:
        if self.low >= self.high:
            raise ValueError("low must be < high")
        return self


class EventRule(RuleBase):
    """Active while the device reports any of `events` raised (event channel); clear when all cleared."""

    kind: Literal["event"] = "event"
    events: list[str] | None = None  # null: any event
    ignore_events: list[str] = []
    # The alert takes the most severe of its raised events' severities (default: `severity`).
    severity_by_event: dict[str, Severity] = {}


class DimStep(_Model):
    """Expected dim level between two local times (may cross midnight)."""

    start: str  # "HH:MM", local time
    end: str
    dim: float = Field(ge=0, le=100)

    @model_validator(mode="after")
    def _times(self) -> DimStep:
        for name in ("start", "end"):
            if not _HHMM_RE.match(getattr(self, name)):
                raise ValueError(f"{name} must be HH:MM")
        return self


class ScheduleRule(RuleBase):
    """The lamp's state must follow the sun.

    Night = sunset + `sunset_offset_s` … next sunrise + `sunrise_offset_s` (astral, location section).
    `expect: on` during night: raise when the lamp is off, or draws < `dark_ratio` × rated × plan dim.
    `expect: off` during day: raise when the lamp is on. Outside its window the rule does not judge
    (a dark lamp stays reported through the day until it is seen lit at night).
    """

    kind: Literal["schedule"] = "schedule"
    expect: Literal["on", "off"]
    during: Literal["night", "day"]
    sunset_offset_s: float = 0.0
    sunrise_offset_s: float = 0.0
    dark_ratio: float = Field(0.1, ge=0, le=1)
    # Per-road dimming plan (tune by_road_class): the expected dim level by local time; else 100 %.
    dimming: list[DimStep] = []


class GroupRule(RuleBase):
    """When >= `min_count` devices sharing a registry `group_by` value go bad under any of the
    `members` rules within `window_s`, raise one alert for the group and hold back theirs.

    Members are schedule/threshold/absence rules, or event rules through `member_events`: an event
    rule's alert counts as a member only while every event it has raised is one of those listed
    (a lamp's last-gasp `supplyLoss` is the cabinet's fault; its `driverFailure` is its own).
    """

    kind: Literal["group"] = "group"
    members: list[str] = Field(min_length=1)
    # event rule id (one of `members`) -> the events that make its alert a group member
    member_events: dict[str, Annotated[list[str], Field(min_length=1)]] = {}
    group_by: str = "cabinet"
    min_count: int = Field(3, ge=2)
    window_s: float = Field(120.0, gt=0)


AnyRule = Annotated[
    ThresholdRule
    | LevelsRule
    | RateRule
    | AbsenceRule
    | StuckRule
    | BandRule
    | EventRule
    | ScheduleRule
    | GroupRule,
    Field(discriminator="kind"),
]


# ---- the twelve standard rules: a kind plus the city's defaults (sources in config.yaml) --------


class LampDarkRule(ScheduleRule):
    kinds: list[str] | None = ["lamp"]
    severity: Severity = "major"
    expect: Literal["on", "off"] = "on"
    during: Literal["night", "day"] = "night"
    sunset_offset_s: float = 900.0
    sunrise_offset_s: float = -900.0
    for_readings: int = Field(2, ge=1)


class LampDayBurningRule(ScheduleRule):
    kinds: list[str] | None = ["lamp"]
    severity: Severity = "minor"
    expect: Literal["on", "off"] = "off"
    during: Literal["night", "day"] = "day"
    sunset_offset_s: float = -900.0
    sunrise_offset_s: float = 900.0
    for_readings: int = Field(2, ge=1)


class LampPowerAbnormalRule(BandRule):
    kinds: list[str] | None = ["lamp"]
    severity: Severity = "minor"
    field: str = "power"
    expected_from: str = "rated_w"
    scale_field: str | None = "dim"
    low: float = Field(0.75, ge=0)
    high: float = Field(1.3, gt=0)
    clear_low: float | None = 0.8
    clear_high: float | None = 1.25
    min_expected: float = Field(1.0, ge=0)
    when: dict[str, bool | float | str] = {"on": True}
    for_s: float = Field(900.0, ge=0)
    unit: str = "W"


class LampVoltageAbnormalRule(ThresholdRule):
    kinds: list[str] | None = ["lamp"]
    severity: Severity = "major"
    field: str = "voltage"
    below: float | None = 198.0
    above: float | None = 235.4
    clear_below: float | None = 200.0
    clear_above: float | None = 233.0
    for_s: float = Field(300.0, ge=0)
    unit: str = "V"


class LampPowerFactorLowRule(ThresholdRule):
    kinds: list[str] | None = ["lamp"]
    severity: Severity = "warning"
    field: str = "power_factor"
    below: float | None = 0.5
    clear_below: float | None = 0.55
    when: dict[str, bool | float | str] = {"on": True}
    for_s: float = Field(900.0, ge=0)


class LampFaultRule(EventRule):
    kinds: list[str] | None = ["lamp"]
    severity: Severity = "major"
    severity_by_event: dict[str, Severity] = {
        "supplyLoss": "critical",
        "leakageDetected": "critical",
        "doorOpen": "minor",
        "tiltDetected": "major",
    }


class CabinetOutageRule(GroupRule):
    severity: Severity = "critical"
    members: list[str] = Field(["lamp_dark", "device_offline", "lamp_fault"], min_length=1)
    member_events: dict[str, Annotated[list[str], Field(min_length=1)]] = {
        "lamp_fault": ["supplyLoss"]
    }
    group_by: str = "cabinet"
    min_count: int = Field(3, ge=2)
    window_s: float = Field(120.0, gt=0)


class DeviceOfflineRule(AbsenceRule):
    severity: Severity = "major"
    intervals: float = Field(3.0, gt=0)


def _water_levels() -> list[Level]:
    return [
        Level(at=10.0, severity="minor"),
        Level(at=15.0, severity="major"),
        Level(at=27.0, severity="critical"),
        Level(at=40.0, severity="critical"),
    ]


class WaterLevelRule(LevelsRule):
    kinds: list[str] | None = ["waterlevel"]
    field: str = "depth_cm"
    levels: list[Level] = Field(default_factory=_water_levels, min_length=1)
    clear_delta: float = Field(3.0, ge=0)
    clear_for_s: float = Field(600.0, ge=0)
    unit: str = "cm"


class WaterRisingFastRule(RateRule):
    kinds: list[str] | None = ["waterlevel"]
    severity: Severity = "major"
    field: str = "depth_cm"
    change: float = Field(10.0, gt=0)
    within_s: float = Field(600.0, gt=0)
    clear_change: float | None = 5.0
    clear_for_s: float = Field(600.0, ge=0)
    unit: str = "cm"


class SensorStuckRule(StuckRule):
    kinds: list[str] | None = ["waterlevel"]
    severity: Severity = "warning"
    field: str = "depth_cm"
    unchanged_for_s: float = Field(6 * 3600.0, gt=0)
    skip_values: list[float] = [0.0]
    unit: str = "cm"


class BatteryLowRule(ThresholdRule):
    kinds: list[str] | None = ["waterlevel"]
    severity: Severity = "warning"
    field: str = "battery"
    below: float | None = 20.0
    clear_below: float | None = 25.0
    for_readings: int = Field(2, ge=1)
    unit: str = "%"


class ClockConfig(_Model):
    """The event-time clock (watermark); see docs/decisions/rules-event-time.md."""

    # Timers (durations, absence) fire only once the watermark is this far past them, so readings
    # of different devices that arrive slightly out of order are still judged in event-time order.
    delay_s: float = Field(10.0, ge=0)
    # A reading is "live" when it arrives within this of its own ts.
    live_lag_s: float = Field(120.0, gt=0)
    # After the last live reading the wall clock keeps moving the watermark this long (so devices
    # that all fall silent, e.g. a blackout, do go offline); past it the feed itself is suspect.
    live_hold_s: float = Field(3600.0, gt=0)
    # A watermark jump larger than this (a restart after a long outage with the broker session
    # lost) is a gap nobody observed: absence counts restart from its end instead of firing for all.
    gap_s: float = Field(1800.0, gt=0)
    # After our own link to the broker comes back, the wall clock waits until the backlog the
    # broker queued meanwhile is taken in: until a reading made after the return arrives, or no
    # reading at all arrived for this long, or for three times the longest pause within the
    # backlog if that is longer (the queue is empty: the devices were silent too).
    backlog_quiet_s: float = Field(5.0, gt=0)


class RulesConfig(BaseModel):
    """Config section `rules`."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    clock: ClockConfig = ClockConfig()
    # Devices missing from the registry that the rules will track. Their readings are always
    # stored; past this many, new unregistered ids get no rules (counted as `untracked`), so a
    # gateway that invents device ids cannot grow the engine's memory without bound.
    max_unregistered_devices: int = Field(20_000, ge=0)

    lamp_dark: LampDarkRule = LampDarkRule()
    lamp_day_burning: LampDayBurningRule = LampDayBurningRule()
    lamp_power_abnormal: LampPowerAbnormalRule = LampPowerAbnormalRule()
    lamp_voltage_abnormal: LampVoltageAbnormalRule = LampVoltageAbnormalRule()
    lamp_power_factor_low: LampPowerFactorLowRule = LampPowerFactorLowRule()
    lamp_fault: LampFaultRule = LampFaultRule()
    cabinet_outage: CabinetOutageRule = CabinetOutageRule()
    device_offline: DeviceOfflineRule = DeviceOfflineRule()
    water_level: WaterLevelRule = WaterLevelRule()
    water_rising_fast: WaterRisingFastRule = WaterRisingFastRule()
    sensor_stuck: SensorStuckRule = SensorStuckRule()
    battery_low: BatteryLowRule = BatteryLowRule()

    # More rules of the generic kinds: id -> rule (with `kind:`).
    custom: dict[str, AnyRule] = {}

    @model_validator(mode="after")
    def _check_rules(self) -> RulesConfig:
        for rule_id in self.custom:
            if rule_id in STANDARD_RULE_IDS:
                raise ValueError(f"custom.{rule_id}: is a standard rule id; tune rules.{rule_id}")
            if not RULE_ID_RE.match(rule_id):
                raise ValueError(f"custom.{rule_id}: rule ids are [a-z][a-z0-9_]*, up to 64")
        rules = self.all_rules()
        grouped: dict[str, str] = {}
        for rule_id, rule in rules.items():
            if not isinstance(rule, GroupRule):
                continue
            for member in rule.members:
                where = f"{rule_id}.members"
                if member not in rules:
                    raise ValueError(f"{where}: no rule {member!r}")
                if isinstance(rules[member], EventRule):
                    if member not in rule.member_events:
                        raise ValueError(
                            f"{where}: {member!r} is an event rule; list the events that make "
                            f"it a member in {rule_id}.member_events.{member}"
                        )
                elif not isinstance(rules[member], ScheduleRule | ThresholdRule | AbsenceRule):
                    raise ValueError(
                        f"{where}: {member!r} must be a schedule/threshold/absence/event rule"
                    )
                if member in grouped:
                    raise ValueError(
                        f"{where}: {member!r} is already a member of {grouped[member]}"
                    )
                grouped[member] = rule_id
            for member in rule.member_events:
                where = f"{rule_id}.member_events.{member}"
                if member not in rule.members:
                    raise ValueError(
                        f"{where}: {member!r} is not in {rule_id}.members (add it there, or "
                        "drop it here)"
                    )
                if not isinstance(rules[member], EventRule):
                    raise ValueError(f"{where}: only event rules take member_events")
        return self

    def all_rules(self) -> dict[str, RuleBase]:
        """Every rule by id (standard first, then custom), enabled or not."""
        out: dict[str, RuleBase] = {rid: getattr(self, rid) for rid in STANDARD_RULE_IDS}
        out.update(self.custom)
        return out
