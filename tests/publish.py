"""A plain paho publisher for tests: QoS 1, waits for every PUBACK."""

from __future__ import annotations

import orjson
import paho.mqtt.client as mqtt


class Publisher:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.connect(host, port)
        self.client.loop_start()

    def send(
        self, topic: str, payload: bytes | str | dict | list, qos: int = 1, retain: bool = False
    ) -> None:  # type: ignore[type-arg]
        if isinstance(payload, dict | list):
            payload = orjson.dumps(payload)
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
