"""Scenario files: a night or a storm, its faults, and the alerts it must raise (contract §3).

    name: storm
    start: "16:00"                      # local clock time: the most recent such night that has
                                        # ended by now (or RFC 3339 to pin a date; no offset:
                                        # the city's time zone)
    duration: 10h
    seed: 11
    fleet: {lamps: 200, waterlevel: 12}  # or {registry: city.csv} (relative to this file)
    dimming: "00:00-04:30=50"            # optional
    storms:
      - {at: 1h, duration: 2h, total_mm: 85, peak: 0.4}
    water:                               # optional per-point site parameters (water.py)
      W-JAQ-01: {gain: 1.3, capacity_cm_min: 0.25}
    faults:
      - {kind: cabinet_out, target: C-JAQ-02, at: "17:40", for: 2h,
         expect: [cabinet_outage, lamp_fault]}
    expect:                              # alerts no fault causes (the storm's)
      - {rule: water_level, device: W-JAQ-01}

A fault's `expect` names rules; the alert's device is the fault's device, each of a cabinet's lamps,
or for `cabinet_outage` the cabinet itself (the group alert carries the group's key).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from devices.location import LocationConfig
from devices.rule_ids import STANDARD_RULE_IDS
from simulator.clock import clock_of, parse_duration, parse_start
from simulator.errors import FaultSpecError, FleetError, OptionError, ScenarioError
from simulator.faults import Fault, FaultSpec, canonical_kind, resolve_faults
from simulator.fleet import Fleet, generate_fleet, load_fleet
from simulator.lamp import DEFAULT_DIMMING, parse_dimming
from simulator.storm import Storm
from simulator.stream import DEFAULT_PREFIX, RunPlan

STANDARD_RULES = STANDARD_RULE_IDS
GROUP_RULES = frozenset({"cabinet_outage"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FleetSection(_Model):
    lamps: int = Field(790, ge=0)
    waterlevel: int = Field(12, ge=0)
    registry: str | None = None


class StormSection(_Model):
    at: str = "0s"
    duration: str = "2h"
    total_mm: float = Field(80.0, ge=0)
    peak: float = Field(0.4, ge=0.05, le=0.95)
    b: float = Field(10.0, gt=0)
    c: float = Field(0.7, gt=0, lt=1.5)
    points: list[str] | None = None


class FaultSection(_Model):
    kind: str
    target: str | None = None
    at: str = "0s"
    for_: str | None = Field(None, alias="for")
    params: dict[str, str | float | int | bool] = {}
    expect: list[str] = []

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        try:
            return canonical_kind(value)
        except FaultSpecError as exc:
            raise ValueError(str(exc)) from None


class ExpectSection(_Model):
    rule: str
    device: str


class ScenarioFile(_Model):
    name: str
    description: str = ""
    start: str = "18:00"
    duration: str = "12h"
    seed: int = 1
    prefix: str = DEFAULT_PREFIX
    fleet: FleetSection = FleetSection()
    dimming: str | None = None
    storms: list[StormSection] = []
    water: dict[str, dict[str, float]] = {}
    faults: list[FaultSection] = []
    expect: list[ExpectSection] = []


@dataclass(frozen=True, slots=True)
class ExpectedAlert:
    rule: str
    device: str


@dataclass(slots=True)
class Scenario:
    """A loaded scenario: the plan to run and the alerts it must raise."""

    name: str
    description: str
    plan: RunPlan
    expected: list[ExpectedAlert]
    source: str
    # The seed the scenario's own `expect` list holds for (its storm peaks follow the seed), or
    # None when every expected alert comes from a fault and so follows whatever seed is given.
    pinned_seed: int | None = None

    @property
    def scope(self) -> set[str]:
        """Device and cabinet ids the scenario owns: alerts about anything else are not ours."""
        ids = {d.device_id for d in self.plan.fleet.devices}
        ids.update(self.plan.fleet.cabinets())
        return ids


def scenario_names() -> list[str]:
    folder = resources.files("simulator") / "scenarios"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def find_scenario(name_or_path: str) -> tuple[str, Path | None]:
    """Text of a shipped scenario by name, or of a file by path."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.exists():
            raise ScenarioError(f"scenario file {path} does not exist")
        return path.read_text(encoding="utf-8"), path
    shipped = resources.files("simulator") / "scenarios" / f"{name_or_path}.yaml"
    if not shipped.is_file():
        raise ScenarioError(
            f"no scenario {name_or_path!r}; shipped: {', '.join(scenario_names())} (or give a path)"
        )
    return shipped.read_text(encoding="utf-8"), None


