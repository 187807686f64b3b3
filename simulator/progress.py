"""The progress bar (rich, on stderr) and the end-of-run summary."""

from __future__ import annotations

import datetime as dt
import math
import sys
from types import TracebackType
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from simulator.publish import SendStats, percentile


class RunProgress:
    """Simulated time, messages sent and rate; silent when stderr is not a terminal or disabled."""

    def __init__(
        self,
        *,
        enabled: bool,
        start_ms: int | None = None,
        duration_s: float | None = None,
        tz: str = "Asia/Shanghai",
        label: str = "simulating",
        total: float | None = None,
    ) -> None:
        self.console = Console(stderr=True)
        self.enabled = enabled and sys.stderr.isatty()
        self.start_ms = start_ms
        self.duration_s = duration_s
        self.tz = ZoneInfo(tz)
        self.label = label
        self.total = total if total is not None else duration_s
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[clock]}"),
            TextColumn("{task.fields[sent]:>10} msgs"),
            TextColumn("{task.fields[rate]:>9} msg/s"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.enabled,
            transient=False,
        )
        self.task = self.progress.add_task(
            label, total=self.total or None, clock="", sent="0", rate="0"
        )

    def __enter__(self) -> RunProgress:
        self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def update(self, stats: SendStats) -> None:
        """For simulate/replay: position = the last message's offset (simulated seconds)."""
        clock = ""
        if self.start_ms is not None:
            when = dt.datetime.fromtimestamp(
                (self.start_ms + stats.last_offset_s * 1000) / 1000, self.tz
            )
            clock = when.strftime("%m-%d %H:%M:%S")
        self.progress.update(
            self.task,
            completed=stats.last_offset_s,
            clock=clock,
            sent=f"{stats.sent:,}",
            rate=f"{stats.rate:,.0f}",
        )

    def update_load(self, sent: int, acked: int, elapsed: float) -> None:
        rate = acked / elapsed if elapsed > 0 else 0.0
        self.progress.update(
            self.task,
            completed=min(elapsed, self.total or elapsed),
            clock=f"acked {acked:,}",
            sent=f"{sent:,}",
            rate=f"{rate:,.0f}",
        )


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f} ms"


def summary_lines(stats: SendStats, *, what: str, published: bool) -> list[str]:
    elapsed = stats.elapsed
    lines = [
        f"{what}: {stats.sent:,} messages, {stats.bytes / 1e6:.1f} MB payload, "
        f"{elapsed:.1f} s, {stats.sent / elapsed if elapsed > 0 else 0:,.0f} msg/s"
    ]
    if published:
        ordered = sorted(stats.latencies)
        lines.append(
            f"  QoS 1 acked {stats.acked:,}, failed {stats.failed:,}; ack latency "
            f"p50 {_ms(percentile(ordered, 50))}, p90 {_ms(percentile(ordered, 90))}, "
            f"p99 {_ms(percentile(ordered, 99))}, max {_ms(ordered[-1] if ordered else math.nan)}"
        )
    return lines
