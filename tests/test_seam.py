"""The seam: the live Kubernetes backend, reading the emulator over HTTP and through a real Prometheus, builds for
the same service at the same time the `ServiceState` the simulator holds, field by field (`env/state.py`).

The emulator's time stands still unless the test moves it: one simulated second per wall-clock second, so that
Prometheus' rates over its window (wall time) cover the same seconds as the simulator's states recorded meanwhile.
The reference for interval figures is the mean of those per-second states; the tolerances are the metric
pipeline's: Poisson noise over a few seconds, `rate()`'s extrapolation, the histogram's buckets.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import numpy as np
import pytest

from rlscale.controller.main import build
from rlscale.emulator.api import LATENCY_BUCKETS_S
from rlscale.emulator.harness import NS, client_for, config_for
from rlscale.emulator.small_scenarios import ONE_SERVICE, SERVICE, merge
from rlscale.env.scenario import scenario_from_config
from rlscale.env.state import ServiceState
from rlscale.validation import Reader

from conftest import PROJECT_ROOT, start_prometheus
from controller_fixtures import Fixed, patch_hpa
from emulator_fixtures import Cluster, running_cluster

pytestmark = pytest.mark.e2e
WINDOW_S = 8
WEB = merge(SERVICE, {
    "name": "web", "node_pool": "a", "workload": {"kind": "step", "base_rps": 40, "step_rps": 40, "at_s": 0},
    "request": {"cpu_seconds": 0.05, "memory": "8Mi"},  # 2 cores over 3 replicas at a 1-core limit: busy, throttled
    "replicas": 3, "bounds": {"replicas": [3, 3], "cpu_limit": ["100m", 2]}, "resize": "in_place",
})
BATCH = merge(SERVICE, {
    "name": "batch", "node_pool": "b", "workload": {"kind": "step", "base_rps": 10, "step_rps": 10, "at_s": 0},
    "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
    "replicas": 2, "bounds": {"replicas": [2, 2], "cpu_limit": ["100m", 1], "memory_limit": ["128Mi", "1Gi"]}, "resize": "in_place",
})
SCENARIO = scenario_from_config(Reader(merge(ONE_SERVICE, {
    "node_pools": [{"name": "a", "nodes": 2, "cpu": 8, "memory": "32Gi"}, {"name": "b", "nodes": 1, "cpu": 16, "memory": "64Gi"}],
    "services": [WEB, BATCH],
}), "seam"), PROJECT_ROOT)
ANNOTATIONS = {  # what the scenario says of each service, as a user tells it to rlscale
    "web": {"rlscale.io/cpu-limit-range": "100m,2", "rlscale.io/workers-cores": "2"},
    "batch": {"rlscale.io/cpu-limit-range": "100m,1", "rlscale.io/memory-limit-range": "128Mi,1Gi", "rlscale.io/workers-cores": "2"},
}


class EmulatorClock:
    """The controller's clock is the emulated cluster's: the wall time its objects and samples are stamped with."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def now(self) -> float:
        return self.cluster.api.now.timestamp()

    def sleep(self, seconds: float) -> None:
        raise AssertionError("the seam test never waits on the controller's clock")


def mean(field: str) -> Callable[[list[ServiceState]], float]:
    return lambda states: float(np.mean([getattr(s, field) for s in states]))


def last(field: str) -> Callable[[list[ServiceState]], Any]:
    return lambda states: getattr(states[-1], field)


def slow_share(states: list[ServiceState]) -> float:
    """Slow requests over the window: each second's share weighted by its requests."""
    loads = np.array([s.load_rps for s in states])
    return float(np.sum(loads * [s.slow_request_fraction for s in states]) / max(loads.sum(), 1e-9))


def latency_bucket(states: list[ServiceState]) -> tuple[float, float]:
    """The histogram bucket holding the simulated quantile (what `histogram_quantile` can resolve), a bucket's
    slack either side for the seconds the window mixes."""
    quantile = float(np.median([s.latency_quantile_s for s in states]))
    i = int(np.searchsorted(LATENCY_BUCKETS_S, quantile))
    return LATENCY_BUCKETS_S[max(i - 2, 0)] if i >= 2 else 0.0, LATENCY_BUCKETS_S[min(i + 1, len(LATENCY_BUCKETS_S) - 1)]


def within_bucket(live: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] <= live <= bounds[1]


def close(rel: float = 0.0, abs: float = 1e-9) -> Callable[[Any, Any], bool]:
    return lambda live, sim: live == pytest.approx(sim, rel=rel, abs=abs)


