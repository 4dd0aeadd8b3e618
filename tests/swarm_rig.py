"""Fixtures for the real Swarm rig: the engine, a Prometheus discovering the replicas, services, a controller.

The engine is the one `.ci/docker.sh` runs in the work tree; Prometheus also scrapes the rig's
stand-in for cAdvisor (`rig/cadvisor.py`), the containers' CPU and memory. The swarm tests take turns on it
(a file lock: one of them restarts dockerd, and xdist may put them on different workers); if no
engine was running, the first session starts it and the last one to finish stops it by its PID
and leaves the swarm (nothing left behind). Each test's services carry a label of their own and
its controller selects only those. Every service a test creates is removed when the test ends;
Prometheus is stopped by its PID.
"""

from __future__ import annotations

import dataclasses
import fcntl
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from rlscale.agent.policy import Policy
from rlscale.controller.clock import RealClock
from rlscale.controller.config import ControllerConfig, PrometheusSettings
from rlscale.controller.loop import Controller
from rlscale.controller.swarm_main import build_swarm, engine_client
from rlscale.rig import deploy
from rlscale.rig.cadvisor import ContainerExporter
from rlscale.rig.loadgen import LoadReport, run_load
from rlscale.rig.prometheus import PrometheusProcess, find_prometheus, free_port

from conftest import wait_until

INTERVAL_S = 4.0
MANAGED = {"rlscale.io/managed": "true", "rlscale.io/max-replicas": "4"}
TEST_LABEL = "rlscale.test"
CACHE = deploy.PROJECT_ROOT / ".ci" / "cache" / "docker"
_names = itertools.count()


@contextmanager
def engine_lock() -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "tests.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sessions(update: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Read, change and write (under the lock) which test sessions use the engine, and whether one of them started it."""
    path = CACHE / "tests-sessions.json"
    try:
        users = json.loads(path.read_text())
    except (OSError, ValueError):
        users = {"pids": [], "started": False}
    users["pids"] = [pid for pid in users["pids"] if _alive(pid)]
    update(users)
    path.write_text(json.dumps(users))
    return users


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


@dataclasses.dataclass
class Rig:
    api: Any
    docker_host: str
    prometheus: PrometheusProcess
    sd_dir: Path
    test_id: str = ""

    def service(self, **settings: Any) -> deploy.RigService:
        labels = {**MANAGED, TEST_LABEL: self.test_id, **settings.pop("labels", {})}
        return deploy.RigService(name=f"rlscale-test-{os.getpid()}-{next(_names)}", port=free_port(), sd_dir=self.sd_dir,
                                 labels=labels, **settings)

    def config(self, **changes: Any) -> ControllerConfig:
        base = ControllerConfig(platform="swarm", docker_host=self.docker_host, interval_s=INTERVAL_S, api_timeout_s=3.0,
                                selector=f"rlscale.io/managed=true,{TEST_LABEL}={self.test_id}",
                                fail_static_after_api_failures=2,
                                prometheus=PrometheusSettings(url=self.prometheus.url, window_s=8, timeout_s=2.0))
        return dataclasses.replace(base, **changes)

    def controller(self, policy: Policy | str, api: Any = None, clock: Any = None, **changes: Any) -> Controller:
        """A controller on this test's services; a policy by name is loaded and checked as `controller run` does."""
        if isinstance(policy, str):
            return build_swarm(self.config(policy=policy, **changes), api or self.api, clock=clock)
        return build_swarm(self.config(**changes), api or self.api, clock=clock, policy=policy)

    def spec(self, name: str) -> dict[str, Any]:
        return self.api.inspect_service(name)

    def wait_for_metrics(self, name: str, timeout_s: float = 30.0) -> None:
        """Until Prometheus has two scrapes of every running replica's request counter (a rate exists)."""
        wait_until(lambda: len(self.prometheus.query(f'count_over_time(inference_requests_total{{service="{name}",code="200"}}[1m]) >= 2'))
                   >= len(deploy.running_tasks(self.api, name)) > 0, timeout_s, f"metrics of {name} in Prometheus")


@pytest.fixture(scope="session")
def engine() -> Iterator[Rig]:
    """The engine (started if need be, by the first session to come) and this session's Prometheus."""
    if find_prometheus() is None:
        pytest.fail("no Prometheus binary: run `bash .ci/prometheus.sh`")

    def join(users: dict[str, Any]) -> None:
        if not users["pids"]:
            users["started"] = not deploy.engine_running()
        users["pids"].append(os.getpid())

    with engine_lock():
        _sessions(join)
        docker_host = deploy.start_engine()  # idempotent: builds the image if its inputs changed
    api = engine_client(docker_host, 10)
    directory = Path(tempfile.mkdtemp(prefix="rlscale-rig-"))
    exporter = ContainerExporter(engine_client(docker_host, 10)).start()  # what cAdvisor would export
    prometheus = PrometheusProcess(directory / "prometheus", directory / "sd", containers=(exporter.target,))
    try:
        yield Rig(api, docker_host, prometheus, directory / "sd")
    finally:
        prometheus.stop()
        exporter.stop()
        with engine_lock():
            for service in api.services(filters={"name": f"rlscale-test-{os.getpid()}-"}):
                deploy.remove_service(api, service["Spec"]["Name"])
            api.close()
            users = _sessions(lambda users: users["pids"].remove(os.getpid()))
            if not users["pids"] and users["started"]:
                deploy.engine_script("stop")
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def rig(engine: Rig) -> Iterator[Rig]:
    """The engine to this test alone (the other swarm tests wait), with a label for its services."""
    with engine_lock():
        engine.test_id = f"{os.getpid()}-{next(_names)}"
        yield engine


@contextmanager
def running(rig: Rig, service: deploy.RigService) -> Iterator[deploy.RigService]:
    """The service, created, running and scraped; removed afterwards."""
    deploy.create_service(rig.api, service)
    try:
        deploy.wait_running(rig.api, service.name, service.replicas)
        rig.wait_for_metrics(service.name)
        yield service
    finally:
        deploy.remove_service(rig.api, service.name)


class MovableClock(RealClock):
    """Wall-clock time (the engine's timestamps are real) that a test can move on, e.g. past a cooldown."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class Background:
    """A load run in a thread; `report` once joined."""

    def __init__(self, port: int, rates: np.ndarray, **settings: Any) -> None:
        self.report: LoadReport | None = None
        self.seconds = len(rates)
        self.started = time.monotonic()  # the load's time 0, within a few milliseconds
        self.thread = threading.Thread(target=self._run, args=(port, rates), kwargs=settings, daemon=True)
        self.thread.start()

    def _run(self, port: int, rates: np.ndarray, **settings: Any) -> None:
        self.report = run_load("127.0.0.1", port, rates, **settings)

    def join(self) -> LoadReport:
        self.thread.join(timeout=self.seconds + 30)
        assert self.report is not None, "the load generator did not finish"
        return self.report


def docker_cli(rig: Rig, *args: str) -> None:
    """The `docker` command line against the rig's engine (what a person would type)."""
    subprocess.run(["docker", *args], env={"DOCKER_HOST": rig.docker_host, "PATH": "/usr/local/bin:/usr/bin:/bin"},
                   check=True, capture_output=True)

