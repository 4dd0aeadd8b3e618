"""`SwarmBackend`: Docker Swarm behind the `ClusterBackend` seam, with the Engine API and Prometheus.

Services are the replicated Swarm services carrying the `selector` labels; per service, labels
set what the HPA annotations set on Kubernetes (`LABELS`). Each observation reads the services,
their tasks and the nodes in three Engine API calls, every running container's stats (in
parallel; `swarm_stats`), and the services' request rate and latency from Prometheus in a few
grouped queries, into the same `ServiceState` as the simulator:

| field | on Swarm |
| --- | --- |
| replicas_desired / ready / pending | the spec's replicas / running tasks / tasks meant to run that do not yet |
| cpu_request, cpu_limit, memory_* | the task template's reservations and limits (an unset reservation is its limit) |
| cpu_usage, cpu_throttled_fraction, memory_working_set | the containers' Engine API stats over the interval |
| load, latency, slow and dropped shares | Prometheus, the service's own metrics (the profile's queries) |
| oom_kills | tasks whose container the kernel OOM-killed since the last observation |
| cluster headroom | the ready nodes' CPUs and memory less the reservations of every running task |

A service with unusable labels, or whose containers were OOM-killed in the interval, is a
problem with a reason (it fails static: its original shape back) while the others go on. A
decision without replicas is the HPA's to make, and Swarm has none: rlscale's own
(`swarm_hpa.SwarmHpa`, the exact Kubernetes algorithm) makes it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from rlscale.controller.backend import LiveScenario, LiveSpec, LiveStats
from rlscale.controller.config import ANNOTATION_PREFIX, ControllerConfig
from rlscale.controller.kube import Clock
from rlscale.controller.metrics_source import MetricsProblem, Prometheus, histogram_figures, exponential_figures
from rlscale.controller import profiles
from rlscale.controller.swarm_actuator import Shape, SwarmActuator, SwarmTarget, docker_retries
from rlscale.controller.swarm_hpa import SwarmHpa, TaskReading, hpa_spec
from rlscale.controller.swarm_stats import ContainerStats, ContainerUsage, engine_time
from rlscale.env.hpa import HpaSpec
from rlscale.env.scenario import RewardWeights
from rlscale.env.state import Bounds, Decision, ServiceState
from rlscale.quantity import parse_quantity

LABELS = {
    "slo-latency-seconds": "the latency target (seconds)",
    "slo-quantile": "the latency quantile the target applies to (e.g. 0.95)",
    "min-replicas": "the fewest replicas rlscale (and its HPA) may choose (default 1)",
    "max-replicas": "the most replicas rlscale (and its HPA) may choose (required)",
    "cpu-limit-range": "'min,max' CPU limit rlscale may choose (default: the current limit only)",
    "memory-limit-range": "'min,max' memory limit rlscale may choose (default: the current limit only)",
    "hpa-cpu-utilization": "the HPA fallback's CPU target, percent of the reservation (default 80)",
    "hpa-scale-down-window-seconds": "the HPA fallback's scale-down stabilization window (default 300)",
}
DEFAULT_HPA_UTILIZATION = 80  # what `kubectl autoscale` sets when no target is given
RUNNING, DEAD = "running", {"failed", "rejected", "shutdown", "complete", "orphaned", "remove"}
REQUIRED = object()
UPDATING = {"updating", "rollback_started", "paused", "rollback_paused"}


@dataclass(frozen=True)
class SwarmManaged:
    """A managed service; one whose labels cannot be used has only its target (and `problem`)."""

    target: SwarmTarget
    spec: LiveSpec | None
    bounds: Bounds | None
    hpa: HpaSpec | None
    problem: MetricsProblem | None = None


@dataclass(frozen=True)
class AppMetrics:
    load_rps: float
    error_rps: float
    latency_quantile_s: float
    latency_mean_s: float
    slow_fraction: float


class SwarmBackend:
    def __init__(self, config: ControllerConfig, api: Any, prometheus: Prometheus, actuator: SwarmActuator, clock: Clock) -> None:
        self.config, self.api, self.prometheus, self.actuator, self.clock = config, api, prometheus, actuator, clock
        self.decision_interval_s = int(config.interval_s)
        self.scenario = LiveScenario("swarm", config.prices, RewardWeights())
        self.services: dict[str, SwarmManaged] = {}
        self.hpa = SwarmHpa()
        self.container_stats = ContainerStats(api)
        self._listed: dict[str, dict[str, Any]] = {}
        self._stats: dict[str, LiveStats] = {}
        self._dead_seen: set[str] | None = None  # finished tasks already looked at (None: not yet seeded)
        self._hpa_settings: dict[str, tuple[int | None, int | None]] = {}

    @property
    def managed(self) -> tuple[str, ...]:
        return tuple(self.services)

    def _call(self, action: Callable[[], Any]) -> Any:
        return docker_retries(action, self.clock, on_error=self.actuator.on_error)

    # -- discovery -------------------------------------------------------------------------------

    def discover(self) -> list[str]:
        """The services to manage now (by label), with their SLOs and bounds (one API call)."""
        filters = {"label": [part.strip() for part in self.config.selector.split(",") if part.strip()]}
        listed = self._call(lambda: self.api.services(filters=filters))
        self._listed = {s["Spec"]["Name"]: s for s in listed}
        self.services = {}
        for name, service in self._listed.items():
            try:
                self.services[name] = self._managed(service)
            except MetricsProblem as problem:
                self.services[name] = SwarmManaged(SwarmTarget(service["ID"], name), None, None, None, problem)
        self.hpa.forget(set(self._usable()))
        return list(self.services)

    def _usable(self) -> dict[str, SwarmManaged]:
        return {name: managed for name, managed in self.services.items() if managed.problem is None}

    def _managed(self, service: dict[str, Any]) -> SwarmManaged:
        spec = service["Spec"]
        name, labels = spec["Name"], spec.get("Labels") or {}
        if "Replicated" not in spec.get("Mode", {}):
            raise MetricsProblem("InvalidLabels", f"service {name} is not replicated: rlscale scales replicated services only")
        overrides = self.config.services.get(name)
        shape = Shape.of(spec)
        cpu_request, cpu_limit, memory_request, memory_limit = shape.resources()
        if cpu_limit <= 0 or memory_limit <= 0:
            raise MetricsProblem("InvalidLabels", f"service {name} needs a CPU and a memory limit or reservation to be scaled")

        def setting(field: str | None, key: str, parse: Callable[[str], Any], default: Any) -> Any:
            value = getattr(overrides, field, None) if overrides and field else None
            if value is not None:
                return value
            text = labels.get(ANNOTATION_PREFIX + key)
            if text is None:
                if default is REQUIRED:
                    raise MetricsProblem("InvalidLabels", f"service {name}: label {ANNOTATION_PREFIX}{key} is required ({LABELS[key]})")
                return default
            try:
                value = parse(text)
                numbers = value if isinstance(value, tuple) else (value,)
                if isinstance(value, tuple) and len(value) != 2:
                    raise ValueError("expected 'min,max'")
                if not all(math.isfinite(v) and v > 0 for v in numbers) and not (key.endswith("-seconds") and value == 0):
                    raise ValueError("must be a positive number")
            except ValueError as exc:
                raise MetricsProblem("InvalidLabels", f"service {name}: label {ANNOTATION_PREFIX}{key}={text!r}: {exc}") from None
            return value

        def pair(text: str) -> tuple[float, ...]:
            return tuple(parse_quantity(v) for v in text.split(","))

        min_replicas = setting("min_replicas", "min-replicas", int, 1)
        max_replicas = setting("max_replicas", "max-replicas", int, REQUIRED)
        if min_replicas > max_replicas:
            raise MetricsProblem("InvalidLabels", f"service {name}: min-replicas {min_replicas} exceeds max-replicas {max_replicas}")
        cpu_range = setting("cpu_limit_range", "cpu-limit-range", pair, (cpu_limit, cpu_limit))
        memory_range = setting("memory_limit_range", "memory-limit-range", pair, (memory_limit, memory_limit))
        quantile = setting("slo_quantile", "slo-quantile", float, self.config.default_slo_quantile)
        if not 0.5 <= quantile < 1:
            raise MetricsProblem("InvalidLabels", f"service {name}: label {ANNOTATION_PREFIX}slo-quantile={quantile}: must be in [0.5, 1)")
        bounds = Bounds(min_replicas=min_replicas, max_replicas=max_replicas, min_cpu_limit=min(cpu_range),
                        max_cpu_limit=max(cpu_range), min_memory_limit=min(memory_range), max_memory_limit=max(memory_range))
        target, window = self._hpa_settings.get(name, (None, None))
        hpa = hpa_spec(min_replicas, max_replicas,
                       target or setting(None, "hpa-cpu-utilization", int, DEFAULT_HPA_UTILIZATION),
                       window if window is not None else setting(None, "hpa-scale-down-window-seconds", int, None))
        live = LiveSpec(name=name, cpu_request=cpu_request, memory_request=memory_request, slo_quantile=quantile,
                        slo_latency_s=setting("slo_latency_s", "slo-latency-seconds", float, self.config.default_slo_latency_s))
        return SwarmManaged(SwarmTarget(service["ID"], name), live, bounds, hpa)

    def specs(self) -> dict[str, LiveSpec]:
        return {name: managed.spec for name, managed in self._usable().items() if managed.spec is not None}

    # -- observing -------------------------------------------------------------------------------

    def reset(self, rng: Any = None) -> dict[str, ServiceState]:
        self.discover()
        return self.observe()

    def observe(self) -> dict[str, ServiceState]:
        states, problems = self.observe_all()
        if problems:
            raise next(iter(problems.values()))
        return states

    def observe_all(self) -> tuple[dict[str, ServiceState], dict[str, MetricsProblem]]:
        """Every managed service's state now, and the ones that cannot be known (with a reason)."""
        usable = self._usable()
        ids = [m.target.service_id for m in usable.values()]
        tasks = self._call(lambda: self.api.tasks(filters={"service": ids})) if ids else []
        nodes = self._call(lambda: self.api.nodes())
        everything = self._call(lambda: self.api.tasks(filters={"desired-state": RUNNING}))
        by_service: dict[str, list[dict[str, Any]]] = {}
        for task in tasks:
            by_service.setdefault(task["ServiceID"], []).append(task)
        running = {t["ID"]: t for t in tasks if t["Status"]["State"] == RUNNING and t.get("DesiredState") == RUNNING}
        containers = {tid: t["Status"].get("ContainerStatus", {}).get("ContainerID", "") for tid, t in running.items()}
        usage = self._call(lambda: self.container_stats.read([c for c in containers.values() if c]))
        ooms = self._oom_kills(tasks)
        app = self._app_metrics()
        cpu_free, memory_free = _headroom(nodes, everything)
        states: dict[str, ServiceState] = {}
        problems = {name: m.problem for name, m in self.services.items() if m.problem is not None}
        now = self.clock.now()
        for name, managed in usable.items():
            mine = by_service.get(managed.target.service_id, [])
            try:
                if ooms.get(managed.target.service_id):
                    raise MetricsProblem("OOMKilled", f"{ooms[managed.target.service_id]} container(s) of {name} were OOM-killed "
                                                      "in the interval: its original shape is restored")
                if isinstance(app, MetricsProblem):
                    raise app
                service_usage = [usage.get(containers[t["ID"]]) for t in mine if t["ID"] in running]
                states[name] = self._state(name, now, mine, service_usage, app, cpu_free, memory_free, ooms.get(managed.target.service_id, 0))
            except MetricsProblem as problem:
                problems[name] = problem
            self._reconcile_hpa(name, now, mine, running, containers, usage)
        return states, problems

    def _oom_kills(self, tasks: list[dict[str, Any]]) -> dict[str, int]:
        """Per service ID: containers of finished tasks, not seen before, that the kernel OOM-killed."""
        finished = {t["ID"]: t for t in tasks if t["Status"]["State"] in DEAD or t.get("DesiredState") in DEAD}
        if self._dead_seen is None:  # kills before rlscale started are not this interval's
            self._dead_seen = set(finished)
            return {}
        kills: dict[str, int] = {}
        for task_id, task in finished.items():
            if task_id in self._dead_seen:
                continue
            container = task["Status"].get("ContainerStatus", {}).get("ContainerID")
            if not container or task["Status"].get("ContainerStatus", {}).get("ExitCode") != 137:
                if task["Status"]["State"] != RUNNING:
                    self._dead_seen.add(task_id)
                continue
            state = self._call(lambda: self._container_state(container))
            if state.get("Running"):
                continue  # shutting down: look again next time
            self._dead_seen.add(task_id)
            if state.get("OOMKilled"):
                kills[task["ServiceID"]] = kills.get(task["ServiceID"], 0) + 1
        self._dead_seen &= {t["ID"] for t in tasks}  # forget tasks the engine pruned
        return kills

    def _container_state(self, container: str) -> dict[str, Any]:
        import docker.errors

        try:
            return self.api.inspect_container(container)["State"]
        except docker.errors.NotFound:  # pruned with its task: nothing to tell
            return {}

    def _app_metrics(self) -> dict[str, AppMetrics] | MetricsProblem:
        """Each service's load and latency from Prometheus, a few grouped queries for all of them."""
        settings = self.config.prometheus
        profile = profiles.PROFILES[settings.profile]
        label = settings.app_label
        fill = {"app": settings.app_selector.format(namespace=self.config.namespace), "window": f"{settings.window_s}s",
                "by": f"by ({label})"}

        def by_label(promql: str) -> dict[str, float]:
            return {labels.get(label, ""): value for labels, value in self.prometheus.query(promql)}

        try:
            load = by_label(profile.requests.format(**fill))
            errors = by_label(profile.errors.format(**fill)) if profile.errors else {}
            if profile.latency_histogram is not None:
                buckets = self.prometheus.query(f"sum by ({label}, le) (rate({profile.latency_histogram}_bucket{{{fill['app']}}}[{fill['window']}]))")
                means: dict[str, float] = {}
            else:
                buckets, means = [], by_label(profile.latency_mean.format(**fill))  # type: ignore[union-attr]
        except MetricsProblem as problem:
            return problem
        out: dict[str, AppMetrics] = {}
        for name, managed in self._usable().items():
            if name not in load or managed.spec is None:
                continue
            spec = managed.spec
            if means:
                mean = means.get(name, 0.0)
                quantile, slow = exponential_figures(mean if math.isfinite(mean) else 0.0, spec.slo_quantile, spec.slo_latency_s)
            else:
                quantile, mean, slow = histogram_figures([(lb, v) for lb, v in buckets if lb.get(label) == name],
                                                         spec.slo_quantile, spec.slo_latency_s)
            error = errors.get(name, 0.0)
            out[name] = AppMetrics(load[name], error if math.isfinite(error) else 0.0, quantile, mean, slow)
        return out

    def _state(self, name: str, now: float, tasks: list[dict[str, Any]], usage: list[ContainerUsage | None],
               app: dict[str, AppMetrics], cpu_free: float, memory_free: float, oom_kills: int) -> ServiceState:
        managed = self.services[name]
        assert managed.spec is not None and managed.bounds is not None  # a usable service
        listed = self._listed[name]["Spec"]
        measured = [u for u in usage if u is not None]
        if not measured:
            raise MetricsProblem("MetricsMissing", f"no container of {name} has CPU stats yet")
        if name not in app:
            raise MetricsProblem("MetricsMissing", f"no request series for {name} in Prometheus")
        figures = [v for u in measured for v in (u.cpu_cores, u.memory_working_set, u.periods)]
        metrics = app[name]
        if not all(math.isfinite(v) for v in (*figures, metrics.load_rps, metrics.latency_quantile_s)):
            raise MetricsProblem("MetricsInvalid", f"a series of {name} is not a number")
        cpu_request, cpu_limit, memory_request, memory_limit = Shape.of(listed).resources()
        desired = Shape.of(listed).replicas
        ready = sum(1 for t in tasks if t["Status"]["State"] == RUNNING and t.get("DesiredState") == RUNNING)
        meant = sum(1 for t in tasks if t.get("DesiredState") == RUNNING)
        periods = sum(u.periods for u in measured)
        load = metrics.load_rps
        answered = max(load - metrics.error_rps, 0.0)
        slow = (metrics.slow_fraction * answered + metrics.error_rps) / load if load > 0 else 0.0
        self._stats[name] = LiveStats(
            seconds=self.decision_interval_s, arrivals=load * self.decision_interval_s, dropped=metrics.error_rps * self.decision_interval_s,
            cost=self.config.prices.per_second(cpu_request * desired, memory_request * desired) * self.decision_interval_s,
            oom_kills=oom_kills, slow_fraction=metrics.slow_fraction)
        return ServiceState(
            name=name, time_s=now, time_of_day_s=(now + time.localtime(now).tm_gmtoff) % 86_400, load_rps=load,
            replicas_desired=desired, replicas_ready=ready, replicas_pending=max(0, meant - ready),
            cpu_request=cpu_request, cpu_limit=cpu_limit, memory_request=memory_request, memory_limit=memory_limit,
            cpu_usage=sum(u.cpu_cores for u in measured) / len(measured),
            cpu_throttled_fraction=sum(u.throttled_periods for u in measured) / periods if periods > 0 else 0.0,
            memory_working_set=sum(u.memory_working_set for u in measured) / len(measured),
            latency_quantile_s=metrics.latency_quantile_s, latency_mean_s=metrics.latency_mean_s,
            slo_latency_s=managed.spec.slo_latency_s, slo_quantile=managed.spec.slo_quantile, slo_violation_fraction=min(1.0, slow),
            drop_fraction=metrics.error_rps / load if load > 0 else 0.0, oom_kills=oom_kills,
            cluster_cpu_headroom=cpu_free, cluster_memory_headroom=memory_free, bounds=managed.bounds,
        )

    def _reconcile_hpa(self, name: str, now: float, tasks: list[dict[str, Any]], running: dict[str, dict[str, Any]],
                       containers: dict[str, str], usage: Mapping[str, ContainerUsage | None]) -> None:
        managed = self.services[name]
        assert managed.hpa is not None  # a usable service
        request_milli = round(Shape.of(self._listed[name]["Spec"]).resources()[0] * 1000)
        readings = []
        for task in tasks:
            if task.get("DesiredState") != RUNNING:
                continue
            is_running = task["ID"] in running
            measured = usage.get(containers.get(task["ID"], "")) if is_running else None
            since = now - engine_time(task["Status"]["Timestamp"]) if is_running else None
            readings.append(TaskReading(is_running, since, request_milli,
                                        None if measured is None else round(measured.cpu_cores * 1000),
                                        measured.window_s if measured else 60.0))
        self.hpa.reconcile(name, now, Shape.of(self._listed[name]["Spec"]).replicas, managed.hpa, readings)

    def stats(self, name: str) -> LiveStats:
        return self._stats[name]

    # -- acting ----------------------------------------------------------------------------------

    def apply(self, decisions: Mapping[str, Decision]) -> dict[str, Decision]:
        applied = {}
        for name, decision in decisions.items():
            decision = decision.clipped(self.services[name].bounds)
            self.apply_one(name, decision)
            applied[name] = decision
        return applied

    def apply_one(self, name: str, decision: Decision, current: ServiceState | None = None) -> list[str]:
        """Actuate one (already guarded) decision; what changed, for the log."""
        managed = self.services[name]
        replicas, why = decision.replicas, ""
        if replicas is None or decision.hpa_floor:  # the HPA's call (above a floor): rlscale's own HPA, from this interval
            self._hpa_settings[name] = (decision.hpa_target_utilization, decision.hpa_scale_down_window_s)
            hpa = self.hpa.decisions.get(name)
            proposal = hpa.desired_replicas if hpa else Shape.of(self._listed[name]["Spec"]).replicas
            floor = replicas
            replicas = proposal if floor is None else min(max(floor, proposal), managed.bounds.max_replicas)
            why = f" (HPA: {hpa.rescale_reason or 'no change'}{f', floor {floor}' if floor is not None else ''})" if hpa else ""
        resources = (decision.cpu_request, decision.cpu_limit, decision.memory_request, decision.memory_limit)
        changes_resources = current is not None and resources != (current.cpu_request, current.cpu_limit,
                                                                   current.memory_request, current.memory_limit)
        outcome = self.actuator.set_shape(managed.target, replicas, resources if changes_resources else None)
        if outcome is None:
            return []
        if outcome == "adopted":
            return ["kept the replicas and resources someone else set (now the original shape)"]
        changes = [f"replicas {replicas}{why}"]
        if changes_resources:
            changes.append(f"resources cpu {decision.cpu_request:.3g}/{decision.cpu_limit:.3g} cores, memory "
                           f"{decision.memory_request / 2**20:.0f}/{decision.memory_limit / 2**20:.0f} MiB (rolling update)")
        return changes

    def restore(self, name: str) -> bool:
        return self.actuator.restore(self.services[name].target)

    def rollout_in_progress(self, name: str) -> bool:
        """Whether the service is still rolling out a task template change (as last listed)."""
        status = (self._listed.get(name) or {}).get("UpdateStatus") or {}
        return status.get("State") in UPDATING

    def advance(self) -> None:
        self.clock.sleep(self.config.interval_s)

    def done(self) -> bool:
        return False


def _headroom(nodes: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> tuple[float, float]:
    """CPUs and memory of the ready, active nodes less the reservations of the tasks meant to run on them."""
    usable = {n["ID"]: n["Description"]["Resources"] for n in nodes
              if n.get("Status", {}).get("State") == "ready" and n.get("Spec", {}).get("Availability") == "active"}
    cpu = sum(r.get("NanoCPUs", 0) for r in usable.values())
    memory = sum(r.get("MemoryBytes", 0) for r in usable.values())
    for task in tasks:
        if task.get("NodeID") in usable:
            reservations = (task["Spec"].get("Resources") or {}).get("Reservations") or {}
            cpu -= reservations.get("NanoCPUs", 0)
            memory -= reservations.get("MemoryBytes", 0)
    return cpu / 1e9, float(memory)
