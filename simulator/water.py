"""A waterlogging point: rain on its catchment, the depth over the road, and the sensor on a pole.

The point is a small reservoir. Rain (the storms' hyetographs, scaled and delayed for where the point
lies) runs off the catchment through a linear reservoir (lag `tau_s`), fills the low spot (`gain` cm
of depth per mm of rain), and drains through the sewer or a pump at up to `capacity_cm_min`, less when
only a film is left: so the depth rises behind the rain, peaks after it, and recedes for an hour or two.

Physics runs on simulated seconds; the stream may run them faster than the timestamps (the demo does,
to show a two-hour storm in two minutes).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from devices.registry import Device
from simulator.faults import Fault
from simulator.storm import Storm

STEP_S = 10.0
DEADBAND_CM = 0.3  # the ultrasonic sensor reads a dry road as exactly 0
WET_INTERVAL_S = 60.0
# A lithium pack on a pole lasts years: a little every day, a little more per transmission.
BATTERY_DRAIN_PER_DAY = 0.03
BATTERY_DRAIN_PER_REPORT = 0.0002
DEFAULT_SAG_S = 2 * 3600.0  # a failing pack's voltage sags over hours, not in one reading


class WaterSim:
    """One point. `advance(t_s)` integrates to `t_s`; `reading(...)` gives the telemetry object."""

    def __init__(
        self,
        device: Device,
        *,
        seed: int,
        storms: Sequence[Storm],
        params: dict[str, float] | None = None,
    ) -> None:
        self.device = device
        self.rng = random.Random(f"{seed}:water:{device.device_id}")
        rng = random.Random(f"{seed}:water-site:{device.device_id}")
        p = dict(params or {})
        self.gain = p.get("gain", rng.uniform(0.15, 1.0))
        self.tau_s = p.get("tau_s", rng.uniform(600.0, 1500.0))
        self.capacity_cm_min = p.get("capacity_cm_min", rng.uniform(0.2, 0.5))
        self.full_at_cm = p.get("full_at_cm", 5.0)
        self.rain_factor = p.get("rain_factor", rng.uniform(0.85, 1.15))
        self.rain_lag_s = p.get("rain_lag_s", rng.uniform(0.0, 600.0))
        self.battery = p.get("battery", rng.uniform(55.0, 98.0))
        self.rssi_base = rng.uniform(-100.0, -70.0)
        self.storms = [s for s in storms if s.falls_on(device.device_id)]
        self.depth_cm = 0.0
        self.inflow = 0.0  # cm/s reaching the low spot
        self.t_s = 0.0
        self.rain_acc = 0.0
        self.raining = False
        self.seq = 0
        # What the sensor itself last measured: the firmware reports fast while it sees water or
        # rain, and slows down again once it no longer does (it knows nothing of hidden inflow).
        self.seen_depth = 0.0
        self.seen_rain = 0.0
        self.battery_t_s: float | None = None
        self.sag_from: dict[tuple[str, float], float] = {}

    def rain_between(self, t1: float, t2: float) -> float:
        lag = self.rain_lag_s
        return self.rain_factor * sum(s.rain_between(t1 - lag, t2 - lag) for s in self.storms)

    def _storm_near(self, t1: float, t2: float) -> bool:
        lag = self.rain_lag_s
        return any(s.start_s <= t2 - lag and t1 - lag <= s.end_s for s in self.storms)

    def advance(self, t_s: float) -> None:
        if t_s <= self.t_s:
            return
        if self.depth_cm == 0.0 and self.inflow < 1e-9 and not self._storm_near(self.t_s, t_s):
            self.t_s = t_s  # dry and nothing coming: nothing to integrate
            self.inflow = 0.0
            self.raining = False
            return
        t = self.t_s
        while t < t_s:
            dt = min(STEP_S, t_s - t)
            rain = self.rain_between(t, t + dt)
            self.rain_acc += rain
            self.raining = rain > 0.0
            target = rain / dt * self.gain
            self.inflow += (target - self.inflow) * min(1.0, dt / self.tau_s)
            drain = (
                self.capacity_cm_min / 60.0 * min(1.0, math.sqrt(self.depth_cm / self.full_at_cm))
            )
            self.depth_cm = max(0.0, self.depth_cm + (self.inflow - drain) * dt)
            if self.depth_cm < 1e-6:
                self.depth_cm = 0.0
            t += dt
        self.t_s = t_s

    @property
    def wet(self) -> bool:
        return self.depth_cm >= DEADBAND_CM or self.raining or self.inflow > 1e-5

    @property
    def sees_water(self) -> bool:
        """The sensor's own view: water above the deadband or rain in its last reading."""
        return self.seen_depth >= DEADBAND_CM or self.seen_rain > 0.0

    def interval_s(self) -> float:
        """Reporting interval (simulated s): the registry's, every minute while it sees water."""
        base = self.device.report_interval_s
        return min(WET_INTERVAL_S, base) if self.sees_water else base

    def reading(self, ts_ms: int, t_s: float, faults: list[Fault]) -> dict[str, object]:
        self.advance(t_s)
        rng = self.rng
        depth = self.depth_cm
        shown = depth + rng.gauss(0, 0.15) if depth >= DEADBAND_CM else 0.0
        days = 0.0 if self.battery_t_s is None else max(0.0, t_s - self.battery_t_s) / 86400.0
        self.battery_t_s = t_s
        drain = BATTERY_DRAIN_PER_DAY * days + BATTERY_DRAIN_PER_REPORT
        self.battery = max(0.0, self.battery - drain)
        battery = self.battery
        for fault in faults:
            if fault.kind == "stuck_sensor":
                shown = fault.number("depth_cm", 3.2)
            elif fault.kind == "low_battery":
                level = fault.number("level", 15.0)
                key = (fault.kind, fault.at_s)
                begin = self.sag_from.setdefault(key, max(battery, level))
                over = fault.number("over_s", DEFAULT_SAG_S)
                sag = 1.0 if over <= 0 else min(1.0, max(0.0, t_s - fault.at_s) / over)
                battery = min(battery, begin - (begin - level) * sag)
                self.battery = battery
        self.seq += 1
        rain = round(min(self.rain_acc, 500.0), 1)
        self.rain_acc = 0.0
        depth_cm = round(min(max(shown, 0.0), 500.0), 1)
        self.seen_depth, self.seen_rain = depth_cm, rain
        return {
            "ts": ts_ms,
            "seq": self.seq,
            "depth_cm": depth_cm,
            "rain_mm": rain,
            "battery": round(battery, 1),
            "rssi": round(min(self.rssi_base - (3.0 if self.wet else 0.0) + rng.gauss(0, 2), -30)),
        }

    def battery_replaced(self) -> None:
        self.battery = 99.0
        self.sag_from.clear()
