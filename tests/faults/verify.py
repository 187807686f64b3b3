"""Compare the load's ledger with what InfluxDB holds: lost, doubled, invented, per identity."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from tests.faults.load import Ledger
from tests.servers import InfluxDB


@dataclass
class Verdict:
    published: int  # readings the broker acknowledged (a reading never acked may or may not land)
    stored: int  # distinct (device, ts) identities in InfluxDB
    lost: int  # published, not stored
    doubled: int  # identities stored more than once (in more than one series)
    invented: int  # stored, never generated

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.doubled == 0 and self.invented == 0


def verify(influx: InfluxDB, ledger: Ledger, acked_map: bytearray) -> Verdict:
    """Fetch every load point (chunked by device) and match each to its identity."""
    seen: Counter[tuple[int, int]] = Counter()
    for d0 in range(0, ledger.devices, 50):
        names = "|".join(f"F{d:04d}" for d in range(d0, min(d0 + 50, ledger.devices)))
        # GROUP BY *: a point written twice under different tag sets shows as two rows.
        for series in influx.query(
            f'SELECT "on" FROM "lamp" WHERE "device" =~ /^({names})$/ GROUP BY *'
        ):
            device = int(series["tags"]["device"][1:])
            for row in series["values"]:
                seen[(device, int(row[0]))] += 1
    generated = {(k % ledger.devices, ledger.ts(k)) for k in range(len(acked_map))}
    published = {(k % ledger.devices, ledger.ts(k)) for k, a in enumerate(acked_map) if a}
    stored = set(seen)
    return Verdict(
        published=len(published),
        stored=len(stored & generated),
        lost=len(published - stored),
        doubled=sum(c - 1 for c in seen.values() if c > 1),
        invented=len(stored - generated),
    )
