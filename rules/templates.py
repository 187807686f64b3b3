"""A rule's `message` template: how it is rendered, and the check it passes at start.

`{value}` is a number that prints like `%g` by default (`45`, `12.5`) and takes any float format
spec (`{value:.1f}`); when a reading has no value it is an empty string, so a numeric spec cannot
render it: the rule then uses its standard text (never losing the alert).
"""

from __future__ import annotations

import string
from collections.abc import Mapping

# Placeholders a rule's `message` template may use.
MESSAGE_FIELDS = frozenset(
    {"rule", "device", "kind", "road", "value", "level", "field", "point", "cabinet", "unit"}
)
SAMPLE: dict[str, object] = {
    "rule": "water_level",
    "device": "WL-017",
    "kind": "waterlevel",
    "road": "运河路",
    "level": 2,
    "field": "depth_cm",
    "point": "运河路下穿",
    "cabinet": "C1",
    "unit": "cm",
}


class Number(float):
    def __format__(self, spec: str) -> str:
        return format(float(self), spec or "g")


def render_template(template: str, fields: Mapping[str, object]) -> str:
    return template.format(**fields)


def check_template(template: str) -> None:
    """ValueError naming the problem if the template cannot render a normal alert (with a value)."""
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None and name not in MESSAGE_FIELDS:
            raise ValueError(f"unknown placeholder {{{name}}}; use {sorted(MESSAGE_FIELDS)}")
    try:
        render_template(template, {**SAMPLE, "value": Number(45.0)})
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"cannot be rendered: {exc}") from None
