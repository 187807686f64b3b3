"""Every place the ingest reaches into gmqtt's private parts, in one module, checked at start.

Why reach in at all: gmqtt's public manual-ack path (`optimistic_acknowledgement=False`, an async
`on_message`) runs one asyncio task and writes one PUBACK packet per message, which cost more than
everything else the ingest does, and on MQTT 3.1.1 gmqtt acks *before* `on_message` runs. The
receiver therefore takes over gmqtt's QoS 1 hook, writes PUBACKs itself after the spool's fsync,
and pauses the socket when it must stop taking messages (docs/decisions/ingest-acks-spool.md).

Why it is safe: pyproject pins the gmqtt range this is written for, and `self_test()` runs gmqtt's
real packet path (protocol → connection → handler) against an in-memory transport before the
service connects. If a QoS 1 PUBLISH does not reach our hook, or gmqtt writes anything (a PUBACK)
on its own, or an attribute used below is gone, the service refuses to start: a gmqtt that acks
before the fsync could lose readings the broker believes delivered.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable
from typing import Any

import gmqtt
from gmqtt.mqtt.connection import MQTTConnection
from gmqtt.mqtt.constants import MQTTCommands, MQTTv50, MQTTv311
from gmqtt.mqtt.package import CommandWithMidPacket
from gmqtt.mqtt.protocol import MQTTProtocol
from gmqtt.mqtt.utils import ConnectionState

from ingest.errors import MqttSeamError

# Keep in step with the `gmqtt` pin in pyproject.toml.
SUPPORTED = ">=0.8,<0.9"

# (packet id, topic, payload)
OnPublish = Callable[[int, Any, bytes, Any], None]


def install(client: gmqtt.Client, on_qos1: OnPublish) -> None:
    """Route every QoS 1 PUBLISH to `on_qos1(mid, payload, topic, properties)`; gmqtt acks none."""
    client._package_handler._handle_qos_1_publish_packet = on_qos1


def connection(client: gmqtt.Client | None) -> Any:
    """The client's current connection object (None before the first connect)."""
    return None if client is None else client._connection


def is_open(conn: Any) -> bool:
    return conn is not None and not conn.is_closing()


def write(conn: Any, data: bytes) -> None:
    conn._protocol.write_data(data)


def puback(mid: int, proto_ver: int) -> bytes:
    return CommandWithMidPacket.build_package(MQTTCommands.PUBACK, mid, False, 0, proto_ver)


def pause_reading(conn: Any) -> None:
    """Stop reading the socket: TCP flow control makes the broker keep the rest."""
    transport = conn._transport
    if not transport.is_closing() and transport.is_reading():
        transport.pause_reading()


def resume_reading(conn: Any) -> None:
    transport = conn._transport
    if not transport.is_closing() and not transport.is_reading():
        transport.resume_reading()


def touch(conn: Any) -> None:
    """Tell gmqtt's keepalive the link is alive while we deliberately read nothing.

    Our PINGREQs still go out; a dead link shows up as a write error (TCP retransmission timeout)."""
    conn._last_data_in = time.monotonic()


# ---- the start-up check ------------------------------------------------------------------------


class _MemoryTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.reading = True
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def is_reading(self) -> bool:
        return self.reading

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def _publish_packet(topic: bytes, payload: bytes, mid: int | None, proto_ver: int) -> bytes:
    qos = 0 if mid is None else 1
    body = struct.pack("!H", len(topic)) + topic
    if mid is not None:
        body += struct.pack("!H", mid)
    if proto_ver == MQTTv50:
        body += b"\x00"  # no properties
    body += payload
    assert len(body) < 128  # one-byte remaining length is enough for the probe
    return bytes([0x30 | (qos << 1), len(body)]) + body


async def self_test() -> None:
    """Run gmqtt's real receive path in memory; raise MqttSeamError if our seam is not in place."""
    version = getattr(gmqtt, "__version__", "?")
    try:
        for proto_ver in (MQTTv50, MQTTv311):
            await _probe(proto_ver)
    except MqttSeamError as exc:
        raise MqttSeamError(
            f"gmqtt {version} does not behave as the ingest's ack hook needs (written for gmqtt "
            f"{SUPPORTED}): {exc}. Install a gmqtt in that range (pip install 'gmqtt{SUPPORTED}'); "
            "starting anyway could acknowledge readings before they are safely on disk."
        ) from exc
    except Exception as exc:  # an attribute or signature that changed
        raise MqttSeamError(
            f"gmqtt {version} is not a version the ingest's ack hook is written for "
            f"(gmqtt {SUPPORTED}): {exc!r}. Install a gmqtt in that range "
            f"(pip install 'gmqtt{SUPPORTED}')."
        ) from exc


async def _probe(proto_ver: int) -> None:
    got: list[tuple[int, Any, bytes]] = []
    qos0: list[bytes] = []
    wrong: list[int] = []
    client = gmqtt.Client("streetwatch-seam-probe", optimistic_acknowledgement=False)

    def on_message(_client: Any, topic: Any, payload: bytes, qos: int, props: Any) -> int:
        if qos == 0:
            qos0.append(payload)
        else:
            wrong.append(qos)
        return 0

    client.on_message = on_message
    install(client, lambda mid, payload, topic, props: got.append((mid, topic, payload)))
    state: ConnectionState = client._connection_state
    state.protocol_version = proto_ver
    handler = client._package_handler
    transport = _MemoryTransport()
    protocol = MQTTProtocol(connection_state=state, id_generator=handler.id_generator)
    protocol.connection_made(transport)
    conn = MQTTConnection(transport, protocol, False, 0, package_handler=handler)
    client._connection = conn
    try:
        protocol.data_received(
            _publish_packet(b"probe/1", b"one", 7, proto_ver)
            + _publish_packet(b"probe/0", b"zero", None, proto_ver)
        )
        for _ in range(20):
            if got and qos0:
                break
            await asyncio.sleep(0)
        if wrong:
            raise MqttSeamError(
                f"gmqtt handed a QoS {wrong[0]} message to on_message, not the hook"
            )
        if got != [(7, "probe/1", b"one")]:
            raise MqttSeamError(f"a QoS 1 PUBLISH did not reach the hook (got {got!r})")
        if qos0 != [b"zero"]:
            raise MqttSeamError(f"a QoS 0 PUBLISH did not reach on_message (got {qos0!r})")
        if transport.written:
            raise MqttSeamError(f"gmqtt wrote {transport.written!r} by itself (an early PUBACK?)")
        if connection(client) is not conn or not is_open(conn):
            raise MqttSeamError("the client's connection is not where the receiver looks")
        pause_reading(conn)
        if transport.reading:
            raise MqttSeamError("pausing the socket did not reach the transport")
        resume_reading(conn)
        touch(conn)
        write(conn, puback(7, proto_ver))
        if transport.written != [puback(7, proto_ver)]:
            raise MqttSeamError("a PUBACK written through the connection did not reach the socket")
    finally:
        transport.closed = True
        future = protocol._read_loop_future
        if future is not None:
            future.cancel()
        callback = conn._keep_connection_callback
        if callback is not None:
            callback.cancel()


__all__ = [
    "SUPPORTED",
    "MQTTv50",
    "MQTTv311",
    "connection",
    "install",
    "is_open",
    "pause_reading",
    "puback",
    "resume_reading",
    "self_test",
    "touch",
    "write",
]
