"""Helpers for the controller's tests: a clock the test moves, small multi-service scenarios on the
emulator, a shared real Prometheus, the controller built as in a cluster, and one-loop steps."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import Any, Iterator

import pytest

from rlscale.agent.policy import Policy
from rlscale.controller.api_errors import CLIENT_ERRORS
from rlscale.controller.config import ORIGINAL_BOUNDS, ControllerConfig, LeaderSettings, PrometheusSettings
from rlscale.controller.loop import Controller
from rlscale.controller.main import build
from rlscale.env.scenario import Scenario, scenario_from_config
from rlscale.env.state import Decision, ServiceState
from rlscale.validation import Reader

from conftest import ONE_SERVICE, PROJECT_ROOT, merge
from emulator_fixtures import Cluster, client_for, running_cluster
from prometheus_server import PrometheusServer

NS = "default"
SERVICE = merge(ONE_SERVICE["services"][0], {
    "workload": {"kind": "step", "base_rps": 5, "step_rps": 5, "at_s": 0},
    "request": {"cpu_seconds": 0.05, "memory": "8Mi"},
    "replica": {"concurrency": 2, "base_memory": "100Mi", "startup_s": 2},
    "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
    "replicas": 2,
    "bounds": {"replicas": [1, 20]},
    "slo": {"quantile": 0.95, "latency_s": 0.5},
})


class FakeClock:
    """Time that moves only when told to (or when the code under test sleeps)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    def advance(self, seconds: float) -> None:
        self.t += seconds


class Fixed(Policy):
    """Always the same number of replicas, resources as they are."""

    name = "fixed"

    def __init__(self, replicas: int) -> None:
        self.replicas = replicas

    def decide(self, state: ServiceState) -> Decision:
        return Decision(self.replicas, state.cpu_request, state.cpu_limit, state.memory_request, state.memory_limit)


def scenario(*names: str, **service: Any) -> Scenario:
    """Copies of one small service, by name."""
    template = merge(SERVICE, service)
    data = merge(ONE_SERVICE, {"services": [dict(template, name=n) for n in names]})
    data["node_pools"] = [{"name": "pool", "nodes": 4, "cpu": 32, "memory": "128Gi"}]
    return scenario_from_config(Reader(data, "test-scenario"), PROJECT_ROOT)


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    """One real Prometheus for a test module; each cluster retargets it."""
    with PrometheusServer([], interval_s=0.5) as server:
        yield server


@contextmanager
def cluster_for(prometheus: PrometheusServer, *names: str, speed: float = 0.0, managed: tuple[str, ...] | None = None,
                **service: Any) -> Iterator[Cluster]:
    """An emulator with the services `names` (their HPAs labelled for rlscale), scraped by `prometheus`."""
    with running_cluster(scenario(*names, **service), speed=speed, duration_s=3600) as cluster:
        for name in names if managed is None else managed:
            patch_hpa(cluster, name, {"metadata": {"labels": {"rlscale.io/managed": "true"}}})
        prometheus.retarget([cluster.server.url.removeprefix("http://")])
        yield cluster


def this_cluster(cluster: Cluster) -> str:
    """The label matcher for the series scraped from this cluster (a module's Prometheus also holds earlier clusters')."""
    return f'instance="{cluster.server.url.removeprefix("http://")}"'


def patch_hpa(cluster: Cluster, name: str, body: dict[str, Any]) -> Any:
    """A write as a person (or GitOps) would make it: straight to the API, past any fault."""
    return cluster.api.patch("horizontalpodautoscalers", NS, name, body, "application/merge-patch+json")


def config_for(server: PrometheusServer, **changes: Any) -> ControllerConfig:
    base = ControllerConfig(
        namespaces=(NS,), interval_s=30.0, api_timeout_s=2.0, fail_static_after_api_failures=2,
        prometheus=PrometheusSettings(url=server.url, window_s=4, staleness_s=60.0, timeout_s=2.0),
        leader_election=LeaderSettings(enabled=False),
    )
    return dataclasses.replace(base, **changes)


def controller_for(cluster: Cluster, server: PrometheusServer, policy: Policy | None = None, clock: Any = None,
                   identity: str | None = None, **changes: Any) -> Controller:
    return build(config_for(server, **changes), client_for(cluster.server.url), policy=policy or Fixed(3),
                 clock=clock or FakeClock(), identity=identity)


def step(controller: Controller) -> None:
    """One loop on freshly listed caches (so the test never waits for a watch), its events sent. While the API
    fails, the caches stay as they were, as a broken watch leaves them."""
    try:
        controller.backend.caches.sync(force=True)
    except CLIENT_ERRORS:
        pass
    controller.step()
    controller.events.flush()


def failing(controller: Controller) -> dict[str, str]:
    """Service -> reason, as exported in rlscale_fail_static."""
    out = {}
    for line in controller.telemetry.exposition().decode().splitlines():
        if line.startswith("rlscale_fail_static{") and line.endswith(" 1.0"):
            out[line.split('service="')[1].split('"')[0]] = line.split('reason="')[1].split('"')[0]
    return out


def bounds(cluster: Cluster, name: str) -> tuple[int, int, str | None]:
    """An HPA's (min, max, saved original) straight from the emulator's store."""
    hpa = cluster.api.get("horizontalpodautoscalers", NS, name)
    return hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"], (hpa["metadata"].get("annotations") or {}).get(ORIGINAL_BOUNDS)


def events(cluster: Cluster, name: str) -> list[tuple[str, str]]:
    return [(e["reason"], e["message"]) for e in cluster.api.list("events", NS)["items"] if e["involvedObject"]["name"] == name]
