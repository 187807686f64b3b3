"""A single-lamp controller on a cabinet's feeder: what it measures and reports.

The cabinet's time switch lights its feeder a few minutes either side of sunset and sunrise (each
cabinet its own offset, within the rules' 15-minute margins), the dimming plan turns the LEDs down
after midnight, and the controller meters the lamp: power ≈ rated × dim with driver overhead and
noise, a power factor that drops when dimmed, a supply voltage with the evening peak's sag, and
cumulative energy integrated from the true power, so it never goes backwards.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from devices.dimming import DimmingPlan
from devices.registry import Device
from simulator.clock import SunClock
from simulator.errors import OptionError
from simulator.faults import Fault

STANDBY_W = 0.5  # the controller itself, lamp off
ENERGY_STEP_MS = 60_000  # energy is integrated on this grid between readings
NOMINAL_V = 223.0
# The faults active on this device at a timestamp (ms).
FaultsAt = Callable[[int], list[Fault]]


# 50 % from midnight to 04:30, full light for the evening and the morning commute.
DEFAULT_DIMMING_TEXT = "00:00-04:30=50"
DEFAULT_DIMMING = DimmingPlan.parse(DEFAULT_DIMMING_TEXT)


def parse_dimming(text: str) -> DimmingPlan:
    """`00:00-04:30=50;22:00-00:00=80` → a plan (devices.dimming, shared with the rules)."""
    try:
        return DimmingPlan.parse(text)
    except ValueError as exc:
        raise OptionError(f"--dimming {text!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class CabinetSwitch:
    """A cabinet's time switch and feeder: every lamp on it switches at the same instants.

    Drawn from the cabinet id and the seed alone, so the registry's order (or which other cabinets
    exist) never moves them.
    """

    on_offset_ms: int  # after sunset
    off_offset_ms: int  # after sunrise
    v_offset: float  # the feeder transformer's tap

    @classmethod
    def of(cls, seed: int, cabinet: str) -> CabinetSwitch:
        rng = random.Random(f"{seed}:cabinet:{cabinet}")
        return cls(
            on_offset_ms=int(rng.uniform(-300, 480) * 1000),
            off_offset_ms=int(rng.uniform(-480, 300) * 1000),
            v_offset=rng.uniform(-2.0, 2.0),
        )


def ambient_c(sun: SunClock, ts_ms: int) -> float:
    """Air temperature: Jining's seasonal mean with a daily swing (peak 15:00, low 03:00)."""
    local = sun.local(ts_ms)
    doy = local.timetuple().tm_yday
    season = 14.0 - 13.5 * math.cos(2 * math.pi * (doy - 15) / 365)
    hour = sun.local_hours(ts_ms)
    return season + 4.0 * math.cos(2 * math.pi * (hour - 15) / 24)


def supply_sag_v(hour: float) -> float:
    """Evening peak load pulls the feeder down (most at 20:30); late night it recovers above."""
    evening = 8.0 * math.exp(-(((hour - 20.5) / 1.6) ** 2))
    night = -2.0 * math.exp(-(((hour - 3.0) / 2.0) ** 2))
    return evening + night


