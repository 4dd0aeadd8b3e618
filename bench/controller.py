"""The controller at scale: 1,000 and 5,000 managed services against the emulator and a real Prometheus.

For each size: the emulator in its own process (`rlscale cluster-sim serve`, N copies of the
image-classification service, warmed up for 30 simulated seconds, then with time standing still so that nothing changes
unless the controller writes), Prometheus scraping it, and in this process the controller as
`build()` makes it (the shipped learned policy, caches listed then watched). Prints:

- the first full loop (observe + decide + write: it pins every HPA, N writes) by phase, and a
  second loop when nothing changed (targets: <= 5 s at 1,000 services, <= 30 s at 5,000);
- API reads per service per loop when nothing changed, from the emulator's request counts
  (target: ~0, everything from the caches);
- peak RSS of this process (controller, client, caches, policy; target <= 200 MB at 5,000);
- start-up of a separate `rlscale controller run` process until it logs "started" (config,
  policy load and self-test, listening; target <= 2 s), and whether torch was imported.

    .venv/bin/python bench/controller.py [--services 1000 5000] [--loops 3]
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the Prometheus launcher the e2e tests use

from prometheus_server import PrometheusServer, free_port  # noqa: E402

from rlscale.controller.config import ControllerConfig, LeaderSettings, PrometheusSettings  # noqa: E402
from rlscale.controller.main import api_client, build  # noqa: E402

CLI = [sys.executable, "-c", "from rlscale.cli import main; main()"]


def scenario_file(folder: Path, services: int) -> Path:
    base = yaml.safe_load((ROOT / "scenarios" / "image-classification.yaml").read_text())
    template = base["services"][0]
    base["services"] = [dict(template, name=f"svc-{i}") for i in range(services)]
    base["node_pools"] = [{"name": "pool", "nodes": max(3, services // 10), "cpu": 64, "memory": "256Gi"}]
    path = folder / f"scenario-{services}.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def api_reads(url: str) -> float:
    with urllib.request.urlopen(f"{url}/_emulator/requests", timeout=60) as response:
        return sum(r["count"] for r in json.loads(response.read()) if r["verb"] in ("get", "list"))


def startup_s(folder: Path, kubeconfig: Path, prometheus_url: str) -> float:
    config = folder / "startup.yaml"
    config.write_text(yaml.safe_dump({"namespaces": ["default"], "selector": "app", "listen_port": 0, "mode": "dry-run",
                                      "leader_election": {"enabled": False}, "prometheus": {"url": prometheus_url}}))
    started = time.perf_counter()
    process = subprocess.Popen([*CLI, "controller", "run", "--config", str(config), "--kubeconfig", str(kubeconfig)],
                               stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:
            if '"started"' in line:
                return time.perf_counter() - started
        raise RuntimeError("the controller exited before it started")
    finally:
        process.terminate()
        process.wait()


def run(services: int, loops: int, folder: Path) -> None:
    port, kubeconfig = free_port(), folder / f"kubeconfig-{services}"
    scrape_s = 15.0 if services <= 1000 else 60.0  # a 5,000-service /metrics takes the emulator 10-30 s to write
    print(f"== {services} services: starting the emulator (warm-up 30 simulated s) ...", flush=True)
    began = time.perf_counter()
    emulator = subprocess.Popen([*CLI, "cluster-sim", "serve", "--scenario", str(scenario_file(folder, services)), "--port", str(port),
                                 "--speed", "0", "--warmup", "30", "--duration", "1800", "--kubeconfig", str(kubeconfig)],
                                stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        emulator.stderr.readline()  # "serving ..." once it listens
        print(f"   emulator up in {time.perf_counter() - began:.0f} s; Prometheus scraping it every {scrape_s:g} s ...", flush=True)
        with PrometheusServer([f"127.0.0.1:{port}"], interval_s=scrape_s) as prometheus:
            prometheus.wait_for_scrapes(3, timeout_s=900)  # rates need two samples in the window
            config = ControllerConfig(
                namespaces=("default",), selector="app", api_timeout_s=60, leader_election=LeaderSettings(enabled=False),
                prometheus=PrometheusSettings(url=prometheus.url, window_s=int(3 * scrape_s), staleness_s=600, timeout_s=120),
            )
            controller = build(config, api_client(kubeconfig))
            controller.log.setLevel(logging.ERROR)  # thousands of per-service lines are not the point here
            mark = time.perf_counter()
            controller.backend.caches.sync()
            controller.backend.caches.start()
            listed = time.perf_counter() - mark
            timings = []
            for i in range(loops):
                before_reads, before_writes = api_reads(url), controller.backend.actuator.writes
                mark = time.perf_counter()
                controller.step()
                timings.append((time.perf_counter() - mark, dict(controller.phases), api_reads(url) - before_reads,
                                controller.backend.actuator.writes - before_writes))
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            managed, failing = len(controller.backend.services), dict(collections.Counter(controller.failing.values()))
            controller.stop.set()
            controller.backend.caches.stop()
            startup = startup_s(folder, kubeconfig, prometheus.url)
        target = 5.0 if services <= 1000 else 30.0
        print(f"   caches listed (HPAs, Deployments, Pods; pages of 500): {listed:.1f} s; managed {managed}, failing static by reason {failing}")
        for i, (seconds, phases, reads, writes) in enumerate(timings):
            what = "first loop (pins every HPA)" if i == 0 else "loop, nothing changed"
            detail = ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
            print(f"   {what:28s} {seconds:6.2f} s (target <= {target:g} s): {detail}; writes {writes}; "
                  f"API reads {reads:.0f} = {reads / services:.4f} per service")
        print(f"   peak RSS of this process: {rss:.0f} MB (target <= 200 MB at 5,000); torch imported: {'torch' in sys.modules}")
        print(f"   start-up of `rlscale controller run` (to its 'started' line): {startup:.2f} s (target <= 2 s)", flush=True)
    finally:
        emulator.terminate()
        emulator.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--loops", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rlscale-bench-"))
    for services in args.services:
        run(services, args.loops, folder)


if __name__ == "__main__":
    main()
