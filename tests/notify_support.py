"""Real receivers for crew-notice tests: apprise `json://` to a local HTTP server, `mailto://` to a
local aiosmtpd SMTP server (each on a free port, stopped by the test)."""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Callable
from typing import Any

from aiosmtpd.controller import Controller

from notify.receiver import JsonReceiver
from tests.servers import free_port

REGISTRY = """device_id,kind,road,road_class,cabinet,rated_w,point,lat,lon,report_interval_s
L-GHL-014,lamp,洸河路,main,C-GHL-1,150,,35.41234,116.58765,300
L-GHL-015,lamp,洸河路,main,C-GHL-1,150,,35.41250,116.58790,300
L-HXL-001,lamp,红星路,main,C-HXL-1,150,,35.40000,116.59000,300
WL-017,waterlevel,运河路,main,,,运河路下穿,35.42000,116.60000,60
"""


def json_receiver() -> JsonReceiver:
    return JsonReceiver(free_port())


class SmtpServer:
    """aiosmtpd on a free port; `messages` are parsed e-mails (subject, text body)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[dict[str, str]] = []
        self.cond = threading.Condition()
        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
                part = msg.get_body(preferencelist=("plain",))
                text = part.get_content() if part is not None else ""
                with outer.cond:
                    outer.messages.append({"subject": str(msg["subject"]), "body": text})
                    outer.cond.notify_all()
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def url(self, to: str = "crew@example.com") -> str:
        return f"mailto://127.0.0.1:{self.port}?from=streetwatch@example.com&to={to}&secure=no"

    def wait(self, pred: Callable[[list[dict[str, str]]], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"smtp: {len(self.messages)} messages")
                self.cond.wait(left)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def on_path(path: str) -> Callable[[dict[str, Any]], bool]:
    return lambda n: n["path"] == "/" + path
