"""The controller's soak: many loops against an emulator (by URL) and a real Prometheus, with random faults
(API 5xx, timeouts, 409s, throttling, Prometheus down, NaN and stale metrics, human edits, a policy answering
nonsense), checking after every loop that no HPA has bounds outside its original or the service's rlscale bounds,
and at the end that every HPA is restored. Used by tests/test_controller_soak.py (short) and bench/soak.py (long)."""

from __future__ import annotations

import json
import math
import random
import resource
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

import kubernetes

from rlscale.agent.policy import Policy
from rlscale.controller.config import ORIGINAL_BOUNDS
from rlscale.env.state import Decision, ServiceState

from controller_fixtures import NS, FakeClock, controller_for, step
from emulator_fixtures import client_for

RLSCALE_BOUNDS = (2, 12)  # set by annotations on every other service
FAULTS: dict[str, dict[str, Any]] = {
    "none": {}, "api-5xx": {"error_rate": 0.5}, "timeouts": {"timeout_rate": 0.3, "timeout_s": 0.3}, "conflicts": {"conflict_rate": 0.5},
    "throttled": {"throttle_rate": 0.3, "retry_after_s": 1}, "nan": {"nan_metrics": True}, "stale": {"freeze_metrics": True},
    "prometheus-down": {}, "human-edit": {}, "policy-nonsense": {},
}
CLEAR = {"error_rate": 0.0, "timeout_rate": 0.0, "conflict_rate": 0.0, "throttle_rate": 0.0, "nan_metrics": False, "freeze_metrics": False}


class RandomPolicy(Policy):
    """Replicas anywhere in 1..30 (often outside the bounds: the guard must keep them in), sometimes none, sometimes NaN."""

    name = "random"

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.nonsense = rng, False

    def decide(self, state: ServiceState) -> Decision:
        if self.nonsense:
            return Decision(3, state.cpu_request, math.nan, state.memory_request, state.memory_limit)
        replicas = None if self.rng.random() < 0.1 else self.rng.randint(1, 30)
        return Decision(replicas, state.cpu_request, state.cpu_limit, state.memory_request, state.memory_limit)


@dataclass
class SoakReport:
    loops: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    not_restored: list[str] = field(default_factory=list)
    rss_mb: list[tuple[int, float]] = field(default_factory=list)  # (loop, RSS in MB)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def set_faults(url: str, faults: dict[str, Any]) -> None:
    request = urllib.request.Request(f"{url}/_emulator/faults", data=json.dumps(faults).encode(), method="PUT")
    urllib.request.urlopen(request, timeout=10).read()


def run_soak(url: str, prometheus: Any, names: tuple[str, ...], loops: int, seed: int = 0,
             progress: Callable[[int, SoakReport], None] | None = None) -> SoakReport:
    rng, report = random.Random(seed), SoakReport()
    api = kubernetes.client.AutoscalingV2Api(client_for(url))
    for i, name in enumerate(names):
        annotations = {"rlscale.io/min-replicas": str(RLSCALE_BOUNDS[0]), "rlscale.io/max-replicas": str(RLSCALE_BOUNDS[1])} if i % 2 else {}
        api.patch_namespaced_horizontal_pod_autoscaler(name, NS, {"metadata": {"labels": {"rlscale.io/managed": "true"},
                                                                                "annotations": annotations}})
    originals = {n: (1, 20) for n in names}
    policy = RandomPolicy(rng)
    clock = FakeClock()
    controller = controller_for(_Cluster(url), prometheus, policy, clock=clock, api_timeout_s=0.25, human_edit_cooldown_s=120.0)
    good_url = controller.backend.prometheus.url
    for loop in range(loops):
        fault = rng.choice(list(FAULTS))
        report.faults[fault] = report.faults.get(fault, 0) + 1
        if fault == "human-edit":
            name = rng.choice(names)
            low = rng.randint(1, 6)
            wanted = (low, rng.randint(low, 40))
            hpa = api.read_namespaced_horizontal_pod_autoscaler(name, NS)
            if wanted != (hpa.spec.min_replicas, hpa.spec.max_replicas):  # bounds it already has are no edit (nor is the API's answer)
                originals[name] = wanted
                api.patch_namespaced_horizontal_pod_autoscaler(name, NS, {"spec": {"minReplicas": wanted[0], "maxReplicas": wanted[1]}})
        set_faults(url, FAULTS[fault])
        controller.backend.prometheus.url = "http://127.0.0.1:9" if fault == "prometheus-down" else good_url
        policy.nonsense = fault == "policy-nonsense"
        step(controller)  # nothing may escape
        set_faults(url, CLEAR)
        clock.advance(30.0)
        for hpa in api.list_namespaced_horizontal_pod_autoscaler(NS).items:
            bounds = (hpa.spec.min_replicas, hpa.spec.max_replicas)
            original = originals[hpa.metadata.name]
            inside = [original, RLSCALE_BOUNDS if names.index(hpa.metadata.name) % 2 else original]
            if bounds != original and not any(low <= bounds[0] <= bounds[1] <= high for low, high in inside):
                report.violations.append(f"loop {loop}: {hpa.metadata.name} {bounds} outside {inside}")
        report.loops = loop + 1
        if progress and (loop + 1) % 100 == 0:
            report.rss_mb.append((loop + 1, rss_mb()))
            progress(loop + 1, report)
    controller.backend.prometheus.url = good_url
    controller.stop.set()
    controller.shutdown()
    for hpa in api.list_namespaced_horizontal_pod_autoscaler(NS).items:
        if (hpa.spec.min_replicas, hpa.spec.max_replicas) != originals[hpa.metadata.name] or ORIGINAL_BOUNDS in (hpa.metadata.annotations or {}):
            report.not_restored.append(f"{hpa.metadata.name}: {(hpa.spec.min_replicas, hpa.spec.max_replicas)} "
                                       f"(original {originals[hpa.metadata.name]})")
    report.rss_mb.append((report.loops, rss_mb()))
    return report


@dataclass
class _Cluster:
    """What `controller_for` needs of a cluster: its URL."""

    url: str

    @property
    def server(self) -> "_Cluster":
        return self


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
