"""The InfluxDB 2.x reader at the HTTP boundary (no 2.x server here: Debian ships 1.6): the request
influxdb-client sends (path, org, token, Flux with escaped names) and how its answer is read."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import orjson
import pytest

from figures.errors import StoreReadError
from figures.readers import InfluxV2Reader
from streetwatch.config import InfluxConfig

CSV = """#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string,string
#group,false,false,true,true,false,false,true,true,true
#default,_result,,,,,,,,
,result,table,_start,_stop,_time,_value,_field,_measurement,device
,,0,2026-11-25T00:00:00Z,2026-11-26T00:00:00Z,2026-11-25T14:00:00Z,140,power,lamp,L"1
,,0,2026-11-25T00:00:00Z,2026-11-26T00:00:00Z,2026-11-25T14:05:00Z,0,power,lamp,L"1

#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,boolean,string,string,string
#group,false,false,true,true,false,false,true,true,true
#default,_result,,,,,,,,
,result,table,_start,_stop,_time,_value,_field,_measurement,device
,,1,2026-11-25T00:00:00Z,2026-11-26T00:00:00Z,2026-11-25T14:00:00Z,true,on,lamp,L"1
,,1,2026-11-25T00:00:00Z,2026-11-26T00:00:00Z,2026-11-25T14:05:00Z,false,on,lamp,L"1

"""


class _Influx2(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []
    status: ClassVar[int] = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Influx2.seen.append(
            {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
        )
        self.send_response(self.status)
        if self.status == 200:
            self.send_header("Content-Type", "text/csv; charset=utf-8")
            data = CSV.encode()
        else:
            self.send_header("Content-Type", "application/json")
            data = b'{"code":"unauthorized","message":"unauthorized access"}'
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Influx2)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _Influx2.seen.clear()
    _Influx2.status = 200
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


async def test_points_from_flux(server: str) -> None:
    reader = InfluxV2Reader(
        InfluxConfig(url=server, api="v2", org="城管", bucket="sw", token="tok")
    )
    try:
        got = await reader.points(
            "lamp", ("on", "power"), 1795564800000, 1795651200000, device='L"1'
        )
    finally:
        await reader.aclose()
    t0 = 1795615200000
    assert got == {
        'L"1': [(t0, {"power": 140.0, "on": True}), (t0 + 300_000, {"power": 0.0, "on": False})]
    }
    (req,) = _Influx2.seen
    assert req["path"].startswith("/api/v2/query") and "org=%E5%9F%8E%E7%AE%A1" in req["path"]
    assert req["auth"] == "Token tok"
    flux = orjson.loads(req["body"])["query"]
    assert 'from(bucket: "sw")' in flux
    assert 'r.device == "L\\"1"' in flux  # a quote in a name cannot end the string
    assert 'r._field == "on" or r._field == "power"' in flux
    assert "range(start: 2026-11-25T00:00:00.000000Z, stop: 2026-11-26T00:00:00.000000Z)" in flux


async def test_a_refusal_is_a_store_read_error(server: str) -> None:
    _Influx2.status = 401
    reader = InfluxV2Reader(InfluxConfig(url=server, api="v2", org="o", bucket="sw", token="bad"))
    try:
        with pytest.raises(StoreReadError, match=r"401|unauthorized"):
            await reader.points("lamp", ("on",), 0, 1000)
    finally:
        await reader.aclose()
