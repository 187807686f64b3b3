"""What /healthz says about the ingest: nothing stalls without saying so.

`reasons` make the status `degraded` (the store refuses or the writer died, the spool is full or
cannot write, the oldest reading not yet in the store is too old); `warnings` do not (a burst of
new device ids is worth a look, but every reading is still stored).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ingest.pipeline import Pipeline
    from ingest.receiver import MqttReceiver
    from ingest.spool import Spool
    from ingest.writer import Writer
    from streetwatch.config import Settings


class _Parts:
    spool: Spool
    writer: Writer
    pipeline: Pipeline
    receiver: MqttReceiver


def ingest_health(parts: Any, settings: Settings) -> dict[str, Any]:
    p: _Parts = parts
    spool, writer = p.spool, p.writer
    reasons: list[str] = []
    warnings: list[str] = []
    if writer.reason:
        reasons.append(writer.reason)
    elif writer.failing:
        reasons.append("store write failed; data kept, retrying")
    if spool.error:
        reasons.append(f"{spool.error} (acks held, retrying)")
    held = p.receiver.acks_held
    if held:
        reasons.append(f"{held} messages not acknowledged: the spool refused their write; retrying")
    if spool.full:
        reasons.append(
            f"spool full ({spool.pending_bytes} bytes): acks held, the broker keeps the rest"
        )
    lag = spool.oldest_age_s()
    if lag > settings.storage.stuck_after_s:
        reasons.append(
            f"writer stuck: the oldest reading not yet in the store was spooled {lag:.0f} s ago "
            f"(storage.stuck_after_s {settings.storage.stuck_after_s:g})"
        )
    new_per_min = p.pipeline.new_devices.per_minute()
    limit = settings.ingest.new_devices_warn_per_minute
    if new_per_min > limit:
        warnings.append(
            f"{new_per_min} new unregistered device ids in a minute (more than {limit}): each "
            "is a new InfluxDB series; check the gateways or the registry"
        )
    if spool.bad_frames:
        warnings.append(
            f"{spool.bad_frames} damaged spool frames skipped ({spool.skipped_bytes} bytes)"
        )
    return {
        "reasons": reasons,
        "warnings": warnings,
        "oldest_unwritten_s": round(lag, 1),
        "writer_restarts": writer.metrics.writer_restarts,
        "socket_paused": p.receiver.paused,
        "acks_held": held,
        "new_devices_per_minute": new_per_min,
    }
