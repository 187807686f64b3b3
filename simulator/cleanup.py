"""`simulate --cleanup`: clear the retained statuses a run left on the broker.

A run publishes each device's `{"online": …}` retained, as a device's last will would be; after a
test or a demo those linger and tell the next subscriber about devices that no longer exist. An
empty retained message removes a retained message (MQTT 3.1.1 §3.3.1.3), and the service ignores
an empty status payload (contract §1).
"""

from __future__ import annotations

from collections.abc import Iterable

from simulator.publish import BrokerOptions, MqttSink, play
from simulator.stream import Message


async def clear_retained_statuses(options: BrokerOptions, topics: Iterable[str]) -> int:
    """Publish an empty retained message on each topic (QoS 1, acks awaited); the count sent."""
    messages = [Message(0, topic, b"", retain=True) for topic in dict.fromkeys(topics)]
    sink = MqttSink(options)
    await sink.open()
    stats = await play(messages, sink, speed=float("inf"))
    return stats.acked
