"""Helpers for the controller's tests: small multi-service scenarios on the emulator, a shared real
Prometheus, the controller built as in a cluster (by `rlscale.emulator.harness`, which the benches
share), and what the tests read back."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import pytest

from rlscale.agent.policy import Policy
from rlscale.controller.config import ORIGINAL_BOUNDS
from rlscale.controller.loop import Controller
from rlscale.emulator.harness import NS, controller_at
from rlscale.emulator.prometheus import PrometheusServer
from rlscale.emulator.small_scenarios import ONE_SERVICE, SERVICE, merge
from rlscale.env.scenario import Scenario, scenario_from_config
from rlscale.env.state import Decision, ServiceState
from rlscale.validation import Reader

from conftest import PROJECT_ROOT, start_prometheus
from emulator_fixtures import Cluster, running_cluster


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
    with start_prometheus([], interval_s=0.5) as server:
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


def controller_for(cluster: Cluster, server: PrometheusServer, policy: Policy | None = None, clock: Any = None,
                   identity: str | None = None, **changes: Any) -> Controller:
    return controller_at(cluster.server.url, server, policy or Fixed(3), clock=clock, identity=identity, **changes)


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
