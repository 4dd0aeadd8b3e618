"""`KubernetesBackend`: the live cluster behind the `ClusterBackend` seam.

Services are the HPAs matching the configured label selector in the managed namespaces,
keyed `namespace/name`. Each loop reads them from the caches (no API reads when nothing
changed; only targets that are not Deployments are read through `/scale`) and from
Prometheus (a handful of grouped queries for all services) into the same `ServiceState`
the simulator produces, or into the `ServiceProblem` that keeps one service unknown.
Decisions are applied through the `Actuator`, only where something changes, with the
ownership rules of `ownership.py`. `LiveClusterEnv` wraps it in the simulator's environment.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping

from rlscale.controller.actuator import Actuator, NotLeading
from rlscale.controller.annotations import InvalidAnnotation, original_bounds
from rlscale.controller.api_errors import ApiFailure, CLIENT_ERRORS, failure, with_retries
from rlscale.controller.caches import Caches
from rlscale.controller.clock import Clock
from rlscale.controller.config import ORIGINAL_BOUNDS, ControllerConfig
from rlscale.controller.guard import resources_of, same_resources
from rlscale.controller.discovery import Managed, Scale, pods_by_deployment, resolve, service_key, split_hpas
from rlscale.controller.metrics_source import ServiceMetrics, ServiceQuery, read_services
from rlscale.controller.ownership import Memory, own, pin_patch, restore_patch
from rlscale.controller.problems import ServiceProblem
from rlscale.controller.prometheus import Prometheus
from rlscale.controller.rest import Rest
from rlscale.controller.views import HpaView
from rlscale.env.scenario import Prices, RewardWeights
from rlscale.env.state import Decision, ServiceState


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


class KubernetesBackend:
    def __init__(self, config: ControllerConfig, rest: Rest, caches: Caches, prometheus: Prometheus, actuator: Actuator,
                 clock: Clock) -> None:
        self.config, self.rest = config, rest
        self.caches, self.prometheus, self.actuator, self.clock = caches, prometheus, actuator, clock
        self.decision_interval_s = int(config.interval_s)
        self.scenario = LiveScenario("live", config.prices, RewardWeights())
        self.services: dict[str, Managed] = {}
        self.problems: dict[str, ServiceProblem] = {}  # services that cannot be managed now, and why
        self.problem_hpas: dict[str, HpaView] = {}  # the HPAs of the services with problems
        self.orphans: list[HpaView] = []  # no longer selected, still carrying rlscale's saved bounds
        self.memory: dict[str, Memory] = {}
        self.scale_reads = 0
        self._stats: dict[str, LiveStats] = {}

    @property
    def managed(self) -> tuple[str, ...]:
        return tuple(self.services)

    # -- discovery -------------------------------------------------------------------------------

    def discover(self) -> list[str]:
        """The services to manage now, from the caches (listed first if they are not yet); problems aside."""
        if not self.caches.synced:
            try:
                self.caches.sync()
            except CLIENT_ERRORS as error:
                raise failure(error) from None
        now = self.clock.now()
        managed, self.orphans = split_hpas(self.caches.hpas.items(), self.config.selector, ORIGINAL_BOUNDS)
        by_deployment = pods_by_deployment(self.caches.pods.items())
        pods = self.caches.pods.items
        services, problems, problem_hpas = {}, {}, {}
        for hpa in managed:
            key = service_key(hpa)
            try:
                found = resolve(hpa, self.config, self.caches.deployments.get, by_deployment,
                                lambda ns: [p for p in pods() if p.meta.namespace == ns], self._read_scale, self.memory.get(key), now)
            except ServiceProblem as problem:
                problems[key], problem_hpas[key] = problem, hpa
                continue
            services[key] = found
            self.memory[key] = found.ownership.memory
        self.services, self.problems, self.problem_hpas = services, problems, problem_hpas
        return list(services)

    def _read_scale(self, hpa: HpaView) -> Scale:
        """A target's /scale (kinds other than Deployment): the one read per service per loop they cost."""
        group, _, version = hpa.target_api_version.rpartition("/")
        name, namespace, kind = hpa.target_name, hpa.meta.namespace, hpa.target_kind
        root = f"/apis/{group}/{version}" if group else f"/api/{version}"
        path = f"{root}/namespaces/{namespace}/{kind.lower()}s/{name}/scale"  # the plural as the API names its kinds
        self.scale_reads += 1
        try:
            response = with_retries(lambda: self.rest.call("GET", path, timeout=self.config.api_timeout_s), self.clock,
                                    on_error=self.actuator.on_error)
            scale = json.loads(response.data)
        except ApiFailure as found:
            if found.status == 404:
                raise ServiceProblem("TargetMissing", f"{service_key(hpa)}: {kind} {name!r} has no /scale here ({found.detail})") from None
            raise ServiceProblem("ApiErrors", f"{service_key(hpa)}: reading the /scale of {kind} {name!r}: {found}") from None
        except ValueError:
            raise ServiceProblem("TargetInvalid", f"{service_key(hpa)}: the /scale of {kind} {name!r} is not JSON") from None
        return Scale(int((scale.get("spec") or {}).get("replicas") or 0), str((scale.get("status") or {}).get("selector") or ""))

    def specs(self) -> dict[str, LiveSpec]:
        return {key: LiveSpec(key, m.resources[0], m.resources[2], m.settings.slo_quantile, m.settings.slo_latency_s)
                for key, m in self.services.items()}

    # -- observing -------------------------------------------------------------------------------

    def reset(self, rng: Any = None) -> dict[str, ServiceState]:
        """Live clusters have no episodes: (re)discover the services and observe them."""
        return self.observe()

    def observe(self) -> dict[str, ServiceState]:
        """The seam's observe (for `LiveClusterEnv`): rediscover from the caches, then read; any problem raises."""
        self.discover()
        states, problems = self.observe_all()
        if problems:
            raise next(iter(problems.values()))
        return states

    def observe_all(self) -> tuple[dict[str, ServiceState], dict[str, ServiceProblem]]:
        """Every managed service's state now (from the caches and a handful of queries), and the ones that cannot be known."""
        queries = [ServiceQuery(key, m.hpa.meta.namespace, m.hpa.meta.name, frozenset(p.meta.name for p in m.pods),
                                frozenset(p.meta.name for p in m.ready_pods), m.container, m.settings.slo_quantile,
                                m.settings.slo_latency_s) for key, m in self.services.items()]
        metrics = read_services(self.prometheus, self.config.prometheus, self.config.namespaces, queries)
        states: dict[str, ServiceState] = {}
        problems = dict(self.problems)
        for key, found in metrics.items():
            if isinstance(found, ServiceProblem):
                problems[key] = found
            else:
                states[key] = self._state(self.services[key], found)
        return states, problems

    def _state(self, managed: Managed, metrics: ServiceMetrics) -> ServiceState:
        resources = managed.resources
        ready = len(managed.ready_pods)
        desired = managed.replicas
        self._record(managed.key, metrics, desired, resources)
        now = self.clock.now()
        load = metrics.load_rps
        answered = max(load - metrics.error_rps, 0.0)
        slow = (metrics.slow_fraction * answered + metrics.error_rps) / load if load > 0 else 0.0
        return ServiceState(
            name=managed.key, time_s=now, time_of_day_s=now % 86_400, load_rps=load,
            replicas_desired=desired, replicas_ready=ready, replicas_pending=max(0, len(managed.pods) - ready),
            cpu_request=resources[0], cpu_limit=resources[1], memory_request=resources[2], memory_limit=resources[3],
            cpu_usage=metrics.cpu_cores / ready if ready else 0.0,
            cpu_throttled_fraction=metrics.throttled_fraction, memory_working_set=metrics.memory_working_set,
            latency_quantile_s=metrics.latency_quantile_s, latency_mean_s=metrics.latency_mean_s,
            slo_latency_s=managed.settings.slo_latency_s, slo_quantile=managed.settings.slo_quantile,
            slo_violation_fraction=min(1.0, slow), drop_fraction=metrics.error_rps / load if load > 0 else 0.0,
            oom_kills=int(round(metrics.oom_kills)), cluster_cpu_headroom=metrics.cpu_headroom, cluster_memory_headroom=0.0,
            bounds=managed.bounds,
        )

    def _record(self, key: str, metrics: ServiceMetrics, replicas: int, resources: tuple[float, float, float, float]) -> None:
        seconds = self.decision_interval_s
        self._stats[key] = LiveStats(
            seconds=seconds, arrivals=metrics.load_rps * seconds, dropped=metrics.error_rps * seconds,
            cost=self.config.prices.per_second(resources[0] * replicas, resources[2] * replicas) * seconds,
            oom_kills=int(round(metrics.oom_kills)), slow_fraction=metrics.slow_fraction,
        )

    def stats(self, name: str) -> LiveStats:
        return self._stats[name]

    def rollout_in_progress(self, key: str) -> bool:
        """Whether the target is still rolling out a template change (as cached)."""
        deployment = self.services[key].deployment
        return deployment is not None and (deployment.observed_generation < deployment.generation
                                           or deployment.updated_replicas < deployment.replicas)

    # -- acting ----------------------------------------------------------------------------------

    def apply(self, decisions: Mapping[str, Decision]) -> dict[str, Decision]:
        applied = {}
        for key, decision in decisions.items():
            decision = decision.clipped(self.services[key].bounds)
            self.apply_one(key, decision)
            applied[key] = decision
        return applied

    def apply_one(self, key: str, decision: Decision, current: ServiceState | None = None) -> list[str]:
        """Actuate one (already guarded) decision, writing only what changes; what changed, for events and logs."""
        managed = self.services[key]
        changes = []
        if decision.replicas is None:
            if self.restore(key):
                changes.append("HPA bounds restored")
            if decision.hpa_target_utilization is not None and self.actuator.set_hpa_target(managed.hpa, decision.hpa_target_utilization):
                changes.append(f"HPA target {decision.hpa_target_utilization}%")
        else:
            ceiling = max(decision.replicas, min(decision.replicas + self.config.headroom, managed.bounds.max_replicas))
            if self._pin(managed, (decision.replicas, ceiling)):
                changes.append(f"HPA bounds [{decision.replicas}, {ceiling}]")
        if current is not None and not same_resources(decision, current):
            how = self.actuator.set_resources(managed.container, list(managed.pods), managed.deployment, resources_of(decision))
            changes.append(f"resources cpu {decision.cpu_request:.3g}/{decision.cpu_limit:.3g} cores, memory "
                           f"{decision.memory_request / 2**20:.0f}/{decision.memory_limit / 2**20:.0f} MiB ({how})")
        return changes

    def _pin(self, managed: Managed, bounds: tuple[int, int]) -> bool:
        body = pin_patch(managed.current, managed.saved, managed.ownership.original, bounds, managed.hpa.meta.resource_version)
        return body is not None and self._write_bounds(managed.key, managed.hpa, body, bounds, pinned=True)

    def restore(self, key: str) -> bool:
        """Give a service's HPA its original bounds back (and drop the annotation); True if that took a write."""
        managed = self.services.get(key)
        hpa = managed.hpa if managed else self.problem_hpas.get(key)
        return hpa is not None and self.restore_hpa(hpa)

    def restore_hpa(self, hpa: HpaView, *, again: bool = True) -> bool:
        """Restore one HPA (managed, failing, or no longer selected) by the ownership rules; True if that took a write.
        After a conflict the rules are applied once more to the HPA as it is now (restoring is always safe to
        retry: a person's edit is kept by the rules). An HPA whose saved bounds do not parse is left as it is:
        there is nothing trustworthy to restore."""
        try:
            return self._restore_hpa(hpa)
        except ApiFailure as failure:
            if failure.kind != "conflict" or not again:
                raise
            return self.restore_hpa(self.actuator.read_hpa(hpa), again=False)

    def _restore_hpa(self, hpa: HpaView) -> bool:
        key = service_key(hpa)
        try:
            saved = original_bounds(hpa.meta.annotations)
        except InvalidAnnotation:
            return False
        current = (hpa.min_replicas, hpa.max_replicas)
        ownership = own(hpa.meta.uid, current, saved, self.memory.get(key), self.clock.now(), self.config.human_edit_cooldown_s)
        self.memory[key] = ownership.memory
        body = restore_patch(current, saved is not None, ownership.original, hpa.meta.resource_version)
        return body is not None and self._write_bounds(key, hpa, body, ownership.original, pinned=False)

    def _write_bounds(self, key: str, hpa: HpaView, body: dict[str, Any], bounds: tuple[int, int], *, pinned: bool) -> bool:
        memory = self.memory.get(key)
        if memory is not None:
            self.memory[key] = dataclasses.replace(memory, attempted=bounds)
        self.actuator.patch_hpa(hpa, body)
        if memory is not None:
            self.memory[key] = dataclasses.replace(self.memory[key], applied=bounds if pinned else None)
        return True

    def restore_all(self) -> list[str]:
        """Restore every HPA that carries rlscale's saved bounds, selected or not, and every one rlscale pinned
        whatever its annotations now (shutdown); the keys that failed."""
        failed = []
        for hpa in self.caches.hpas.items():
            memory = self.memory.get(service_key(hpa))
            pinned = memory is not None and memory.uid == hpa.meta.uid and memory.applied is not None
            if ORIGINAL_BOUNDS not in hpa.meta.annotations and not pinned:
                continue
            try:
                self.restore_hpa(hpa)
            except (ApiFailure, NotLeading):
                failed.append(service_key(hpa))
        return failed

    def advance(self) -> None:
        self.clock.sleep(self.config.interval_s)

    def done(self) -> bool:
        return False
