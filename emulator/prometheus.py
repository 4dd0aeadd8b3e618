"""A real Prometheus server for the e2e tests and the benches: started on loopback with a temporary TSDB.

The binary is found as the rig's is (`rlscale.rig.prometheus`: `$RLSCALE_PROMETHEUS`, the PATH, or
`.ci/cache/prometheus/usr/bin/`, where `.ci/prometheus.sh` unpacks Debian's package); without one the
constructor raises `PrometheusNotFound` (the tests turn it into a failure). Waiting is by polling with
deadlines; the server is stopped by its process id.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from rlscale.rig.prometheus import free_port, require_prometheus, terminate


class PrometheusServer:
    """Prometheus scraping `targets` (host:port, path /metrics) every `interval_s`; `retarget` changes them
    at run time (file-based discovery), so one server can serve many tests.

    With `backfill` (an OpenMetrics file of timestamped samples), its TSDB starts with those
    samples as history (`promtool tsdb create-blocks-from openmetrics`, Prometheus's backfill).
    """

    def __init__(self, targets: list[str], interval_s: float = 1.0, backfill: Path | None = None) -> None:
        binary = require_prometheus()
        self.directory = Path(tempfile.mkdtemp(prefix="rlscale-prometheus-"))
        retention = "1h"
        if backfill is not None:
            promtool = Path(binary).with_name("promtool")
            subprocess.run([str(promtool), "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(backfill),
                            str(self.directory / "data")], check=True, stdout=subprocess.DEVNULL)
            retention = "3650d"  # the history's blocks are old: keep them
        config = self.directory / "prometheus.yml"
        self.targets_file = self.directory / "targets.json"
        self._write_targets(targets)
        config.write_text(
            f"global:\n  scrape_interval: {round(interval_s * 1000)}ms\n  evaluation_interval: {round(interval_s * 1000)}ms\n"
            f"  scrape_timeout: {round(interval_s * 1000)}ms\n"  # a large emulator takes seconds to write /metrics
            f"scrape_configs:\n  - job_name: targets\n    file_sd_configs:\n      - files: [{json.dumps(str(self.targets_file))}]\n"
            f"        refresh_interval: 1s\n"
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

    def _write_targets(self, targets: list[str]) -> None:
        staged = self.targets_file.with_suffix(".tmp")
        staged.write_text(json.dumps([{"targets": targets}]))
        staged.replace(self.targets_file)  # atomically: Prometheus never reads half a file

    def retarget(self, targets: list[str], scrapes: int = 3, timeout_s: float = 60.0) -> None:
        """Scrape `targets` from now on; returns once each was scraped `scrapes` times."""
        self._write_targets(targets)

        def scraped() -> bool:
            for target in targets:
                series = self.query(f'count_over_time(up{{job="targets",instance="{target}"}}[10m])')
                if not series or series[0][1] < scrapes:
                    return False
            return True

        self._wait(scraped, timeout_s, f"{targets} not scraped {scrapes} times")

    def stop(self) -> None:
        terminate(self.process)
        self.log.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "PrometheusServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
