"""The shipped broker configs: production refuses strangers; dev keeps production's queue sizing."""

from __future__ import annotations

from tests.servers import REPO

SIZING = (
    "max_queued_messages",
    "max_queued_bytes",
    "max_inflight_messages",
    "max_inflight_bytes",
    "persistent_client_expiration",
    "max_packet_size",
    "persistence",
    "autosave_interval",
    "autosave_on_changes",
)


def settings(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (REPO / "deploy" / name).read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            out.setdefault(words[0], []).append(" ".join(words[1:]))
    return out


def test_dev_config_keeps_the_production_queue_and_persistence_settings() -> None:
    prod, dev = settings("mosquitto.conf"), settings("mosquitto-dev.conf")
    for key in SIZING:
        assert dev.get(key) == prod.get(key), key
    # Mosquitto's default of 1000 queued messages drops readings during any real outage.
    assert prod["max_queued_messages"] == ["0"]
    assert int(prod["autosave_interval"][0]) <= 10


def test_production_config_refuses_anonymous_and_speaks_tls_off_the_host() -> None:
    prod = settings("mosquitto.conf")
    assert prod["allow_anonymous"] == ["false"]
    assert prod["password_file"] and prod["acl_file"]
    for listener in prod["listener"]:
        port, *bind = listener.split()
        assert bind == ["127.0.0.1"] or port == "8883", f"plain listener off loopback: {listener}"
    assert prod["certfile"] and prod["keyfile"]
    dev = settings("mosquitto-dev.conf")
    assert all(listener.endswith("127.0.0.1") for listener in dev["listener"])
