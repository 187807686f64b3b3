"""How fast device ids the registry does not know are appearing.

The contract ingests unregistered devices, and every new id is a new series in InfluxDB. A few a
day is a fleet being installed; thousands a minute is a misconfigured gateway or someone spraying
topics, and InfluxDB 1.x stops taking writes at `max-series-per-database` (1M by default). So new
ids are stored, counted, and warned about (in /healthz and metrics) when the rate passes a limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Remembered ids; past this the memory starts over (an id may then count as new a second time).
MAX_REMEMBERED = 200_000


class NewDeviceRate:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._known: set[str] = set()
        self.total = 0  # unregistered ids first seen since start
        self._window_start = clock()
        self._in_window = 0
        self.last_minute = 0  # new ids in the last whole minute

    def seen(self, device_id: str) -> None:
        if device_id in self._known:
            return
        if len(self._known) >= MAX_REMEMBERED:
            self._known.clear()
        self._known.add(device_id)
        self.total += 1
        self._roll()
        self._in_window += 1

    def _roll(self) -> None:
        now = self._clock()
        elapsed = now - self._window_start
        if elapsed >= 60.0:
            # A window with no new id at all reads as zero, not as the last busy minute.
            self.last_minute = self._in_window if elapsed < 120.0 else 0
            self._in_window = 0
            self._window_start = now

    def per_minute(self) -> int:
        """New ids per minute: the busier of the last whole minute and the one in progress."""
        self._roll()
        return max(self.last_minute, self._in_window)
