"""One control loop for many managed services against the emulator and a real Prometheus.

Starts the emulator (`rlscale cluster-sim serve`, its own process) with N copies of the
image-classification service, Prometheus scraping it (the binary `.ci/prometheus.sh`
unpacks), then in this process a controller with the shipped learned policy. Prints the
controller's start-up time (a separate `rlscale controller run` process, until its first log
line), one loop's time by phase (deciding vs waiting on the API and Prometheus), the process's
RSS, and whether torch was imported. Targets: deciding <= 100 ms, RSS <= 150 MB, no torch,
start-up <= 2 s (for 1,000 services).

    .venv/bin/python bench/controller.py [--services 1000]
"""

from __future__ import annotations

import argparse
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the Prometheus launcher the e2e tests use

from prometheus_server import PrometheusServer  # noqa: E402

from rlscale.controller.config import ControllerConfig, LeaderSettings, PrometheusSettings  # noqa: E402
from rlscale.controller.main import api_client, build  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scenario_file(folder: Path, services: int) -> Path:
    base = yaml.safe_load((ROOT / "scenarios" / "image-classification.yaml").read_text())
    template = base["services"][0]
    base["services"] = [dict(template, name=f"svc-{i}") for i in range(services)]
    base["node_pools"] = [{"name": "pool", "nodes": max(3, services // 10), "cpu": 64, "memory": "256Gi"}]
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=1000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rlscale-bench-"))
    port, kubeconfig = free_port(), folder / "kubeconfig"
    emulator = subprocess.Popen([sys.executable, "-c", "from rlscale.cli import main; main()", "cluster-sim", "serve",
                                 "--scenario", str(scenario_file(folder, args.services)), "--port", str(port), "--speed", "1",
                                 "--duration", "1800", "--kubeconfig", str(kubeconfig)], stderr=subprocess.PIPE, text=True)
    try:
        emulator.stderr.readline()  # "serving ..." once it listens
        with PrometheusServer([f"127.0.0.1:{port}"], interval_s=5.0) as prometheus:
            prometheus.wait_for_series('container_cpu_usage_seconds_total{pod=~"svc-0-.*"}', timeout_s=120)
            prometheus.wait_for_scrapes(3, timeout_s=120)
            config = ControllerConfig(
                namespace="default", selector="app", api_timeout_s=30, leader_election=LeaderSettings(enabled=False),
                prometheus=PrometheusSettings(url=prometheus.url, window_s=15, staleness_s=60, timeout_s=30),
            )
            config_path = folder / "controller.yaml"
            config_path.write_text(yaml.safe_dump({"namespace": "default", "selector": "app", "listen_port": 0, "mode": "dry-run",
                                                   "leader_election": {"enabled": False},
                                                   "prometheus": {"url": prometheus.url}}))
            started = time.perf_counter()
            process = subprocess.Popen([sys.executable, "-c", "from rlscale.cli import main; main()", "controller", "run",
                                        "--config", str(config_path), "--kubeconfig", str(kubeconfig)],
                                       stderr=subprocess.PIPE, text=True)
            process.stderr.readline()
            startup = time.perf_counter() - started
            process.terminate()
            process.wait()
            controller = build(config, api_client(kubeconfig))
            controller.step()  # the first loop pins every HPA
            controller.step()
            phases = controller.phases
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"{args.services} services, one loop: {sum(phases.values()):.2f} s")
            for phase, seconds in phases.items():
                print(f"  {phase:18s} {seconds * 1000:9.1f} ms")
            print(f"deciding (policy for all services): {phases['decide'] * 1000:.1f} ms; "
                  f"waiting on the API and Prometheus: {(phases['discover'] + phases['observe']) * 1000:.0f} ms")
            print(f"controller start-up (process to first log line): {startup:.2f} s")
            print(f"peak RSS of this process (controller, client, policy): {rss:.0f} MB; torch imported: {'torch' in sys.modules}")
            print(f"services observed: {len(controller.backend.services)}, failing static: {len(controller.failing)}")
    finally:
        emulator.terminate()
        emulator.wait()


if __name__ == "__main__":
    main()
