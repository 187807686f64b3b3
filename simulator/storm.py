"""A design storm: the Chicago hyetograph (Keifer & Chu, 1957).

Chinese drainage design (GB 50014) builds its rain events this way from a city's storm-intensity
formula i = a / (t + b)^c (mm/min, t in minutes): the intensity peaks at `peak` × duration and the
rain in any window around the peak matches the formula. That gives an exact cumulative curve, so the
rain between two readings is a difference of two values, with no integration error to accumulate.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Storm:
    """One rain event. Times in simulated seconds from the run's start.

    Args:
        start_s: when the rain starts.
        duration_s: how long it rains.
        total_mm: rain over the whole event (at a point with rain factor 1).
        peak: where the peak falls, as a fraction of the duration (0.3-0.5 is typical in China).
        b: the formula's `b` (minutes); `c`: its exponent. Defaults are typical of North China.
        points: waterlogging points it falls on (None: every point).
    """

    start_s: float
    duration_s: float
    total_mm: float
    peak: float = 0.4
    b: float = 10.0
    c: float = 0.7
    points: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.total_mm < 0:
            raise ValueError("a storm needs duration > 0 and total >= 0")
        if not 0.05 <= self.peak <= 0.95:
            raise ValueError("storm peak must be within 0.05 … 0.95 of the duration")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def falls_on(self, device_id: str) -> bool:
        return self.points is None or device_id in self.points

    def _window(self, tau_min: float) -> float:
        """Rain (mm) of the formula over a window of `tau_min` minutes around the peak."""
        t = self.duration_s / 60.0
        a = self.total_mm * (t + self.b) ** self.c / t  # scaled so the whole event is total_mm
        return a * tau_min / (tau_min + self.b) ** self.c

    def cumulative(self, t_s: float) -> float:
        """Rain (mm) fallen from the start of the event until `t_s` (run seconds)."""
        if t_s <= self.start_s:
            return 0.0
        if t_s >= self.end_s:
            return self.total_mm
        minutes = (t_s - self.start_s) / 60.0
        total_min = self.duration_s / 60.0
        r = self.peak
        at_peak = r * total_min
        before = r * self._window(total_min)  # rain before the peak
        if minutes <= at_peak:
            return before - r * self._window((at_peak - minutes) / r)
        return before + (1 - r) * self._window((minutes - at_peak) / (1 - r))

    def rain_between(self, t1_s: float, t2_s: float) -> float:
        """Rain (mm) between two run times."""
        return max(0.0, self.cumulative(t2_s) - self.cumulative(t1_s))
