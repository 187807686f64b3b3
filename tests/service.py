"""Run `streetwatch run` as a real subprocess against the test servers (for kill -9, SIGTERM)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.servers import free_port


class ServiceProcess:
    def __init__(self, data_dir: Path, env: dict[str, str], config: Path | None = None) -> None:
        self.data_dir = data_dir
        self.http_port = free_port()
        self.env = {
            **os.environ,
            "STREETWATCH_STORAGE__DATA_DIR": str(data_dir),
            "STREETWATCH_HTTP__PORT": str(self.http_port),
            **env,
        }
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}-service.log"

    def start(self, wait_connected: bool = True) -> ServiceProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "streetwatch.cli", "run"]
        if self.config is not None:
            cmd += ["-c", str(self.config)]
        with open(self.log, "ab") as log:
            # cwd outside the repo: the service must not pick up the repo's ./config.yaml.
            self.proc = subprocess.Popen(
                cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir.parent
            )
        if wait_connected:
            self.wait_health(lambda h: h.get("mqtt_connected") is True)
        return self

    def health(self) -> dict[str, object]:
        import orjson

        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=2) as r:
            data: dict[str, object] = orjson.loads(r.read())
            return data

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=2) as r:
            return r.read().decode()

    def metric(self, line_prefix: str) -> float:
        for line in self.metrics().splitlines():
            if line.startswith(line_prefix + " "):
                return float(line.split()[-1])
        return 0.0

    def wait_health(self, pred: object, timeout: float = 20.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        last: dict[str, object] = {}
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"service exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}"
                )
            try:
                last = self.health()
                if pred(last):  # type: ignore[operator]
                    return last
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(
            f"service health never matched; last {last}; log: {self.log.read_text()[-3000:]}"
        )

    def wait_drained(self, timeout: float = 30.0) -> None:
        self.wait_health(lambda h: h.get("spool_bytes") == 0, timeout)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout: float = 10.0) -> tuple[int, float]:
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        return rc, time.monotonic() - t0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
