"""A real Prometheus server for the e2e tests: started on loopback with a temporary TSDB.

The binary comes from `$RLSCALE_PROMETHEUS`, the PATH, or `.ci/cache/prometheus/usr/bin/`
(where `.ci/prometheus.sh` unpacks Debian's package). Waiting is by polling with deadlines;
the server is stopped by its process id.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
UNPACKED = PROJECT_ROOT / ".ci" / "cache" / "prometheus" / "usr" / "bin" / "prometheus"


def find_prometheus() -> str | None:
    for candidate in (os.environ.get("RLSCALE_PROMETHEUS"), shutil.which("prometheus"), str(UNPACKED)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrometheusServer:
    """Prometheus scraping `targets` (host:port, path /metrics) every `interval_s`.

    With `backfill` (an OpenMetrics file of timestamped samples), its TSDB starts with those
    samples as history (`promtool tsdb create-blocks-from openmetrics`, Prometheus's backfill).
    """

    def __init__(self, targets: list[str], interval_s: float = 1.0, backfill: Path | None = None) -> None:
        binary = find_prometheus()
        if binary is None:
            pytest.fail("no Prometheus binary: run `bash .ci/prometheus.sh` (or set RLSCALE_PROMETHEUS)")
        self.directory = Path(tempfile.mkdtemp(prefix="rlscale-prometheus-"))
        retention = "1h"
        if backfill is not None:
            promtool = Path(binary).with_name("promtool")
            subprocess.run([str(promtool), "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(backfill),
                            str(self.directory / "data")], check=True, stdout=subprocess.DEVNULL)
            retention = "3650d"  # the history's blocks are old: keep them
        config = self.directory / "prometheus.yml"
        config.write_text(
            f"global:\n  scrape_interval: {round(interval_s * 1000)}ms\n  evaluation_interval: {round(interval_s * 1000)}ms\n"
            f"scrape_configs:\n  - job_name: targets\n    static_configs:\n      - targets: {json.dumps(targets)}\n"
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (self.directory / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={self.directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn", f"--storage.tsdb.retention.time={retention}"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        self._wait(lambda: self._get("/-/ready") is not None, 30, "Prometheus did not become ready")

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as response:
                return response.read()
        except OSError:
            return None

    def _wait(self, condition: Any, timeout_s: float, message: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Prometheus exited: {(self.directory / 'prometheus.log').read_text()[-500:]}")
            if condition():
                return
            time.sleep(0.2)
        raise TimeoutError(message)

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """An instant query: (labels, value) per series."""
        body = self._get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        if body is None:
            raise RuntimeError(f"query failed: {promql}")
        data = json.loads(body)
        if data.get("status") != "success":
            raise RuntimeError(f"query failed: {promql}: {data}")
        return [(r["metric"], float(r["value"][1])) for r in data["data"]["result"]]

    def wait_for_series(self, promql: str, timeout_s: float = 30.0) -> list[tuple[dict[str, str], float]]:
        """Poll `promql` until it returns a series; returns them."""
        found: list[tuple[dict[str, str], float]] = []

        def has_series() -> bool:
            nonlocal found
            found = self.query(promql)
            return bool(found)

        self._wait(has_series, timeout_s, f"no series for {promql}")
        return found

    def wait_for_scrapes(self, count: int, timeout_s: float = 60.0) -> None:
        """Poll until every target has been scraped `count` times."""

        def scraped() -> bool:
            series = self.query('count_over_time(up{job="targets"}[10m])')
            return bool(series) and min(value for _, value in series) >= count

        self._wait(scraped, timeout_s, f"fewer than {count} scrapes")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "PrometheusServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
