"""Errors of the `streetwatch` application package.

StreetwatchError
└── ConfigError        config.yaml or an environment override is unusable; names the key
"""

from __future__ import annotations


class StreetwatchError(Exception):
    """Base of the application's errors."""


class ConfigError(StreetwatchError):
    """A bad config key or value; the message names the key (e.g. `mqtt.port`)."""
