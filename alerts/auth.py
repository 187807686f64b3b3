"""Who is asking: named bearer tokens for people and systems.

`http.tokens: {name: token}` gives each desk, crew or system its own credential; the older single
`http.token` keeps working under the name `operator`. The name of the credential that matched is
the `who` of the audit trail, so a body cannot claim to be somebody else (a `who` in the body is kept
only as a display note beside it).

Tokens are compared in constant time: both sides are hashed first (so lengths do not show), and
every configured token is compared whatever the outcome of the others. A token is never logged, and
`repr(Credentials)` shows only the names.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping

LEGACY_NAME = "operator"  # who a request authenticated by http.token is


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None."""
    scheme, _, given = (authorization or "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return None
    return given


class Credentials:
    """The configured tokens, by name.

    Args:
        tokens: http.tokens, name → token.
        legacy: http.token, accepted as `operator`.
    """

    def __init__(self, tokens: Mapping[str, str] | None = None, legacy: str | None = None) -> None:
        pairs: list[tuple[str, bytes]] = []
        for name, token in (tokens or {}).items():
            if token:  # an empty token must never match an empty header
                pairs.append((name, _digest(token)))
        if legacy:
            pairs.append((LEGACY_NAME, _digest(legacy)))
        self._pairs = pairs

    @property
    def configured(self) -> bool:
        """Whether any credential could succeed (none: the actions are switched off)."""
        return bool(self._pairs)

    @property
    def names(self) -> list[str]:
        return sorted({name for name, _ in self._pairs})

    def identify(self, token: str | None) -> str | None:
        """The name of the credential `token` is, or None. Constant time over all credentials."""
        given = _digest(token or "")
        found: str | None = None
        for name, digest in self._pairs:
            if secrets.compare_digest(given, digest) and found is None and token:
                found = name
        return found

    def __repr__(self) -> str:
        return f"Credentials(names={self.names!r})"


__all__ = ["LEGACY_NAME", "Credentials", "bearer"]
