"""The fault suite's verdict can fail: a missing, a doubled and an invented point are each seen."""

from __future__ import annotations

import urllib.request

import pytest

from tests.faults.load import Ledger
from tests.faults.verify import verify
from tests.servers import InfluxDB

pytestmark = pytest.mark.integration


def test_verdict_counts_lost_doubled_and_invented(influxdb: InfluxDB) -> None:
    influxdb.create_database()
    ledger = Ledger(devices=3, t0_ms=1_790_000_000_000, prefix="city/jining")
    acked = bytearray([1] * 12)  # readings 0..11, all acknowledged by the broker
    lines = []
    for k in range(12):
        if k == 5:
            continue  # lost
        lines.append(f"lamp,device={ledger.device(k)} on=true {ledger.ts(k)}")
    # Reading 7 again under another tag set (doubled); a point nobody published (invented).
    lines.append(f"lamp,device={ledger.device(7)},road=X on=true {ledger.ts(7)}")
    lines.append(f"lamp,device=F0001 on=true {ledger.t0_ms + 1000}")
    req = urllib.request.Request(
        f"{influxdb.url}/write?db={influxdb.database}&precision=ms",
        data="\n".join(lines).encode(),
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 204
    v = verify(influxdb, ledger, acked)
    assert (v.published, v.stored, v.lost, v.doubled, v.invented) == (12, 11, 1, 1, 1)
    assert not v.ok
