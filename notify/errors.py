"""Errors of crew notices.

NotifyError
├── NotifyConfigError   a crew or URL in `notify` is wrong (raised at start, names the key)
└── LinkRefused         a one-tap ack link is not valid (altered, expired, wrong alert or crew)
"""

from __future__ import annotations


class NotifyError(Exception):
    """Base of this package's errors."""


class NotifyConfigError(NotifyError):
    """A `notify` key is wrong; the message names it."""


class LinkRefused(NotifyError):
    """A one-tap link that must not act. `reason` is `bad` (altered, other alert or crew),
    `expired`, or `off` (no link secret configured)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
