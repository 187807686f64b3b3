"""Warnings about how the service speaks to its broker (printed by `check-config`, logged by `run`).

Anyone who can reach a broker that takes anonymous clients can publish a fake 50 cm flood or a fake
alert; a password sent without TLS can be read off the network. On the same host (loopback) plain
MQTT is fine. Host names other than `localhost` are not resolved: they count as another host.
"""

from __future__ import annotations

import ipaddress

from streetwatch.config import Settings


def is_loopback(host: str) -> bool:
    if host.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def broker_warnings(settings: Settings) -> list[str]:
    mqtt = settings.mqtt
    if is_loopback(mqtt.host):
        return []
    where = f"{mqtt.host}:{mqtt.port}"
    out = []
    if not mqtt.username:
        out.append(
            f"mqtt: connects anonymously to the broker at {where}, which is not on this host: "
            "set mqtt.username and mqtt.password, and have the broker refuse anonymous clients "
            "(deploy/mosquitto.conf) — otherwise anyone on the network can publish fake "
            "readings and fake alerts"
        )
    if not mqtt.tls.enabled:
        out.append(
            f"mqtt: connects without TLS to the broker at {where}, which is not on this host: "
            "readings and the password cross the network in clear text; set mqtt.tls.enabled "
            "(and mqtt.tls.ca_file)"
        )
    elif mqtt.tls.insecure:
        out.append(
            f"mqtt: mqtt.tls.insecure is true: the certificate of {where} is not checked, so "
            "anyone in the path can pose as the broker"
        )
    return out
