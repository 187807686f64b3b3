"""Errors of the `rules` package.

RuleError
└── RuleStateError     the saved rule state cannot be read or written (names the file)

Bad rule configuration is reported by pydantic validation of `RulesConfig` (streetwatch.config turns
it into a ConfigError naming the key); the engine itself never raises on a reading.
"""

from __future__ import annotations


class RuleError(Exception):
    """Base of every error raised by `rules`."""


class RuleStateError(RuleError):
    """The rule state file could not be used."""
