"""A Prometheus server for the rig: file_sd discovery of every replica, a temporary TSDB, stopped by PID.

The binary comes from `$RLSCALE_PROMETHEUS`, the PATH, or `.ci/cache/prometheus/usr/bin/`
(where `.ci/prometheus.sh` unpacks Debian's package).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
UNPACKED = PROJECT_ROOT / ".ci" / "cache" / "prometheus" / "usr" / "bin" / "prometheus"


class PrometheusNotFound(RuntimeError):
    """No Prometheus binary where `find_prometheus` looks."""


def find_prometheus() -> str | None:
    for candidate in (os.environ.get("RLSCALE_PROMETHEUS"), shutil.which("prometheus"), str(UNPACKED)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_prometheus() -> str:
    """The Prometheus binary, or PrometheusNotFound saying how to get one."""
    binary = find_prometheus()
    if binary is None:
        raise PrometheusNotFound("no Prometheus binary: run `bash .ci/prometheus.sh` (or set RLSCALE_PROMETHEUS)")
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape_config(sd_dir: Path, interval_s: float, containers: tuple[str, ...] = ()) -> str:
    """Scrape every target file the replicas write in `sd_dir` (re-read every second), and the container
    metrics exporters (cAdvisor or the rig's stand-in, `rig/cadvisor.py`) at `containers` (host:port)."""
    period = f"{round(interval_s * 1000)}ms"
    jobs: list[dict] = [{"job_name": "rig", "file_sd_configs": [{"files": [str(sd_dir / "*.json")], "refresh_interval": "1s"}]}]
    if containers:
        jobs.append({"job_name": "cadvisor", "static_configs": [{"targets": list(containers)}]})
    return json.dumps({"global": {"scrape_interval": period, "evaluation_interval": period}, "scrape_configs": jobs})


class PrometheusProcess:
    def __init__(self, directory: Path, sd_dir: Path, interval_s: float = 1.0, port: int | None = None,
                 containers: tuple[str, ...] = ()) -> None:
        binary = require_prometheus()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        sd_dir.mkdir(parents=True, exist_ok=True)
        config = directory / "prometheus.yml"
        config.write_text(scrape_config(sd_dir, interval_s, containers))
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with (directory / "prometheus.log").open("a") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn", "--storage.tsdb.retention.time=2h"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.process.pid
        deadline = time.monotonic() + 30
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Prometheus did not start: {(directory / 'prometheus.log').read_text()[-400:]}")
            time.sleep(0.2)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2):
                return True
        except OSError:
            return False

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(address, timeout=5) as response:
            data = json.loads(response.read())
        return [(r["metric"], float(r["value"][1])) for r in data["data"]["result"]]

    def stop(self) -> None:
        terminate(self.process)


def terminate(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """SIGTERM a process this code started, SIGKILL it if it has not ended within `timeout_s`, and reap it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
