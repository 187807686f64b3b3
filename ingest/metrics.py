"""Prometheus counters of the ingest path (counters, not log lines, for throughput).

Each service instance owns a CollectorRegistry, so tests can run several in one process.
Label children are bound once: `.inc()` on a bound child is the cheap path.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics

from devices.kinds import KINDS
from ingest.decode import REASONS

# `*_created` series double the /metrics page and say nothing a crew or operator needs.
disable_created_metrics()


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "streetwatch_messages_received", "MQTT messages received", registry=r
        )
        self._accepted = Counter(
            "streetwatch_readings_accepted",
            "Readings, events and status changes accepted",
            ["kind", "channel"],
            registry=r,
        )
        self._rejected = Counter(
            "streetwatch_rejected",
            "Rejected messages or readings, by reason",
            ["reason"],
            registry=r,
        )
        self.unregistered = Counter(
            "streetwatch_unregistered_readings",
            "Accepted readings from devices not in the registry",
            registry=r,
        )
        self.points_written = Counter(
            "streetwatch_points_written", "Points committed to the store", registry=r
        )
        self._write_errors = Counter(
            "streetwatch_store_errors", "Store write failures, by class", ["error"], registry=r
        )
        self.spool_bytes = Gauge(
            "streetwatch_spool_bytes",
            "Bytes in the spool not yet committed to the store",
            registry=r,
        )
        self.spool_full = Gauge(
            "streetwatch_spool_full", "1 while the spool is full and acks are held back", registry=r
        )
        self.mqtt_connected = Gauge(
            "streetwatch_mqtt_connected", "1 while connected to the broker", registry=r
        )
        self.mqtt_connects = Counter(
            "streetwatch_mqtt_connects", "Successful broker connections", registry=r
        )
        self.store_up = Gauge(
            "streetwatch_store_up", "1 when the last store write succeeded", registry=r
        )
        for reason in REASONS:
            self._rejected.labels(reason=reason)
        for kind in KINDS:
            for channel in ("telemetry", "event", "status"):
                self._accepted.labels(kind=kind, channel=channel)
        self._accepted_children: dict[tuple[str, str], Counter] = {}
        self._rejected_children: dict[str, Counter] = {}

    def accepted(self, kind: str, channel: str) -> Counter:
        key = (kind, channel)
        child = self._accepted_children.get(key)
        if child is None:
            child = self._accepted_children[key] = self._accepted.labels(kind=kind, channel=channel)
        return child

    def rejected(self, reason: str) -> Counter:
        child = self._rejected_children.get(reason)
        if child is None:
            child = self._rejected_children[reason] = self._rejected.labels(reason=reason)
        return child

    def write_error(self, error: str) -> None:
        self._write_errors.labels(error=error).inc()

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (for tests and the demo's summary)."""
        got = self.registry.get_sample_value(name, labels or None)
        return float(got or 0.0)
