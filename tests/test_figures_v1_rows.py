"""The InfluxDB 1.x reader gets every row, also from a server whose `[http] max-row-limit` cuts
plain answers short (a common hardening): a cut answer read as whole made lit nights dark."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from figures.readers import InfluxV1Reader
from streetwatch.config import InfluxConfig
from tests.conftest import _need
from tests.servers import InfluxDB

pytestmark = pytest.mark.integration


class RowLimitedInfluxDB(InfluxDB):
    def write_conf(self) -> Path:
        conf = super().write_conf()
        text = conf.read_text().replace("[http]\n", "[http]\n  max-row-limit = 50\n", 1)
        conf.write_text(text)
        return conf


@pytest.fixture
def influx(tmp_path: Path) -> Iterator[RowLimitedInfluxDB]:
    _need("influxd")
    server = RowLimitedInfluxDB(tmp_path / "influxdb").start()
    yield server
    server.stop()


async def test_every_row_is_read_past_the_servers_row_limit(influx: RowLimitedInfluxDB) -> None:
    start = time.time_ns() // 1_000_000 - 3_600_000
    lines = b"".join(
        b"lamp,device=L%d on=true,power=%d %d\n" % (i % 2, i, start + i * 1000) for i in range(300)
    )
    async with httpx.AsyncClient(base_url=influx.url) as http:
        await http.post("/query", data={"q": "CREATE DATABASE streetwatch"})
        resp = await http.post(
            "/write", params={"db": "streetwatch", "precision": "ms"}, content=lines
        )
        assert resp.status_code == 204
    reader = InfluxV1Reader(InfluxConfig(url=influx.url))
    try:
        got = await reader.points("lamp", ("on", "power"), start, start + 3_600_000)
        assert {d: len(rows) for d, rows in got.items()} == {"L0": 150, "L1": 150}
        assert [ts for ts, _ in got["L0"]] == [start + i * 1000 for i in range(0, 300, 2)]
        buckets = await reader.aggregate("lamp", "power", start, start + 3_600_000, 1000)
        assert len(buckets) == 300
        last = await reader.last("lamp", ("power",), start)
        assert last["L1"] == (start + 299_000, {"power": 299.0})
    finally:
        await reader.aclose()
