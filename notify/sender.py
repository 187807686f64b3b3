"""Sending one message down one apprise URL (DingTalk, WeCom, Feishu, e-mail, a JSON webhook …).

apprise is synchronous, so a send runs in a worker thread: a slow receiver never blocks the loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger("streetwatch.notify")
# apprise logs every send at INFO; our own counters and failure logs say what a person needs.
logging.getLogger("apprise").setLevel(logging.WARNING)


class Sender(Protocol):
    async def send(self, url: str, title: str, body: str) -> str | None:
        """None when the receiver took it; otherwise why not (one line)."""


def valid_url(url: str) -> bool:
    import apprise  # ~70 ms: only when a URL is configured

    return apprise.Apprise.instantiate(url, suppress_exceptions=True) is not None


DEFAULT_MESSAGE_BYTES = 32768


def message_bytes(url: str) -> int:
    """How many UTF-8 bytes of title and body one message down `url` may carry: the service's own
    limit as apprise knows it (a WeCom bot 2048, DingTalk and Feishu about 20000, others 32768).
    Counted in bytes, not characters (a WeCom bot counts bytes, and a Chinese character is three),
    so a digest sized to it is never refused, or cut, for its length."""
    import apprise

    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    limit = getattr(plugin, "body_maxlen", 0) if plugin is not None else 0
    return int(limit) if isinstance(limit, int) and limit > 0 else DEFAULT_MESSAGE_BYTES


def send_now(url: str, title: str, body: str) -> str | None:
    """Blocking send (for the CLI and the worker thread)."""
    import apprise

    target = apprise.Apprise()
    if not target.add(url):
        return "not a valid apprise URL"
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        try:
            ok = target.notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT)
        except Exception as exc:  # a plugin's bug must not kill the worker
            return f"{type(exc).__name__}: {exc}"
        text = captured.getvalue().strip().splitlines()
    if ok:
        return None
    return (text[-1] if text else "the receiver did not take it")[:300]


class AppriseSender:
    async def send(self, url: str, title: str, body: str) -> str | None:
        return await asyncio.to_thread(send_now, url, title, body)
