"""Errors of the `simulator` package.

SimulatorError
├── OptionError        a command-line value cannot be understood (names the option)
├── FleetError         the fleet cannot be built or loaded (registry CSV, counts)
├── FaultSpecError     a fault (CLI `--fault` or scenario) names an unknown kind, device or time
├── ScenarioError      a scenario file is missing or invalid (names the file and key)
├── RecordingError     a JSONL recording cannot be read (names the file and line)
├── PublishError       the broker refused us or went away for good
└── CheckError         the service's alert API could not be asked
"""

from __future__ import annotations


class SimulatorError(Exception):
    """Base of every error raised by `simulator`."""


class OptionError(SimulatorError):
    """A command-line value is not valid."""


class FleetError(SimulatorError):
    """The fleet cannot be built or loaded."""


class FaultSpecError(SimulatorError):
    """A fault specification is not valid."""


class ScenarioError(SimulatorError):
    """A scenario file is not valid."""


class RecordingError(SimulatorError):
    """A recording (JSONL) cannot be read."""


class PublishError(SimulatorError):
    """Publishing to the broker failed."""


class CheckError(SimulatorError):
    """The service's alert API could not be queried."""
