"""`rlscale rig up | load TRACE | down`: the rig for a person to watch rlscale scale a real service.

`up` starts (or reuses) the engine, a Prometheus discovering the replicas, the inference service
(`rig-inference`, one replica of half a core, handed to rlscale by its labels) and
`rlscale controller run --platform swarm` in the background; `load` replays a trace against the
service and prints what the client measures and how many replicas run; `down` stops the
controller (which restores the service's original spec), removes the service, stops Prometheus
and, if `up` started it, the engine. Every process is stopped by the PID `up` recorded in the
state directory.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from rlscale.errors import UserInputError
from rlscale.rig import deploy
from rlscale.rig.loadgen import LoadReport, run_load
from rlscale.rig.prometheus import PrometheusProcess, free_port

SERVICE = "rig-inference"
STATE = "state.json"
DEFAULT_TRACE = Path(__file__).parent / "traces" / "step.csv"


def _engine_api(docker_host: str):  # -> docker.APIClient
    from rlscale.controller.swarm_main import engine_client

    return engine_client(docker_host, 10)


def up(state_dir: Path, policy: str, interval_s: float, say: Callable[[str], None]) -> dict:
    if (state_dir / STATE).exists():
        raise UserInputError(str(state_dir), "the rig is already up (run `rlscale rig down` first)")
    started_engine = not deploy.engine_running()
    docker_host = deploy.start_engine() if deploy.DOCKER_SCRIPT.is_file() else os.environ.get("DOCKER_HOST", "")
    api = _engine_api(docker_host)
    state_dir.mkdir(parents=True, exist_ok=True)
    sd_dir = (state_dir / "sd").resolve()
    prometheus = PrometheusProcess(state_dir.resolve() / "prometheus", sd_dir)
    service = deploy.RigService(SERVICE, free_port(), sd_dir, labels={
        "rlscale.io/managed": "true", "rlscale.io/max-replicas": "6", "rlscale.io/slo-latency-seconds": "1",
        "rlscale.io/hpa-cpu-utilization": "50"}, batch=32)
    deploy.create_service(api, service)
    deploy.wait_running(api, SERVICE, 1)
    config = state_dir / "controller.yaml"
    listen = free_port()
    config.write_text(yaml.safe_dump({
        "platform": "swarm", "docker_host": docker_host, "policy": policy, "interval_s": interval_s, "listen_port": listen,
        "prometheus": {"url": prometheus.url, "window_s": max(8, int(2 * interval_s))}}))
    with (state_dir / "controller.log").open("w") as log:
        controller = subprocess.Popen([sys.executable, "-c", "from rlscale.cli import main; main()", "controller", "run",
                                       "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    state = {"docker_host": docker_host, "started_engine": started_engine, "port": service.port, "prometheus_pid": prometheus.pid,
             "prometheus_url": prometheus.url, "controller_pid": controller.pid, "metrics_port": listen}
    (state_dir / STATE).write_text(json.dumps(state, indent=2))
    say(f"{SERVICE}: http://127.0.0.1:{service.port}/infer (1 replica, 0.5 core); Prometheus {prometheus.url}; "
        f"controller ({policy}, every {interval_s:g} s) metrics on http://127.0.0.1:{listen}/metrics, log {state_dir / 'controller.log'}")
    return state


def _state(state_dir: Path) -> dict:
    try:
        return json.loads((state_dir / STATE).read_text())
    except (OSError, ValueError):
        raise UserInputError(str(state_dir), "the rig is not up (run `rlscale rig up`)") from None


def load(state_dir: Path, trace: Path, duration_s: int, peak_rps: float, seed: int, say: Callable[[str], None]) -> LoadReport:
    from rlscale.env.workloads import TraceReplay, load_trace

    state = _state(state_dir)
    recorded = load_trace(trace)
    replay = TraceReplay(recorded, time_scale=duration_s / recorded.duration_s, peak_rps_target=peak_rps)
    rates = replay.rates(duration_s, np.random.default_rng(seed))
    api = _engine_api(state["docker_host"])
    timeline: list[tuple[float, int]] = []

    def progress(at_s: float, sent: int, in_flight: int) -> None:
        if int(at_s) % 5 == 0:
            timeline.append((at_s, deploy.service_replicas(api, SERVICE)))
            say(f"t={at_s:5.0f} s  offered {rates[min(int(at_s), len(rates) - 1)]:5.1f} req/s  in flight {in_flight:4d}  "
                f"replicas {timeline[-1][1]}")

    report = run_load("127.0.0.1", state["port"], rates, seed=seed, max_seconds=duration_s, progress=progress)
    say("window      offered req/s  answered  errors  p50 (ms)  p95 (ms)  replicas")
    for start in range(0, duration_s, 15):
        figures = report.window(start, start + 15).figures()
        replicas = max((r for t, r in timeline if start <= t < start + 15), default=0)
        say(f"{start:4d}-{start + 15:<4d} s  {figures['rps']:12.1f}  {figures['ok']:8.0f}  {figures['errors']:6.0f}  "
            f"{figures['p50_s'] * 1000:8.0f}  {figures['p95_s'] * 1000:8.0f}  {replicas:8d}")
    return report


def _stop(pid: int, timeout_s: float = 30.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def down(state_dir: Path, say: Callable[[str], None]) -> None:
    state = _state(state_dir)
    _stop(state["controller_pid"])  # on SIGTERM it restores the service's original spec
    deploy.remove_service(_engine_api(state["docker_host"]), SERVICE)
    _stop(state["prometheus_pid"])
    if state["started_engine"]:
        deploy.engine_script("stop")
    shutil.rmtree(state_dir, ignore_errors=True)
    say("the rig is down" + (" (engine stopped, swarm left)" if state["started_engine"] else ""))