def load_scenario(
    name_or_path: str,
    *,
    location: LocationConfig | None = None,
    start: str | None = None,
    duration: str | None = None,
    seed: int | None = None,
    prefix: str | None = None,
    now_ms: int | None = None,
) -> Scenario:
    """Load and resolve a scenario; keyword overrides win over the file (the CLI's options)."""
    text, path = find_scenario(name_or_path)
    where = str(path) if path is not None else f"scenarios/{name_or_path}.yaml"
    try:
        raw: Any = yaml.safe_load(text)
        spec = ScenarioFile.model_validate(raw)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{where}: not YAML: {exc}") from exc
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ScenarioError(f"{where}: {key}: {err['msg']}") from None
    loc = location or LocationConfig()
    try:
        duration_s = parse_duration(duration or spec.duration)
        # A clock time plays the most recent such night that has ended by now; `--start` a date
        # keeps the scenario's clock time on that day.
        start_ms = parse_start(
            start or spec.start,
            now_ms=now_ms,
            tz=loc.timezone,
            clock=clock_of(spec.start, loc.timezone) or "18:00",
            duration_s=duration_s,
        )
        run_seed = spec.seed if seed is None else seed
        fleet = _fleet(spec.fleet, path, run_seed)
        storms = [
            Storm(
                start_s=parse_duration(s.at, option="storms.at"),
                duration_s=parse_duration(s.duration, option="storms.duration"),
                total_mm=s.total_mm,
                peak=s.peak,
                b=s.b,
                c=s.c,
                points=None if s.points is None else tuple(s.points),
            )
            for s in spec.storms
        ]
        specs = [
            FaultSpec(
                kind=f.kind,
                target=f.target,
                at=f.at,
                for_=f.for_,
                params={
                    k: str(v).lower() if isinstance(v, bool) else str(v)
                    for k, v in f.params.items()
                },
                expect=tuple(f.expect),
            )
            for f in spec.faults
        ]
        faults = resolve_faults(
            specs,
            fleet,
            start_ms=start_ms,
            tz=loc.timezone,
            seed=run_seed,
            duration_s=duration_s,
        )
        dimming = DEFAULT_DIMMING if spec.dimming is None else parse_dimming(spec.dimming)
    except (OptionError, FaultSpecError, FleetError, ValueError) as exc:
        raise ScenarioError(f"{where}: {exc}") from exc
    ids = {d.device_id for d in fleet.devices} | set(fleet.cabinets())
    points = {d.device_id for d in fleet.waterlevel}
    for storm in storms:
        for point in storm.points or ():
            if point not in points:
                raise ScenarioError(f"{where}: storms: no waterlevel point {point!r} in the fleet")
    for point in spec.water:
        if point not in ids:
            raise ScenarioError(f"{where}: water: no device {point!r} in the fleet")
    expected = expected_alerts(faults)
    for item in spec.expect:
        if item.device not in ids:
            raise ScenarioError(f"{where}: expect: no device {item.device!r} in the fleet")
        expected.append(ExpectedAlert(item.rule, item.device))
    for alert in expected:
        if alert.rule not in STANDARD_RULES:
            raise ScenarioError(f"{where}: expect: {alert.rule!r} is not a rule id of contract §3")
    plan = RunPlan(
        fleet=fleet,
        start_ms=start_ms,
        duration_s=duration_s,
        seed=run_seed,
        prefix=prefix or spec.prefix,
        location=loc,
        faults=faults,
        storms=storms,
        dimming=dimming,
        water_params=spec.water,
    )
    pinned = spec.seed if spec.expect else None
    return Scenario(spec.name, spec.description, plan, _unique(expected), where, pinned)


def _fleet(section: FleetSection, path: Path | None, seed: int) -> Fleet:
    if section.registry is not None:
        registry = Path(section.registry)
        if not registry.is_absolute() and path is not None:
            registry = path.parent / registry
        return load_fleet(registry)
    return generate_fleet(section.lamps, section.waterlevel, seed=seed)


def expected_alerts(faults: list[Fault]) -> list[ExpectedAlert]:
    out: list[ExpectedAlert] = []
    for fault in faults:
        for rule in fault.expect:
            if rule in GROUP_RULES:
                out.append(ExpectedAlert(rule, fault.target))
            else:
                out.extend(ExpectedAlert(rule, d) for d in fault.devices)
    return out


def _unique(items: list[ExpectedAlert]) -> list[ExpectedAlert]:
    seen: dict[ExpectedAlert, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)
