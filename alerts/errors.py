"""Errors of the `alerts` package.

AlertError
├── AlertNotFound        no alert has that id (HTTP 404)
├── InvalidTransition    the action is not allowed in the alert's state (HTTP 409)
│   └── ConditionStillPresent  resolve while the rule engine still sees the condition (409)
└── AlertStoreError      the SQLite alert store cannot be opened or is not open
"""

from __future__ import annotations


class AlertError(Exception):
    """Base of every error raised by `alerts`."""


class AlertNotFound(AlertError):
    def __init__(self, alert_id: str) -> None:
        super().__init__(f"no alert with id {alert_id!r}")
        self.alert_id = alert_id


class InvalidTransition(AlertError):
    """`action` cannot be applied to an alert in `state`; the message says what would be allowed."""

    def __init__(self, alert_id: str, action: str, state: str, message: str) -> None:
        super().__init__(message)
        self.alert_id = alert_id
        self.action = action
        self.state = state


class ConditionStillPresent(InvalidTransition):
    """Resolving an alert whose condition is still present needs `force` (and a note saying why)."""

    reason = "condition_still_present"


class AlertStoreError(AlertError):
    """The store's SQLite file cannot be used (or the store was used before `open()`)."""
