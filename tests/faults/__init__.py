"""The fault suite (`scripts/faults`): real Mosquitto, real InfluxDB, `streetwatch run` as a real
subprocess, a ledgered QoS 1 load, and faults injected while it flows. See docs/reliability.md."""
