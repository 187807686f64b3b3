"""Compare the load's ledger with what InfluxDB holds: lost, doubled, invented, per identity."""

from __future__ import annotations

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
    """Fetch every load point (chunked by device) and match each to its identity k.

    Reading k is (device k % devices, ts t0 + k // devices), so a point maps back to exactly one
    k; counts per k live in a bytearray (millions of readings in a few MB)."""
    generated = len(acked_map)
    seen = bytearray(generated)
    invented = doubled = 0
    for d0 in range(0, ledger.devices, 50):
        names = "|".join(f"F{d:04d}" for d in range(d0, min(d0 + 50, ledger.devices)))
        # GROUP BY *: a point written twice under different tag sets shows as two rows.
        for series in influx.query(
            f'SELECT "on" FROM "lamp" WHERE "device" =~ /^({names})$/ GROUP BY *'
        ):
            device = int(series["tags"]["device"][1:])
            for row in series["values"]:
                k = (int(row[0]) - ledger.t0_ms) * ledger.devices + device
                if not 0 <= k < generated:
                    invented += 1
                elif seen[k]:
                    doubled += 1
                else:
                    seen[k] = 1
    published = sum(acked_map)
    lost = sum(1 for k in range(generated) if acked_map[k] and not seen[k])
    return Verdict(
        published=published, stored=sum(seen), lost=lost, doubled=doubled, invented=invented
    )
