"""The standard alert rule ids of contract §3: what the rule engine raises and scenarios expect."""

from __future__ import annotations

STANDARD_RULE_IDS: tuple[str, ...] = (
    "lamp_dark",
    "lamp_day_burning",
    "lamp_power_abnormal",
    "lamp_voltage_abnormal",
    "lamp_power_factor_low",
    "lamp_fault",
    "cabinet_outage",
    "device_offline",
    "water_level",
    "water_rising_fast",
    "sensor_stuck",
    "battery_low",
)
