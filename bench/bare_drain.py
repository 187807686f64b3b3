"""The ceiling: a gmqtt client that does nothing but ack (after its async handler returns).

usage: bare_drain.py PORT N register|drain   (prints the drain time in seconds on `drain`)
"""

from __future__ import annotations

import asyncio
import sys
import time

import gmqtt
from gmqtt.mqtt.constants import MQTTv50


async def main(port: int, n: int, mode: str) -> None:
    got = 0
    first = 0.0
    done = asyncio.Event()

    async def on_message(
        client: object, topic: str, payload: bytes, qos: int, props: object
    ) -> int:
        nonlocal got, first
        if got == 0:
            first = time.perf_counter()
        got += 1
        if got >= n:
            done.set()
        return 0

    client = gmqtt.Client(
        "bench-bare",
        clean_session=False,
        optimistic_acknowledgement=False,
        session_expiry_interval=3600,
        receive_maximum=2000,
    )
    client.on_message = on_message
    start = time.perf_counter()
    await client.connect("127.0.0.1", port, version=MQTTv50)
    client.subscribe("city/jining/+/+/+", qos=1)
    if mode == "register":
        await asyncio.sleep(0.5)
        await client.disconnect()
        return
    await asyncio.wait_for(done.wait(), timeout=600)
    took = time.perf_counter() - start
    await client.disconnect()
    print(f"{took:.3f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
