"""Where points end up. One seam (`PointStore`), three implementations:

- `InfluxV1Store`: InfluxDB 1.x `/write` (database, retention policy, basic auth), gzip.
- `InfluxV2Store`: `/api/v2/write` through influxdb-client (InfluxDB 1.8+, 2.x, 3.x; org, bucket, token).
- `SqliteStore`: the embedded default, a local SQLite file with the same points.
"""

from ingest.stores.base import PointStore, classify_http_error, make_store

__all__ = ["PointStore", "classify_http_error", "make_store"]
