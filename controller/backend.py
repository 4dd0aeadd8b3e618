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

import json
from typing import Any

from rlscale.controller.actuator import Actuator
from rlscale.controller.annotations import InvalidAnnotation, original_setting
from rlscale.controller.api_errors import ApiFailure, CLIENT_ERRORS, failure, with_retries
from rlscale.controller.caches import Caches
from rlscale.controller.clock import Clock
from rlscale.controller.config import ORIGINAL_BOUNDS, ControllerConfig
from rlscale.controller.guard import resources_of, same_resources
from rlscale.controller.discovery import Managed, Scale, describe_setting, pods_by_deployment, resolve, service_key, split_selected
from rlscale.controller.live import LiveBackend, LiveSpec, local_time_of_day
from rlscale.controller.metrics_source import AppQuery, ServiceMetrics, ServiceQuery, read_services
from rlscale.controller.ownership import Setting, own, pin_patch, remembered_write, restore_patch
from rlscale.controller.problems import ServiceProblem
from rlscale.controller.prometheus import Prometheus
from rlscale.controller.rest import Rest
from rlscale.controller.views import HpaView
from rlscale.env.state import Decision, ServiceState


class KubernetesBackend(LiveBackend):
    fallback = "the HPA is in charge"

    def __init__(self, config: ControllerConfig, rest: Rest, caches: Caches, prometheus: Prometheus, actuator: Actuator,
                 clock: Clock) -> None:
        super().__init__(config, clock, "live")
        self.rest, self.caches, self.prometheus, self.actuator = rest, caches, prometheus, actuator
        self.services: dict[str, Managed] = {}
        self.problem_hpas: dict[str, HpaView] = {}  # the HPAs of the services with problems
        self.orphans: dict[str, HpaView] = {}
        self.scale_reads = 0

    # -- discovery -------------------------------------------------------------------------------

    def discover(self) -> list[str]:
        """The services to manage now, from the caches (listed first if they are not yet); problems aside."""
        if not self.caches.synced:
            try:
                self.caches.sync()
            except CLIENT_ERRORS as error:
                raise failure(error) from None
        now = self.clock.now()
        managed, orphans = split_selected(self.caches.hpas.items(), self.config.selector, lambda hpa: hpa.meta.labels,
                                          lambda hpa: ORIGINAL_BOUNDS in hpa.meta.annotations)
        self.orphans = {service_key(hpa): hpa for hpa in orphans}
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

    def spec(self, key: str) -> LiveSpec:
        m = self.services[key]
        return LiveSpec(key, m.resources[0], m.resources[2], m.settings.slo_quantile, m.settings.slo_latency_s,
                        m.settings.workers_cores)

    # -- observing -------------------------------------------------------------------------------

    def sync(self) -> None:
        self.caches.sync()

    def start(self) -> None:
        self.caches.start()

    def stop(self) -> None:
        self.caches.stop()

    def observe_all(self) -> tuple[dict[str, ServiceState], dict[str, ServiceProblem]]:
        """Every managed service's state now (from the caches and a handful of queries), and the ones that cannot be known."""
        queries = [ServiceQuery(AppQuery(key, (m.hpa.meta.namespace, m.hpa.meta.name), m.settings.slo_quantile, m.settings.slo_latency_s),
                                m.hpa.meta.namespace, frozenset(p.meta.name for p in m.pods), frozenset(p.meta.name for p in m.ready_pods),
                                m.container) for key, m in self.services.items()]
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
        app = metrics.app
        self._record(managed.key, app, desired, resources, int(round(metrics.oom_kills)))
        now = self.clock.now()
        return ServiceState(
            name=managed.key, time_s=now, time_of_day_s=local_time_of_day(now), load_rps=app.load_rps,
            replicas_desired=desired, replicas_ready=ready, replicas_pending=max(0, len(managed.pods) - ready),
            cpu_request=resources[0], cpu_limit=resources[1], memory_request=resources[2], memory_limit=resources[3],
            cpu_usage=metrics.cpu_cores / ready if ready else 0.0,
            cpu_throttled_fraction=metrics.throttled_fraction, memory_working_set=metrics.memory_working_set,
            latency_quantile_s=app.latency_quantile_s, latency_mean_s=app.latency_mean_s,
            slo_latency_s=managed.settings.slo_latency_s, slo_quantile=managed.settings.slo_quantile,
            slo_violation_fraction=app.slo_violation_fraction, drop_fraction=app.drop_fraction,
            oom_kills=int(round(metrics.oom_kills)), cluster_cpu_headroom=metrics.cpu_headroom, cluster_memory_headroom=0.0,
            bounds=managed.bounds, in_place_resize=self.actuator.resize_supported is not False,
        )

    def rollout_in_progress(self, key: str) -> bool:
        """Whether the target is still rolling out a template change (as cached)."""
        deployment = self.services[key].deployment
        return deployment is not None and (deployment.observed_generation < deployment.generation
                                           or deployment.updated_replicas < deployment.replicas)

    # -- acting ----------------------------------------------------------------------------------

    def apply_one(self, key: str, decision: Decision, current: ServiceState | None = None) -> list[str]:
        """Actuate one (already guarded) decision through the HPA, writing only what changes; what changed.

        Replicas are pinned (`headroom` above them), or with `hpa_floor` the HPA's minimum below the
        service's upper bound; without replicas the HPA has its original bounds. The CPU target is the
        decision's, else the original one."""
        managed = self.services[key]
        original = managed.ownership.original
        target = original[2] if decision.hpa_target_utilization is None or managed.hpa.cpu_fixed else decision.hpa_target_utilization
        if decision.replicas is None:
            wanted: Setting = (original[0], original[1], target)
        elif decision.hpa_floor:
            wanted = (decision.replicas, max(decision.replicas, managed.bounds.max_replicas), target)
        else:
            wanted = (decision.replicas, max(decision.replicas, min(decision.replicas + self.config.headroom, managed.bounds.max_replicas)),
                      target)
        changes = []
        if wanted == original:
            if self.restore(key):
                changes.append("HPA restored")
        elif self._pin(managed, wanted):
            changes.append(describe_setting(wanted))
        if current is not None and not same_resources(decision, current):
            how = self.actuator.set_resources(managed.container, list(managed.pods), managed.deployment, resources_of(decision))
            changes.append(f"resources cpu {decision.cpu_request:.3g}/{decision.cpu_limit:.3g} cores, memory "
                           f"{decision.memory_request / 2**20:.0f}/{decision.memory_limit / 2**20:.0f} MiB ({how})")
        return changes

    def _pin(self, managed: Managed, wanted: Setting) -> bool:
        hpa = managed.hpa
        body = pin_patch(managed.current, managed.saved, managed.ownership.original, wanted, hpa.meta.resource_version,
                         json.loads(hpa.metrics))
        return body is not None and self._write(managed.key, hpa, body, wanted, pinned=True)

    def _restorable(self, key: str) -> HpaView | None:
        managed = self.services.get(key)
        return managed.hpa if managed else self.problem_hpas.get(key)

    def _everything(self) -> list[tuple[str, str, bool, HpaView]]:
        return [(service_key(hpa), hpa.meta.uid, ORIGINAL_BOUNDS in hpa.meta.annotations, hpa) for hpa in self.caches.hpas.items()]

    def _read_again(self, hpa: HpaView) -> HpaView:
        return self.actuator.read_hpa(hpa)

    def _restore(self, hpa: HpaView) -> bool:
        key = service_key(hpa)
        try:
            saved = original_setting(hpa.meta.annotations, hpa.cpu_target)
        except InvalidAnnotation:
            return False
        ownership = own(hpa.meta.uid, hpa.setting, saved, self.memory.get(key), self.clock.now(), self.config.human_edit_cooldown_s)
        self.memory[key] = ownership.memory
        body = restore_patch(hpa.setting, saved is not None, ownership.original, hpa.meta.resource_version, json.loads(hpa.metrics))
        return body is not None and self._write(key, hpa, body, ownership.original, pinned=False)

    def _write(self, key: str, hpa: HpaView, body: dict[str, Any], setting: Setting, *, pinned: bool) -> bool:
        remembered_write(self.memory, key, setting, pinned, lambda: self.actuator.patch_hpa(hpa, body))
        return True
