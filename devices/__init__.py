"""The floor of streetwatch: device kinds, reading models, topics and the registry.

Imports nothing else of streetwatch; everything else stands on it.
"""

from devices.errors import DeviceError, RegistryError, RejectedInput
from devices.kinds import CHANNELS, EVENT_MEASUREMENT, KINDS, KindSpec
from devices.messages import Observation
from devices.models import (
    STANDARD_EVENTS,
    DeviceEvent,
    DeviceStatus,
    LampReading,
    Reading,
    WaterLevelReading,
)
from devices.registry import Device, Registry, load_registry
from devices.topics import TopicParser, TopicParts, alert_topic, device_topic, subscription

__all__ = [
    "CHANNELS",
    "EVENT_MEASUREMENT",
    "KINDS",
    "STANDARD_EVENTS",
    "Device",
    "DeviceError",
    "DeviceEvent",
    "DeviceStatus",
    "KindSpec",
    "LampReading",
    "Observation",
    "Reading",
    "Registry",
    "RegistryError",
    "RejectedInput",
    "TopicParser",
    "TopicParts",
    "WaterLevelReading",
    "alert_topic",
    "device_topic",
    "load_registry",
    "subscription",
]
