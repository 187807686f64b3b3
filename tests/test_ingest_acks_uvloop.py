"""The socket pause and the PUBACK timing on uvloop, the loop `streetwatch run` uses."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from tests.test_ingest_acks import proxy as proxy
from tests.test_ingest_acks import (
    test_a_full_spool_on_mqtt_311_stops_reading_the_socket,
    test_bytes_held_in_memory_are_bounded_and_the_broker_keeps_the_rest,
    test_no_puback_leaves_before_the_spools_fsync_returns,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def event_loop_policy() -> asyncio.AbstractEventLoopPolicy:
    return uvloop.EventLoopPolicy()


__all__ = [
    "proxy",
    "test_a_full_spool_on_mqtt_311_stops_reading_the_socket",
    "test_bytes_held_in_memory_are_bounded_and_the_broker_keeps_the_rest",
    "test_no_puback_leaves_before_the_spools_fsync_returns",
]


async def test_these_run_on_uvloop() -> None:
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