class LampSim:
    """One lamp. `reading(ts_ms, t_s, faults)` gives the next telemetry object."""

    __slots__ = (
        "device",
        "dimming",
        "drop_v",
        "energy_kwh",
        "last_ms",
        "off_offset_ms",
        "on_offset_ms",
        "pf_full",
        "rated_w",
        "rng",
        "rssi_base",
        "seq",
        "sun",
        "v_offset",
    )

    def __init__(
        self,
        device: Device,
        *,
        seed: int,
        sun: SunClock,
        dimming: DimmingPlan,
        switch: CabinetSwitch,
    ) -> None:
        self.device = device
        self.sun = sun
        self.dimming = dimming
        self.rng = random.Random(f"{seed}:lamp:{device.device_id}")
        self.rated_w = device.rated_w or 150.0
        # The cabinet's time switch: the same offsets for every lamp on the feeder.
        self.on_offset_ms = switch.on_offset_ms
        self.off_offset_ms = switch.off_offset_ms
        self.v_offset = switch.v_offset
        self.drop_v = self.rng.uniform(0.0, 3.0)  # line drop: how far down the feeder it hangs
        self.pf_full = self.rng.uniform(0.95, 0.985)
        self.rssi_base = self.rng.uniform(-98.0, -62.0)
        self.energy_kwh = self.rng.uniform(800.0, 9000.0)  # years of service so far
        self.seq = 0
        self.last_ms: int | None = None

    # -- the lamp's true state --------------------------------------------------------------

    def scheduled_on(self, ts_ms: int) -> bool:
        return self.sun.is_night(ts_ms, self.on_offset_ms, self.off_offset_ms)

    def plan_dim(self, ts_ms: int) -> float:
        return self.dimming.dim_at(self.sun.minute_of_day(ts_ms))

    def true_state(self, ts_ms: int, faults: list[Fault]) -> tuple[bool, float, float]:
        """(relay on, dim %, watts drawn) without metering noise."""
        kinds = {f.kind for f in faults}
        if "cabinet_out" in kinds:
            return False, 0.0, 0.0
        if "lamp_failure" in kinds:
            return False, 0.0, STANDBY_W
        on = self.scheduled_on(ts_ms) or "day_burning" in kinds
        if not on:
            return False, 0.0, STANDBY_W
        dim = (
            100.0
            if "day_burning" in kinds and not self.scheduled_on(ts_ms)
            else self.plan_dim(ts_ms)
        )
        # LED drivers draw a little more than linear when dimmed (fixed losses).
        watts = self.rated_w * (0.04 + 0.96 * dim / 100.0) + STANDBY_W
        for fault in faults:
            if fault.kind == "low_power":
                watts *= fault.number("factor", 0.5)
        return True, dim, watts

    def _integrate(self, ts_ms: int, faults_at: FaultsAt) -> None:
        """Energy from the last reading to now, on a one-minute grid of the true power."""
        last = self.last_ms
        self.last_ms = ts_ms
        if last is None or ts_ms <= last:
            return
        t = last
        while t < ts_ms:
            step = min(ENERGY_STEP_MS, ts_ms - t)
            mid = t + step // 2
            watts = self.true_state(mid, faults_at(mid))[2]
            self.energy_kwh += watts * step / 3_600_000_000
            t += step

    # -- what the controller reports --------------------------------------------------------

    def reading(self, ts_ms: int, faults_at: FaultsAt) -> dict[str, object]:
        self._integrate(ts_ms, faults_at)
        faults = faults_at(ts_ms)
        rng = self.rng
        on, dim, watts = self.true_state(ts_ms, faults)
        hour = self.sun.local_hours(ts_ms)
        volts = NOMINAL_V + self.v_offset - self.drop_v - supply_sag_v(hour) + rng.gauss(0, 0.6)
        pf = self.pf_full - (0.05 * (100 - dim) / 100 if on else 0.0) + rng.gauss(0, 0.004)
        if not on:
            pf = 0.32 + rng.gauss(0, 0.01)  # a controller's switch-mode supply idling
        for fault in faults:
            if fault.kind == "over_voltage":
                volts = fault.number("volts", 246.0) + rng.gauss(0, 0.8)
            elif fault.kind == "under_voltage":
                volts = fault.number("volts", 190.0) + rng.gauss(0, 0.8)
            elif fault.kind == "poor_power_factor" and on:
                pf = fault.number("pf", 0.42) + rng.gauss(0, 0.01)
        if on:
            watts *= 1.0 + rng.gauss(0, 0.012)
        pf = min(max(pf, 0.05), 0.999)
        amps = watts / (volts * pf)
        temp = ambient_c(self.sun, ts_ms) + (7.0 * dim / 100 if on else 0.5) + rng.gauss(0, 0.3)
        self.seq += 1
        return {
            "ts": ts_ms,
            "seq": self.seq,
            "on": on,
            "dim": round(dim),
            "voltage": round(volts, 1),
            # A controller's meter saturates at its range (contract §1), whatever the registry says.
            "current": round(min(amps, 20.0), 3),
            "power": round(min(watts, 5000.0), 1),
            "power_factor": round(pf, 3),
            "energy": round(self.energy_kwh, 3),
            "temperature": round(temp, 1),
            "rssi": round(min(self.rssi_base + rng.gauss(0, 2.0), -30.0)),
        }
