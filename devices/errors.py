"""Errors of the `devices` package.

DeviceError
├── RejectedInput      a message or reading breaks the contract; carries a stable `reason`
└── RegistryError      the registry CSV cannot be used (names file and line)
"""

from __future__ import annotations


class DeviceError(Exception):
    """Base of every error raised by `devices`."""


class RejectedInput(DeviceError):
    """Input that breaks contract §1. `reason` is a short stable code used as a metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class RegistryError(DeviceError):
    """The device registry could not be loaded."""
