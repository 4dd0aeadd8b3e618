"""The rig's stand-in for cAdvisor: every Swarm task's container CPU, CFS throttling and memory, for Prometheus.

On Swarm, container metrics come from cAdvisor running as a global service; Debian does not
package cAdvisor, so the rig runs this instead. It reads what cAdvisor reads (each container's
cgroup: cgroup v1 with the cgroupfs or systemd driver, or cgroup v2) at every scrape and serves
it under cAdvisor's names and labels, the Docker labels included as
`container_label_<label with . as _>`:

    container_cpu_usage_seconds_total, container_cpu_cfs_periods_total,
    container_cpu_cfs_throttled_periods_total, container_cpu_cfs_throttled_seconds_total,
    container_memory_usage_bytes, container_memory_working_set_bytes, container_start_time_seconds

So `rlscale calibrate --platform swarm` reads the same PromQL a Swarm user's cAdvisor answers.
The containers are listed with one Engine API call per scrape (those with a Swarm service label).

    python -m rlscale.rig.cadvisor --port 0 --docker-host unix:///...   # prints {"port": N}
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CGROUP = Path("/sys/fs/cgroup")
SWARM_LABELS = ("com.docker.swarm.service.name", "com.docker.swarm.task.name", "com.docker.swarm.task.id", "com.docker.swarm.node.id")


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _stat(text: str | None) -> dict[str, int]:
    out = {}
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def container_usage(container_id: str, root: Path = CGROUP) -> dict[str, float] | None:
    """CPU seconds, CFS periods and throttling, memory usage and working set of one container (None: no cgroup)."""
    for v1 in (f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"):
        usage = _read(root / "cpuacct" / v1 / "cpuacct.usage")
        if usage is not None:
            cpu = _stat(_read(root / "cpu" / v1 / "cpu.stat"))
            memory = int(_read(root / "memory" / v1 / "memory.usage_in_bytes") or 0)
            stats = _stat(_read(root / "memory" / v1 / "memory.stat"))
            inactive = stats.get("total_inactive_file", stats.get("inactive_file", 0))
            return {"cpu_s": int(usage) / 1e9, "periods": cpu.get("nr_periods", 0), "throttled": cpu.get("nr_throttled", 0),
                    "throttled_s": cpu.get("throttled_time", 0) / 1e9, "memory": memory, "working_set": max(0, memory - inactive)}
    for v2 in (f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"):
        cpu = _stat(_read(root / v2 / "cpu.stat"))
        if cpu:
            memory = int(_read(root / v2 / "memory.current") or 0)
            inactive = _stat(_read(root / v2 / "memory.stat")).get("inactive_file", 0)
            return {"cpu_s": cpu.get("usage_usec", 0) / 1e6, "periods": cpu.get("nr_periods", 0), "throttled": cpu.get("nr_throttled", 0),
                    "throttled_s": cpu.get("throttled_usec", 0) / 1e6, "memory": memory, "working_set": max(0, memory - inactive)}
    return None


class ContainerCollector(Collector):
    def __init__(self, api: Any, root: Path = CGROUP) -> None:
        self.api, self.root = api, root

    def collect(self) -> Iterator[Metric]:
        labels = ["id", "name", "image", *(f"container_label_{key.replace('.', '_')}" for key in SWARM_LABELS)]

        def counter(name: str, text: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, text, labels=labels)

        cpu = counter("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.")
        periods = counter("container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.")
        throttled = counter("container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.")
        throttled_s = counter("container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.")
        usage = GaugeMetricFamily("container_memory_usage_bytes", "Current memory usage in bytes.", labels=labels)
        working = GaugeMetricFamily("container_memory_working_set_bytes", "Current working set in bytes.", labels=labels)
        started = GaugeMetricFamily("container_start_time_seconds", "Start time of the container since unix epoch in seconds.", labels=labels)
        try:
            listed = self.api.containers(filters={"label": SWARM_LABELS[0]})
        except Exception:  # the engine is down or restarting: nothing to export this scrape (as cAdvisor would)
            listed = []
        for container in listed:
            found = container_usage(container["Id"], self.root)
            if found is None:
                continue
            values = [f"/docker/{container['Id']}", (container.get("Names") or ["/"])[0].lstrip("/"), container.get("Image", ""),
                      *((container.get("Labels") or {}).get(key, "") for key in SWARM_LABELS)]
            cpu.add_metric(values, found["cpu_s"])
            periods.add_metric(values, found["periods"])
            throttled.add_metric(values, found["throttled"])
            throttled_s.add_metric(values, found["throttled_s"])
            usage.add_metric(values, found["memory"])
            working.add_metric(values, found["working_set"])
            started.add_metric(values, float(container.get("Created", 0)))
        yield from (cpu, periods, throttled, throttled_s, usage, working, started)


class ContainerExporter:
    """`/metrics` on 127.0.0.1:`port` (0: the kernel picks), served from a thread."""

    def __init__(self, api: Any, port: int = 0, root: Path = CGROUP) -> None:
        registry = CollectorRegistry()
        registry.register(ContainerCollector(api, root))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = generate_latest(registry) if self.path == "/metrics" else b"not found"
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.http.daemon_threads = True
        self.thread = threading.Thread(target=self.http.serve_forever, name="rig-cadvisor", daemon=True)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.http.server_address[1]}"

    def start(self) -> "ContainerExporter":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()

    def __enter__(self) -> "ContainerExporter":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--docker-host", default="")
    args = parser.parse_args()
    from rlscale.controller.swarm_main import engine_client

    exporter = ContainerExporter(engine_client(args.docker_host, 10), args.port).start()
    print(json.dumps({"port": exporter.http.server_address[1]}), flush=True)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    exporter.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
