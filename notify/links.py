"""One-tap ack links: `{base_url}/a/{alert_id}?c={crew}&t={expiry}.{signature}`.

The signature is an HMAC-SHA256 (key `notify.link_secret`) over the alert id, the crew and the expiry,
so a link acts only for that alert, that crew, until that time: changing any of them (or the
signature) makes it invalid. Compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote

from notify.errors import LinkRefused


def _mac(secret: str, alert_id: str, crew: str, expires: int) -> str:
    msg = f"{alert_id}\n{crew}\n{expires}".encode()
    digest = hmac.new(secret.encode(), msg, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(secret: str, alert_id: str, crew: str, expires_s: int) -> str:
    """The `t` parameter: expiry (Unix seconds) and signature."""
    return f"{expires_s}.{_mac(secret, alert_id, crew, expires_s)}"


def link(base_url: str, secret: str, alert_id: str, crew: str, expires_s: int) -> str:
    token = sign(secret, alert_id, crew, expires_s)
    return f"{base_url.rstrip('/')}/a/{quote(alert_id)}?c={quote(crew)}&t={quote(token)}"


def verify(secret: str | None, alert_id: str, crew: str, token: str, now_s: float) -> None:
    """Return if the link may act now; LinkRefused('off' | 'bad' | 'expired') if not.

    The signature is checked before the expiry, so an altered expiry reads as altered."""
    if not secret:
        raise LinkRefused("off")
    expiry_text, _, mac = token.partition(".")
    # ASCII digits only: str.isdigit() also takes "²" or "１", which int() refuses or reads.
    if not (expiry_text.isascii() and expiry_text.isdigit()) or len(expiry_text) > 12 or not mac:
        raise LinkRefused("bad")
    expires = int(expiry_text)
    if not hmac.compare_digest(mac.encode(), _mac(secret, alert_id, crew, expires).encode()):
        raise LinkRefused("bad")
    if now_s > expires:
        raise LinkRefused("expired")
