"""Prometheus metrics of the ingest path (counters, not log lines, for throughput).

The per-message counters are plain integers read by a collector at scrape time: a Prometheus
`Counter.inc()` takes a lock and cost more per message than spooling it. Each service instance owns
its CollectorRegistry, so tests can run several in one process.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from devices.kinds import CHANNELS, KINDS
from ingest.decode import REASONS
from ingest.newdevices import NewDeviceRate

# `*_created` series double the /metrics page and say nothing a crew or operator needs.
disable_created_metrics()


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # Hot counters: plain ints, bumped on the hot path, exported by _HotCounters.
        self.messages = 0
        self.unregistered = 0
        self.points_written = 0
        self.acks = 0  # QoS 1 messages acknowledged to the broker (their readings durable)
        self.spool_errors = 0  # failed spool appends/fsyncs (the batch is retried, never acked)
        self.writer_restarts = 0
        self.new_devices = NewDeviceRate()
        self.accepted: dict[tuple[str, str], int] = {
            (kind, channel): 0 for kind in KINDS for channel in CHANNELS
        }
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)
        r.register(_HotCounters(self))

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
        self.socket_paused = Gauge(
            "streetwatch_mqtt_socket_paused",
            "1 while the broker socket is not read (spool full or too many bytes held)",
            registry=r,
        )
        self.store_up = Gauge(
            "streetwatch_store_up", "1 when the last store write succeeded", registry=r
        )

    def reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1

    def write_error(self, error: str) -> None:
        self._write_errors.labels(error=error).inc()

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (for tests, health and the demo's summary)."""
        got = self.registry.get_sample_value(name, labels or None)
        return float(got or 0.0)


class _HotCounters(Collector):
    def __init__(self, m: IngestMetrics) -> None:
        self.m = m

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        m = self.m
        yield CounterMetricFamily(
            "streetwatch_messages_received", "MQTT messages received", value=m.messages
        )
        accepted = CounterMetricFamily(
            "streetwatch_readings_accepted",
            "Readings, events and status changes accepted",
            labels=["kind", "channel"],
        )
        for (kind, channel), n in sorted(m.accepted.items()):
            accepted.add_metric([kind, channel], n)
        yield accepted
        rejected = CounterMetricFamily(
            "streetwatch_rejected", "Rejected messages or readings, by reason", labels=["reason"]
        )
        for reason, n in sorted(m.rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield CounterMetricFamily(
            "streetwatch_unregistered_readings",
            "Accepted readings from devices not in the registry",
            value=m.unregistered,
        )
        yield CounterMetricFamily(
            "streetwatch_points_written", "Points committed to the store", value=m.points_written
        )
        yield CounterMetricFamily(
            "streetwatch_messages_acknowledged",
            "QoS 1 messages acknowledged to the broker (only once their readings are durable)",
            value=m.acks,
        )
        yield CounterMetricFamily(
            "streetwatch_spool_errors",
            "Spool appends or fsyncs that failed (the batch was retried, not acknowledged)",
            value=m.spool_errors,
        )
        yield CounterMetricFamily(
            "streetwatch_new_devices",
            "Unregistered device ids seen for the first time (each is a new InfluxDB series)",
            value=m.new_devices.total,
        )
        yield GaugeMetricFamily(
            "streetwatch_new_devices_per_minute",
            "New unregistered device ids in the last minute",
            value=m.new_devices.per_minute(),
        )
        yield CounterMetricFamily(
            "streetwatch_writer_restarts",
            "Times the store writer died of an unforeseen error and was restarted",
            value=m.writer_restarts,
        )
