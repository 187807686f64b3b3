"""Device simulator: a city's lamps and waterlogging points over MQTT, for tests, load and demos.

Speaks only MQTT and the `devices/` models; nothing in production imports it.

    fleet.py     the devices: a registry CSV, or generated over Jining's roads and cabinets
    lamp.py      a lamp controller: sun schedule, dimming, power, voltage sag, energy
    water.py     a waterlogging point: runoff lag, drainage, recession; battery, rssi
    storm.py     the Chicago design-storm hyetograph
    faults.py    what goes wrong, to whom, when (CLI and scenario syntax, every parameter checked)
    malformed.py a broken message for each ingest rejection reason
    stream.py    all of it as one deterministic, ordered message stream (and its JSONL form)
    publish.py   to a broker (aiomqtt, QoS 1, acks counted) or a JSONL file, paced by --speed
    record.py    capture live traffic; replay.py publishes it again (optionally shifted to now)
    cleanup.py   clear the retained statuses a run left on the broker
    scenario.py  YAML scenarios and the alerts they expect; check.py asks the service's API
    wire.py      a bare MQTT 3.1.1 QoS 1 publisher; load.py the --rate load mode on it
    demo.py      the `streetwatch demo` fleet; cli.py `streetwatch simulate` and `record`
"""

from simulator.demo import run_demo_fleet, write_demo_registry
from simulator.errors import (
    CheckError,
    FaultSpecError,
    FleetError,
    OptionError,
    PublishError,
    RecordingError,
    ScenarioError,
    SimulatorError,
)
from simulator.fleet import Fleet, generate_fleet, load_fleet, write_registry
from simulator.stream import Message, RunPlan, generate

__all__ = [
    "CheckError",
    "FaultSpecError",
    "Fleet",
    "FleetError",
    "Message",
    "OptionError",
    "PublishError",
    "RecordingError",
    "RunPlan",
    "ScenarioError",
    "SimulatorError",
    "generate",
    "generate_fleet",
    "load_fleet",
    "run_demo_fleet",
    "write_demo_registry",
    "write_registry",
]
