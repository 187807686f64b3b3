"""The fault scenarios and the run that strings them together under one continuous load.

One run: a private Mosquitto and influxd, `streetwatch run` as a subprocess, the ledgered load at
`rate` msg/s for the whole run, and these faults one after another (each a `Scenario` with its own
verdict): kill -9 at random moments, InfluxDB stopped, the spool's limit reached, the broker
restarted with queued messages, the broker gone, the spool's disk full, SIGTERM under load with
the v1 and the v2 store. At the end the load stops, the service drains, and every reading the
broker acknowledged is looked up in InfluxDB by its identity (device, ts): lost, doubled, invented.

A scenario that fails is recorded with the reason and the run goes on (the service is restarted
if it has to be), so one defect does not hide the others.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import subprocess
import time
import traceback
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.faults.cluster import Cluster, wait_until
from tests.faults.hang import HangingServer
from tests.faults.load import LedgerLoad, LoadStats
from tests.faults.verify import Verdict, verify
from tests.publish import Publisher

SPOOL_LIMIT = 2 * 1024 * 1024  # the spool-limit scenario's: about 10 s of load


@dataclass
class Mode:
    name: str
    rate: float = 2000.0
    kills: int = 3
    influx_outage_s: float = 20.0
    broker_gone_s: float = 15.0
    queued_at_broker_s: float = 5.0
    # The run's spool limit: the InfluxDB outage must fit (~95 bytes a reading at `rate`).
    spool_max_mib: int = 8
    seed: int | None = None


SHORT = Mode("short")
LONG = Mode(
    "long",
    kills=20,
    influx_outage_s=180.0,
    broker_gone_s=120.0,
    queued_at_broker_s=30.0,
    spool_max_mib=64,
)


class ScenarioFailed(AssertionError):
    pass


def check(cond: bool, message: str) -> None:
    if not cond:
        raise ScenarioFailed(message)


@dataclass
class Scenario:
    name: str
    ok: bool = False
    error: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class RunResult:
    mode: str
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    verdict: Verdict | None = None
    load: LoadStats | None = None
    kills: int = 0
    service_starts: int = 0
    seconds: float = 0.0
    workdir: str = ""

    def summary(self) -> str:
        lines = [f"fault suite ({self.mode}): {self.seconds:.0f} s, workdir {self.workdir}"]
        for s in self.scenarios.values():
            mark = "ok  " if s.ok else "FAIL"
            lines.append(f"  {mark} {s.name:<16} {s.seconds:5.1f} s  {s.figures}")
            if not s.ok:
                lines.append(f"       {s.error}")
        if self.verdict is not None and self.load is not None:
            v = self.verdict
            lines.append(
                f"  runs 1, kills {self.kills}, service starts {self.service_starts}, "
                f"generated {self.load.generated}, published {v.published}, stored {v.stored}, "
                f"lost {v.lost}, doubled {v.doubled}, invented {v.invented}, "
                f"resent after drops {self.load.resent}"
            )
        return "\n".join(lines)


class Run:
    def __init__(
        self,
        mode: Mode,
        workdir: Path,
        log: Callable[[str], None] = print,
        only: list[str] | None = None,
    ) -> None:
        self.mode = mode
        self.only = only
        self.workdir = workdir
        self.log = log
        self.rng = random.Random(mode.seed)
        self.result = RunResult(mode.name, workdir=str(workdir))
        self.cluster = Cluster(
            workdir,
            {
                "STREETWATCH_STORAGE__SPOOL_MAX_BYTES": str(mode.spool_max_mib * 1024 * 1024),
                "STREETWATCH_STORAGE__SPOOL_SEGMENT_BYTES": str(1024 * 1024),
            },
        )
        self.spool_mount: Path | None = None
        self.load: LedgerLoad | None = None
        self._water = 0

    # --- plumbing -------------------------------------------------------------------------

    @property
    def svc(self) -> Any:
        return self.cluster.svc

    def acked(self) -> int:
        assert self.load is not None
        return self.load.stats.acked

    def acks_in(self, seconds: float) -> int:
        a = self.acked()
        time.sleep(seconds)
        return self.acked() - a

    def accepted(self) -> float:
        """Readings the service took into its spool (and so acknowledged) in this life."""
        return sum(
            float(line.split()[-1])
            for line in self.svc.metrics().splitlines()
            if line.startswith("streetwatch_readings_accepted_total")
        )

    def taken_in(self, seconds: float) -> float:
        """Readings the service spooled and acknowledged within `seconds` (the broker's own
        PUBACKs to the load say nothing about the service: the broker queues for it)."""
        a = self.accepted()
        time.sleep(seconds)
        return self.accepted() - a

    def service_acks_in(self, seconds: float) -> float:
        """QoS 1 messages the service acknowledged (readings durable) within `seconds`."""
        a = self.svc.metric("streetwatch_messages_acknowledged_total")
        time.sleep(seconds)
        return self.svc.metric("streetwatch_messages_acknowledged_total") - a

    def caught_up(self, timeout: float = 120.0) -> float:
        """Seconds until the spool is back under a second or so of load (it never reaches 0
        while the load flows)."""
        t0 = time.monotonic()
        self.svc.wait_health(
            lambda h: h.get("spool_bytes", 1 << 30) < 1024 * 1024 and not h.get("spool_full"),
            timeout,
        )
        return round(time.monotonic() - t0, 1)

    def ensure_service(self) -> None:
        """After a failed scenario: a live, connected service (restarted if need be)."""
        with contextlib.suppress(Exception):
            self.svc.wait_health(lambda h: h.get("mqtt_connected") is True, timeout=20)
            return
        self.log("  service not healthy after the scenario: kill -9 and start again")
        self.svc.stop()
        self.cluster.start_service()

    def mount_spool_tmpfs(self) -> None:
        """The spool on its own small tmpfs, so the disk-full scenario can fill just that disk."""
        spool = self.cluster.data_dir / "spool"
        spool.mkdir(parents=True, exist_ok=True)
        size_mib = 2 * self.mode.spool_max_mib + 32
        try:
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(spool)],
                check=True,
                capture_output=True,
            )
            self.spool_mount = spool
        except (OSError, subprocess.CalledProcessError) as exc:
            err = getattr(exc, "stderr", b"") or b""
            self.log(f"  cannot mount a tmpfs for the spool ({exc} {err!r}): disk-full skipped")

    def umount_spool(self) -> None:
        if self.spool_mount is not None:
            subprocess.run(["umount", "-l", str(self.spool_mount)], check=False)
            self.spool_mount = None

    def scenario(self, name: str, fn: Callable[[Scenario], None]) -> Scenario:
        s = Scenario(name)
        self.log(f"-- {name}")
        t0 = time.monotonic()
        try:
            fn(s)
            s.ok = True
        except Exception as exc:  # a defect in one scenario must not hide the others
            s.error = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, ScenarioFailed | TimeoutError):
                s.error += "\n" + traceback.format_exc(limit=3)
        s.seconds = time.monotonic() - t0
        self.log(f"   {'ok' if s.ok else 'FAIL: ' + s.error} {s.figures}")
        self.result.scenarios[name] = s
        self.ensure_service()
        return s

    def raise_water_alert(self, timeout: float = 30.0) -> float:
        """Publish a 50 cm reading for a fresh waterlogging point; seconds until its alert is
        listed by the API (the rule engine and alert store, not InfluxDB, are on this path)."""
        self._water += 1
        device = f"WF-{self._water:03d}"
        pub = Publisher(self.cluster.broker.port)
        t0 = time.monotonic()
        try:
            pub.send(
                f"city/jining/waterlevel/{device}/telemetry",
                {"ts": time.time_ns() // 1_000_000, "depth_cm": 50.0},
            )
        finally:
            pub.close()
        url = f"http://127.0.0.1:{self.svc.http_port}/api/alerts?" + urllib.parse.urlencode(
            {"device": device}
        )

        def raised() -> bool:
            with urllib.request.urlopen(url, timeout=5) as r:
                return bool(orjson.loads(r.read())["items"])

        wait_until(raised, timeout, f"alert for {device}")
        return round(time.monotonic() - t0, 2)

    # --- scenarios ------------------------------------------------------------------------

    def kill9(self, s: Scenario) -> None:
        kills = 0
        for _ in range(self.mode.kills):
            # A random moment: sometimes while the restarted service is still taking the backlog
            # the broker queued for it, sometimes in the steady flow.
            time.sleep(self.rng.uniform(0.0, 4.0))
            self.svc.kill9()
            kills += 1
            self.cluster.start_service()
        self.result.kills += kills
        s.figures["kills"] = kills
        check(self.taken_in(2.0) > 0, "the service takes nothing after the last restart")

    def influx_outage(self, s: Scenario) -> None:
        self.cluster.influx.stop()
        try:
            t_end = time.monotonic() + self.mode.influx_outage_s
            a0 = self.accepted()
            alert_s = self.raise_water_alert()
            s.figures["alert_during_outage_s"] = alert_s
            while time.monotonic() < t_end:
                health = self.svc.health()
                check(not health["spool_full"], f"spool full within the outage: {health}")
                time.sleep(0.5)
            acked = self.accepted() - a0
            health = self.svc.health()
            s.figures["spooled_during_outage"] = acked
            s.figures["spool_mb"] = round(health["spool_bytes"] / 2**20, 2)
            s.figures["health"] = health["status"]
            check(
                acked > self.mode.rate * self.mode.influx_outage_s * 0.5,
                f"acks did not go on into the spool: {acked} in {self.mode.influx_outage_s} s",
            )
            check(health["status"] == "degraded", f"/healthz not degraded: {health}")
            check(health["spool_bytes"] > 0, "nothing spooled while InfluxDB was down")
        finally:
            self.cluster.influx.start()
        s.figures["caught_up_after_s"] = self.caught_up()

    def spool_limit(self, s: Scenario) -> None:
        # A smaller limit for this scenario (a restart, SIGTERM): it fills in seconds, not minutes.
        self.svc.terminate()
        self.cluster.start_service({"STREETWATCH_STORAGE__SPOOL_MAX_BYTES": str(SPOOL_LIMIT)})
        self.cluster.influx.stop()
        try:
            t0 = time.monotonic()
            self.svc.wait_health(lambda h: h.get("spool_full") is True, timeout=180)
            s.figures["full_after_s"] = round(time.monotonic() - t0, 1)
            time.sleep(1.0)  # what was in flight settles
            paused = self.taken_in(3.0)
            s.figures["taken_in_3s_while_full"] = paused
            health = self.svc.health()
            s.figures["spool_mb"] = round(health["spool_bytes"] / 2**20, 2)
            check(paused == 0, f"acks went on with the spool full: {paused} in 3 s")
            check(health["spool_bytes"] <= SPOOL_LIMIT * 1.1, f"spool past its limit: {health}")
            check(self.svc.proc.poll() is None, "the service died with a full spool")
        finally:
            self.cluster.influx.start()
        t0 = time.monotonic()
        wait_until(lambda: self.taken_in(0.5) > 0, 60, "acks resume after the spool drains")
        s.figures["resumed_after_s"] = round(time.monotonic() - t0, 1)
        s.figures["caught_up_after_s"] = self.caught_up(180)
        self.svc.terminate()
        self.cluster.start_service()  # back to the run's limit

    def broker_restart(self, s: Scenario) -> None:
        """Queue readings at the broker for the (stopped) service, restart the broker: the
        persistent session and its queue survive (Mosquitto saves them on SIGTERM). Then restart
        it again under the flow, with the service connected."""
        self.svc.terminate()
        a0 = self.acked()
        time.sleep(self.mode.queued_at_broker_s)
        s.figures["queued_at_broker"] = self.acked() - a0
        t0 = time.monotonic()
        self.cluster.broker.restart()
        self.cluster.start_service()
        wait_until(lambda: self.taken_in(0.5) > 0, 30, "the service takes readings again")
        s.figures["caught_up_after_s"] = self.caught_up()
        s.figures["back_after_s"] = round(time.monotonic() - t0, 1)
        # And once more with the service connected and readings in flight.
        self.cluster.broker.restart()
        self.svc.wait_health(lambda h: h.get("mqtt_connected") is True, timeout=60)
        wait_until(lambda: self.taken_in(0.5) > 0, 30, "the service takes readings again")
        s.figures["online_restart_caught_up_after_s"] = self.caught_up()

    def broker_gone(self, s: Scenario) -> None:
        connects0 = self.svc.metric("streetwatch_mqtt_connects_total")
        self.cluster.broker.stop()
        t0 = time.monotonic()
        wait_until(lambda: self.svc.health()["mqtt_connected"] is False, 15, "the service notices")
        time.sleep(max(0.0, self.mode.broker_gone_s - (time.monotonic() - t0)))
        check(self.svc.proc.poll() is None, "the service exited while the broker was gone")
        self.cluster.broker.start()
        t1 = time.monotonic()
        self.svc.wait_health(lambda h: h.get("mqtt_connected") is True, timeout=60)
        s.figures["service_back_after_s"] = round(time.monotonic() - t1, 1)
        wait_until(lambda: self.acks_in(0.5) > 0, 30, "the load's acks after the broker is back")
        wait_until(lambda: self.taken_in(0.5) > 0, 30, "the service takes readings again")
        s.figures["caught_up_after_s"] = self.caught_up()
        s.figures["connects"] = self.svc.metric("streetwatch_mqtt_connects_total") - connects0

    def disk_full(self, s: Scenario) -> None:
        """Fill the spool's own tmpfs (InfluxDB down, so no commit frees space): acks stop,
        /healthz names the spool's error, the service lives;
        space back: acks resume by themselves. Every problem is recorded, then the run goes on
        (restarting the service if it did not recover, so later scenarios still mean something)."""
        check(self.spool_mount is not None, "no tmpfs for the spool (mount not permitted)")
        assert self.spool_mount is not None
        problems: list[str] = []
        filler = self.spool_mount / "filler"
        check(self.taken_in(1.0) > 0, "the service takes nothing before the disk fills")
        # InfluxDB down too: otherwise the writer commits and deletes segments, the spool
        # reuses that space at nearly the full rate (correct: those acks are durable) and the
        # scenario would prove nothing about a disk that stays full.
        self.cluster.influx.stop()
        try:
            # Leave a few hundred KiB: the spool runs into ENOSPC within a second of load.
            free = shutil.disk_usage(self.spool_mount).free
            subprocess.run(
                ["fallocate", "-l", str(max(0, free - 256 * 1024)), str(filler)], check=True
            )
            time.sleep(2.0)  # the spool runs into the full disk
            # The service's own PUBACKs (not readings decoded and held, which go on until the
            # broker's receive window is used up). Nothing can free space now (no commits, so
            # no segment is deleted): any ack would promise a reading the disk cannot hold.
            free0 = shutil.disk_usage(self.spool_mount).free
            stopped = self.service_acks_in(3.0)
            free1 = shutil.disk_usage(self.spool_mount).free
            s.figures["acks_in_3s_while_full"] = stopped
            s.figures["free_bytes_while_full"] = max(free0, free1)
            s.figures["decoded_in_3s_while_full"] = self.taken_in(1.0) * 3
            if stopped > 0:
                problems.append(f"acks went on with the spool's disk full: {stopped} in 3 s")
            check(self.svc.proc.poll() is None, "the service died of a full disk")
            health = self.svc.health()
            s.figures["health_while_full"] = health["status"]
            s.figures["acks_held_while_full"] = health.get("acks_held")
            said = str(health.get("reasons", ""))
            if health["status"] != "degraded" or "spool" not in said:
                problems.append(f"/healthz does not name the spool's full disk: {health}")
        finally:
            filler.unlink(missing_ok=True)
            self.cluster.influx.start()
        t0 = time.monotonic()
        try:
            wait_until(lambda: self.service_acks_in(0.5) > 0, 60, "acks resume when space returns")
            s.figures["resumed_after_s"] = round(time.monotonic() - t0, 1)
            self.svc.wait_health(
                lambda h: h.get("status") == "ok" and h.get("acks_held") == 0, timeout=60
            )
            s.figures["healthy_after_s"] = round(time.monotonic() - t0, 1)
        except TimeoutError as exc:
            problems.append(f"no recovery when space returned: {exc}"[:400])
            self.log("   no recovery: kill -9 and start again, so the run goes on")
            self.svc.kill9()
            self.cluster.start_service()
        if problems:
            raise ScenarioFailed("; ".join(problems))

    def sigterm(self, s: Scenario, env: dict[str, str] | None = None) -> None:
        hang: HangingServer | None = None
        if env is not None:  # the v2 store against a server that accepts and never answers
            hang = HangingServer().start()
            env = {**env, "STREETWATCH_INFLUXDB__URL": hang.url}
            self.svc.terminate()
            self.cluster.start_service(env)
        try:
            time.sleep(3.0)  # under load (and, for v2, with a write hanging)
            if hang is not None:
                s.figures["hung_connections"] = hang.accepted
                check(hang.accepted > 0, "the v2 store never tried to write")
            check(self.taken_in(0.5) > 0, "no load before SIGTERM")
            try:
                rc, took = self.svc.terminate(timeout=30)
            except subprocess.TimeoutExpired:
                self.svc.stop()
                raise ScenarioFailed("still running 30 s after SIGTERM") from None
            s.figures["exit"] = rc
            s.figures["took_s"] = round(took, 2)
            check(rc == 0, f"exit code {rc}")
            check(took < 10.0, f"took {took:.1f} s to stop (must be < 10)")
        finally:
            if hang is not None:
                hang.stop()
            if self.svc.proc.poll() is not None:
                self.cluster.start_service()  # back on the v1 store: what v2 spooled drains

    def scenarios(self) -> list[tuple[str, Callable[[Scenario], None]]]:
        v2 = {
            "STREETWATCH_INFLUXDB__API": "v2",
            "STREETWATCH_INFLUXDB__ORG": "city",
            "STREETWATCH_INFLUXDB__TOKEN": "t",
        }
        return [
            ("kill9", self.kill9),
            ("influx_outage", self.influx_outage),
            ("spool_limit", self.spool_limit),
            ("broker_restart", self.broker_restart),
            ("broker_gone", self.broker_gone),
            ("disk_full", self.disk_full),
            ("sigterm_v1", self.sigterm),
            ("sigterm_v2", lambda s: self.sigterm(s, v2)),
        ]

    # --- the run --------------------------------------------------------------------------

    def run(self) -> RunResult:
        t0 = time.monotonic()
        m = self.mode
        self.cluster.broker.start()
        self.cluster.influx.start()
        self.mount_spool_tmpfs()
        try:
            self.cluster.start_service()
            self.load = LedgerLoad(
                host="127.0.0.1", port=self.cluster.broker.port, rate=m.rate
            ).start()
            wait_until(lambda: self.acked() > 0, 30, "the load's first acks")
            for name, fn in self.scenarios():
                if self.only is None or name in self.only:
                    self.scenario(name, fn)
            self.log("-- drain and verify")
            self.result.load = self.load.stop(drain_timeout=120)
            try:
                self.cluster.wait_drained(timeout=180)
            except TimeoutError as exc:
                drain = Scenario("drain", error=f"the spool never drained: {exc}"[:600])
                self.result.scenarios["drain"] = drain
                self.log(f"   FAIL: {drain.error}; kill -9 and start again")
                self.svc.kill9()
                self.cluster.start_service()
                self.cluster.wait_drained(timeout=180)
            self.result.verdict = verify(self.cluster.influx, self.load.ledger, self.load.acked_map)
        finally:
            if self.load is not None:
                self.load.stop(drain_timeout=0)
            self.cluster.stop()
            self.umount_spool()
            self.result.service_starts = self.cluster.service_starts
            self.result.seconds = time.monotonic() - t0
        return self.result