# field -> (the simulator's reference from its per-second states, how the live value must compare, why)
TOLERANCES: dict[str, tuple[Callable[[list[ServiceState]], Any], Callable[[Any, Any], bool]]] = {
    "name": (last("name"), lambda live, sim: live == f"{NS}/{sim}"),  # live keys are namespace/name
    "time_s": (last("time_s"), close(abs=1.0)),  # each backend's clock: here the emulator's start + the simulated time
    "time_of_day_s": (last("time_of_day_s"), close(abs=1.0)),  # the same wall clock, the emulator's
    "load_rps": (mean("load_rps"), close(rel=0.12)),  # Poisson arrivals, rate() over a few seconds
    "replicas_desired": (last("replicas_desired"), close()),
    "replicas_ready": (last("replicas_ready"), close()),
    "replicas_pending": (last("replicas_pending"), close()),
    "cpu_request": (last("cpu_request"), close(rel=1e-3)),  # quantities written in millicores
    "cpu_limit": (last("cpu_limit"), close(rel=1e-3)),
    "memory_request": (last("memory_request"), close(rel=1e-6)),
    "memory_limit": (last("memory_limit"), close(rel=1e-6)),
    "cpu_usage": (mean("cpu_usage"), close(rel=0.15)),
    "cpu_throttled_fraction": (mean("cpu_throttled_fraction"), close(abs=0.1)),
    "memory_working_set": (last("memory_working_set"), close(rel=0.1)),  # a gauge: its last sample
    "latency_quantile_s": (latency_bucket, within_bucket),
    "slo_latency_s": (last("slo_latency_s"), close()),
    "slo_quantile": (last("slo_quantile"), close()),
    "slow_request_fraction": (slow_share, close(abs=0.04)),  # the buckets around the SLO target
    "drop_fraction": (mean("drop_fraction"), close(abs=0.01)),
    "oom_kills": (last("oom_kills"), close()),
    "pool_cpu_headroom": (last("pool_cpu_headroom"), close(abs=1e-3)),  # kube-state-metrics: the same numbers
    "pool_memory_headroom": (last("pool_memory_headroom"), close(rel=1e-6)),
    "bounds": (last("bounds"), lambda live, sim: dataclasses.astuple(live) == pytest.approx(dataclasses.astuple(sim), rel=1e-3)),
    "in_place_resize": (last("in_place_resize"), close()),
    "workers_cores": (last("workers_cores"), close()),
}


def test_every_field_has_a_tolerance() -> None:
    assert set(TOLERANCES) == {f.name for f in dataclasses.fields(ServiceState)}


def test_the_live_backend_builds_the_simulators_state() -> None:
    with running_cluster(SCENARIO, speed=0.0, duration_s=3600) as cluster, \
            start_prometheus([cluster.server.url.removeprefix("http://")], interval_s=0.5) as prometheus:
        for name, annotations in ANNOTATIONS.items():
            patch_hpa(cluster, name, {"metadata": {"labels": {"rlscale.io/managed": "true"},
                                                   "annotations": {"rlscale.io/slo-latency-seconds": "0.5", **annotations}}})
        with cluster.api.lock:  # batch resized in place: its pods run with other resources than its template
            cluster.api.sim.set_resources("batch", 0.3, 0.6, 160 * 2**20, 300 * 2**20)
        cluster.api.advance(60)  # every pod started and ready, the resize applied
        assert cluster.apps.read_namespaced_deployment("batch", NS).spec.template.spec.containers[0].resources.limits["cpu"] == "500m"
        prometheus.wait_for_series('container_cpu_usage_seconds_total{pod=~"web-.*"}')
        states: dict[str, list[ServiceState]] = {name: [] for name in ANNOTATIONS}
        started = time.monotonic()
        for second in range(1, WINDOW_S + 5):  # one simulated second per wall second, past one window
            time.sleep(max(0.0, started + second - time.monotonic()))
            cluster.api.advance(1)
            with cluster.api.lock:
                for name in states:
                    states[name].append(cluster.api.sim.state(name))
        config = config_for(prometheus, prometheus=dataclasses.replace(config_for(prometheus).prometheus, window_s=WINDOW_S))
        backend = build(config, client_for(cluster.server.url), policy=Fixed(3), clock=EmulatorClock(cluster)).backend
        live = backend.observe()
        assert set(live) == {f"{NS}/{name}" for name in states}
        assert live[f"{NS}/web"].pool_cpu_headroom != live[f"{NS}/batch"].pool_cpu_headroom  # per pool, not the cluster
        for name, seconds in states.items():
            window = [dataclasses.replace(s, time_s=cluster.api.base.timestamp() + s.time_s) for s in seconds[-WINDOW_S:]]
            state = live[f"{NS}/{name}"]
            for field, (reference, agrees) in TOLERANCES.items():
                expected = reference(window)
                assert agrees(getattr(state, field), expected), f"{name}.{field}: live {getattr(state, field)!r}, simulated {expected!r}"
