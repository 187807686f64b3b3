"""What the figures package raises.

FiguresError
├── BadQuery        a request the figures cannot answer as asked (HTTP 422)
│   └── UnknownDevice   a device the registry does not know (HTTP 404)
└── StoreReadError  the point store did not answer (HTTP 503)
"""

from __future__ import annotations


class FiguresError(Exception):
    """Base class."""


class BadQuery(FiguresError):
    """The question is malformed: unknown device or field, bad date, `from` after `to`."""


class UnknownDevice(BadQuery):
    """The question names a device the registry does not know."""


class StoreReadError(FiguresError):
    """The point store could not be read (down, wrong credentials, bad answer)."""
