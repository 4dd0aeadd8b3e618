"""`KubernetesBackend`: the live cluster behind the `ClusterBackend` seam.

Services are the HPAs matching the configured label selector. All of them are observed at
once, from the Kubernetes API (HPAs, Deployments and pods, listed per namespace) and from
Prometheus (load, latency, CPU, throttling, memory, OOM kills, in grouped queries), into the
same `ServiceState` the simulator produces; decisions are applied through the `Actuator`. `LiveClusterEnv` wraps it in the
same gymnasium environment as the simulator.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping

from rlscale.controller.config import ANNOTATION_PREFIX, ORIGINAL_BOUNDS, ControllerConfig
from rlscale.controller.kube import Actuator, Clock, Target, with_retries
from rlscale.controller.metrics_source import MetricsProblem, Prometheus, ServiceMetrics, ServiceQuery, read_services
from rlscale.env.scenario import Prices, RewardWeights
from rlscale.env.state import Bounds, Decision, ServiceState
from rlscale.quantity import parse_quantity


@dataclass(frozen=True)
class LiveSpec:
    """What the reward needs of a live service."""

    name: str
    cpu_request: float
    memory_request: float
    slo_quantile: float
    slo_latency_s: float


@dataclass(frozen=True)
class LiveScenario:
    """The live cluster's prices and reward weights (the simulator's `Scenario` has more)."""

    name: str
    prices: Prices
    reward: RewardWeights


@dataclass
class LiveStats:
    """One interval of a live service, as much of `IntervalStats` as the reward reads."""

    seconds: int
    arrivals: float
    dropped: float
    cost: float
    oom_kills: int
    slow_fraction: float

    def fraction_slower_than(self, latency_s: float) -> float:
        return self.slow_fraction  # measured at the service's SLO target, the only threshold asked for


@dataclass(frozen=True)
class Managed:
    target: Target
    spec: LiveSpec
    bounds: Bounds
    original_bounds: tuple[int, int]


class KubernetesBackend:
    def __init__(self, config: ControllerConfig, autoscaling: Any, apps: Any, core: Any, prometheus: Prometheus,
                 actuator: Actuator, clock: Clock) -> None:
        self.config = config
        self.autoscaling, self.apps, self.core = autoscaling, apps, core
        self.prometheus, self.actuator, self.clock = prometheus, actuator, clock
        self.decision_interval_s = int(config.interval_s)
        self.scenario = LiveScenario("live", config.prices, RewardWeights())
        self.services: dict[str, Managed] = {}
        self._stats: dict[str, LiveStats] = {}
        self._hpas: dict[str, Any] = {}  # as listed by the last discovery
        self._deployments: dict[str, Any] = {}  # as listed by the last observation

    @property
    def managed(self) -> tuple[str, ...]:
        return tuple(self.services)

    def _call(self, action: Any) -> Any:
        return with_retries(action, self.clock, on_error=self.actuator.on_error)

    # -- discovery -------------------------------------------------------------------------------

    def discover(self) -> list[str]:
        """The HPAs to manage now (by label selector), with their targets, SLOs and bounds (two API calls)."""
        timeout = self.config.api_timeout_s
        hpas = self._call(lambda: self.autoscaling.list_namespaced_horizontal_pod_autoscaler(
            self.config.namespace, label_selector=self.config.selector, _request_timeout=timeout)).items
        deployments = {d.metadata.name: d for d in self._call(lambda: self.apps.list_namespaced_deployment(
            self.config.namespace, _request_timeout=timeout)).items}
        self._hpas = {hpa.metadata.name: hpa for hpa in hpas}
        self.services = {hpa.metadata.name: self._managed(hpa, deployments[hpa.spec.scale_target_ref.name])
                         for hpa in hpas if hpa.spec.scale_target_ref.name in deployments}
        return list(self.services)

    def _managed(self, hpa: Any, deployment: Any) -> Managed:
        name, namespace = hpa.metadata.name, hpa.metadata.namespace or self.config.namespace
        annotations = hpa.metadata.annotations or {}
        overrides = self.config.services.get(name)
        containers = deployment.spec.template.spec.containers
        container_name = annotations.get(ANNOTATION_PREFIX + "container") or containers[0].name
        container = next((c for c in containers if c.name == container_name), containers[0])
        cpu_request, cpu_limit, memory_request, memory_limit = container_resources(container)
        saved = annotations.get(ORIGINAL_BOUNDS)
        original = json.loads(saved) if saved else {"minReplicas": hpa.spec.min_replicas or 1, "maxReplicas": hpa.spec.max_replicas}
        original_bounds = (int(original["minReplicas"]), int(original["maxReplicas"]))

        def setting(field: str, key: str, parse: Any, default: Any) -> Any:
            value = getattr(overrides, field, None) if overrides else None
            if value is not None:
                return value
            text = annotations.get(ANNOTATION_PREFIX + key)
            return parse(text) if text is not None else default

        def pair(text: str) -> tuple[float, ...]:
            return tuple(parse_quantity(v) for v in text.split(","))

        cpu_range = setting("cpu_limit_range", "cpu-limit-range", pair, (cpu_limit, cpu_limit))
        memory_range = setting("memory_limit_range", "memory-limit-range", pair, (memory_limit, memory_limit))
        bounds = Bounds(
            min_replicas=setting("min_replicas", "min-replicas", int, original_bounds[0]),
            max_replicas=setting("max_replicas", "max-replicas", int, original_bounds[1]),
            min_cpu_limit=min(cpu_range), max_cpu_limit=max(cpu_range),
            min_memory_limit=min(memory_range), max_memory_limit=max(memory_range),
        )
        spec = LiveSpec(
            name=name, cpu_request=cpu_request, memory_request=memory_request,
            slo_quantile=setting("slo_quantile", "slo-quantile", float, self.config.default_slo_quantile),
            slo_latency_s=setting("slo_latency_s", "slo-latency-seconds", float, self.config.default_slo_latency_s),
        )
        return Managed(Target(namespace, name, deployment.metadata.name, container.name), spec, bounds, original_bounds)

    def specs(self) -> dict[str, LiveSpec]:
        return {name: managed.spec for name, managed in self.services.items()}

    # -- observing -------------------------------------------------------------------------------

    def reset(self, rng: Any = None) -> dict[str, ServiceState]:
        """Live clusters have no episodes: (re)discover the services and observe them."""
        self.discover()
        return self.observe()

    def observe(self) -> dict[str, ServiceState]:
        states, problems = self.observe_all()
        if problems:
            raise next(iter(problems.values()))
        return states

    def observe_all(self) -> tuple[dict[str, ServiceState], dict[str, MetricsProblem]]:
        """Every managed service's state now (two API calls, a handful of queries), and the ones that cannot be known."""
        timeout, namespace = self.config.api_timeout_s, self.config.namespace
        deployments = {d.metadata.name: d for d in self._call(lambda: self.apps.list_namespaced_deployment(
            namespace, _request_timeout=timeout)).items}
        pods = self._call(lambda: self.core.list_namespaced_pod(namespace, _request_timeout=timeout)).items
        self._deployments = deployments
        owned: dict[str, list[Any]] = {}
        for name, managed in self.services.items():
            deployment = deployments.get(managed.target.deployment)
            selector = (deployment.spec.selector.match_labels or {}) if deployment else {"": ""}
            owned[name] = [p for p in pods if selector.items() <= (p.metadata.labels or {}).items()]
        queries = [ServiceQuery(name, frozenset(p.metadata.name for p in owned[name]), managed.target.container,
                                managed.spec.slo_quantile, managed.spec.slo_latency_s) for name, managed in self.services.items()]
        metrics = read_services(self.prometheus, self.config.prometheus, namespace, queries)
        states: dict[str, ServiceState] = {}
        problems: dict[str, MetricsProblem] = {}
        for name, found in metrics.items():
            deployment = deployments.get(self.services[name].target.deployment)
            if isinstance(found, MetricsProblem):
                problems[name] = found
            elif deployment is None:
                problems[name] = MetricsProblem("TargetMissing", f"the Deployment of {name} is gone")
            else:
                states[name] = self._state(name, deployment, owned[name], found)
        return states, problems

    def _state(self, name: str, deployment: Any, pods: list[Any], metrics: ServiceMetrics) -> ServiceState:
        managed = self.services[name]
        target, spec = managed.target, managed.spec
        resources = _running_resources(pods, target.container) or container_resources(
            next(c for c in deployment.spec.template.spec.containers if c.name == target.container))
        ready = deployment.status.ready_replicas or 0
        desired = deployment.spec.replicas or 0
        self._record(name, metrics, desired, resources)
        now = self.clock.now()
        load = metrics.load_rps
        answered = max(load - metrics.error_rps, 0.0)
        slow = (metrics.slow_fraction * answered + metrics.error_rps) / load if load > 0 else 0.0
        return ServiceState(
            name=name, time_s=now, time_of_day_s=now % 86_400, load_rps=load,
            replicas_desired=desired, replicas_ready=ready, replicas_pending=max(0, (deployment.status.replicas or 0) - ready),
            cpu_request=resources[0], cpu_limit=resources[1], memory_request=resources[2], memory_limit=resources[3],
            cpu_usage=metrics.cpu_cores / ready if ready else 0.0,
            cpu_throttled_fraction=metrics.throttled_fraction, memory_working_set=metrics.memory_working_set,
            latency_quantile_s=metrics.latency_quantile_s, latency_mean_s=metrics.latency_mean_s,
            slo_latency_s=spec.slo_latency_s, slo_quantile=spec.slo_quantile, slo_violation_fraction=min(1.0, slow),
            drop_fraction=metrics.error_rps / load if load > 0 else 0.0, oom_kills=int(round(metrics.oom_kills)),
            cluster_cpu_headroom=metrics.cpu_headroom, cluster_memory_headroom=0.0, bounds=managed.bounds,
        )

    def _record(self, name: str, metrics: ServiceMetrics, replicas: int, resources: tuple[float, float, float, float]) -> None:
        seconds = self.decision_interval_s
        self._stats[name] = LiveStats(
            seconds=seconds, arrivals=metrics.load_rps * seconds, dropped=metrics.error_rps * seconds,
            cost=self.config.prices.per_second(resources[0] * replicas, resources[2] * replicas) * seconds,
            oom_kills=int(round(metrics.oom_kills)), slow_fraction=metrics.slow_fraction,
        )

    def stats(self, name: str) -> LiveStats:
        return self._stats[name]

    # -- acting ----------------------------------------------------------------------------------

    def apply(self, decisions: Mapping[str, Decision]) -> dict[str, Decision]:
        applied = {}
        for name, decision in decisions.items():
            managed = self.services[name]
            decision = decision.clipped(managed.bounds)
            self.apply_one(name, decision)
            applied[name] = decision
        return applied

    def apply_one(self, name: str, decision: Decision, current: ServiceState | None = None) -> list[str]:
        """Actuate one (already guarded) decision; what changed, for events and logs."""
        managed = self.services[name]
        target = managed.target
        changes = []
        if decision.replicas is None:
            if self.actuator.restore_bounds(target):
                changes.append("HPA bounds restored")
            if decision.hpa_target_utilization is not None and self.actuator.set_hpa_target(target, decision.hpa_target_utilization):
                changes.append(f"HPA target {decision.hpa_target_utilization}%")
        else:
            ceiling = max(decision.replicas, min(decision.replicas + self.config.headroom, managed.bounds.max_replicas))
            if self.actuator.set_bounds(target, decision.replicas, ceiling, known=self._hpas.get(name)):
                changes.append(f"HPA bounds [{decision.replicas}, {ceiling}]")
        resources = (decision.cpu_request, decision.cpu_limit, decision.memory_request, decision.memory_limit)
        if current is not None and resources != (current.cpu_request, current.cpu_limit, current.memory_request, current.memory_limit):
            how = self.actuator.set_resources(target, resources)
            changes.append(f"resources cpu {decision.cpu_request:.3g}/{decision.cpu_limit:.3g} cores, memory "
                           f"{decision.memory_request / 2**20:.0f}/{decision.memory_limit / 2**20:.0f} MiB ({how})")
        return changes

    def restore(self, name: str) -> bool:
        return self.actuator.restore_bounds(self.services[name].target)

    def rollout_in_progress(self, name: str) -> bool:
        """Whether the Deployment is still rolling out a template change (as last observed)."""
        deployment = self._deployments.get(self.services[name].target.deployment)
        if deployment is None:
            return False
        status, spec = deployment.status, deployment.spec
        return (status.observed_generation or 0) < (deployment.metadata.generation or 0) or (
            (status.updated_replicas or 0) < (spec.replicas or 0))

    def advance(self) -> None:
        self.clock.sleep(self.config.interval_s)

    def done(self) -> bool:
        return False


def container_resources(container: Any) -> tuple[float, float, float, float]:
    requests = (container.resources.requests if container.resources else None) or {}
    limits = (container.resources.limits if container.resources else None) or {}
    cpu_request = parse_quantity(requests.get("cpu", limits.get("cpu", "100m")))
    memory_request = parse_quantity(requests.get("memory", limits.get("memory", "128Mi")))
    return (cpu_request, parse_quantity(limits.get("cpu", cpu_request)), memory_request,
            parse_quantity(limits.get("memory", memory_request)))


def _running_resources(pods: list[Any], container: str) -> tuple[float, float, float, float] | None:
    """The resources most ready pods run with now (in-place resizes make them differ from the template)."""
    seen = Counter()
    for pod in pods:
        ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
        for c in pod.spec.containers:
            if c.name == container and ready:
                seen[container_resources(c)] += 1
    return seen.most_common(1)[0][0] if seen else None


class RealClock:
    """Wall-clock time for the controller in a cluster."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

