"""The cluster simulator: services on nodes, driven by load, scaled by the HPA.

`Simulator` advances simulated time in whole seconds. Between events (pod start-ups and
restarts, in-place resizes, HPA syncs, OOM kills) the ready replicas of each service are
fixed, and `dynamics.run_span` computes a span in closed form (or second by second under
overload). At events the Kubernetes controllers act: the HPA (exact algorithm, every sync
period, on metrics-server samples that lag), the Deployment controller (scaling and rolling
updates), the scheduler (placement by requests, preemption by priority) and the kubelet
(start-up delay, OOM kills with CrashLoopBackOff, in-place resize).

All randomness (Poisson arrivals, OOM clocks, which pod an OOM hits) comes from the generator
given to the constructor. The simulator is also the state behind the Kubernetes-API
emulator, so its actuation methods mirror API objects: the HPA's min/max replicas, the
Deployment's replica count, and the pods' resources.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from rlscale.env import deployment
from rlscale.env.cluster import Node, Pod, bind, choose_node, choose_victims, resize_requests, unbind
from rlscale.env.dynamics import ReplicaModel, Span, replica_model, run_span
from rlscale.env.hpa import HorizontalPodAutoscaler, HpaDecision, HpaSpec
from rlscale.env.hpa_replicas import HpaMetricsError, PodInfo, PodMetric, resource_replicas
from rlscale.env.queueing import LatencyComponent, mixture_quantile, mixture_survival
from rlscale.env.scenario import Scenario, ServiceSpec
from rlscale.env.state import ServiceState
from rlscale.env.workloads import Workload

CRASH_BACKOFF_INITIAL_S = 10
CRASH_BACKOFF_MAX_S = 300
CRASH_BACKOFF_RESET_S = 600  # a container that ran this long without crashing starts its back-off anew
SCRAPES_KEPT = 8


@dataclass(slots=True)
class IntervalStats:
    """What one service did during the last `advance` call."""

    seconds: int = 0
    arrivals: float = 0.0
    served: float = 0.0
    dropped: float = 0.0
    backlog: float = 0.0
    cpu_core_seconds: float = 0.0  # used by ready replicas
    ready_replica_seconds: float = 0.0
    throttled_replica_seconds: float = 0.0
    working_set_byte_seconds: float = 0.0
    scheduled_replica_seconds: float = 0.0  # pods holding node resources (what costs)
    cpu_request_core_seconds: float = 0.0
    memory_request_byte_seconds: float = 0.0
    cost: float = 0.0
    oom_kills: int = 0
    preemptions: int = 0
    replica_changes: int = 0
    resource_changes: int = 0
    components: list[LatencyComponent] = field(default_factory=list)

    def latency_quantile(self, quantile: float, cap: float) -> float:
        if self.served + self.dropped <= 0:
            return 0.0
        return mixture_quantile(self.components, self.dropped, quantile, cap)

    def fraction_slower_than(self, latency_s: float) -> float:
        """Share of requests slower than `latency_s`, dropped ones included."""
        return mixture_survival(self.components, self.dropped, latency_s)

    @property
    def latency_mean(self) -> float:
        weight = sum(c.weight for c in self.components)
        return sum(c.weight * c.mean for c in self.components) / weight if weight > 0 else 0.0


def _cpu_rate(scrapes: list[tuple[float, float]], start: float, end: float) -> float | None:
    """Mean CPU cores between two metrics-server samples, None unless both exist."""
    at_start = at_end = None
    for time, cpu_seconds in scrapes:
        if time == start:
            at_start = cpu_seconds
        elif time == end:
            at_end = cpu_seconds
    if at_start is None or at_end is None:
        return None
    return max(0.0, (at_end - at_start) / (end - start))


@dataclass(frozen=True, slots=True)
class PlannedSpan:
    span: Span
    groups: list[tuple[Pod, int]]  # ready pods and their group in the span
    oom_at: int | None  # when an OOM kill ends the span early
    overload: bool  # the OOM comes from overload (every saturated replica over its limit)


@dataclass(slots=True)
class ServiceRuntime:
    """A service's mutable state: its Deployment, HPA, pods and queue."""

    index: int
    spec: ServiceSpec
    rates: np.ndarray  # mean requests/s per second of the run
    arrivals: np.ndarray  # Poisson draws around `rates`
    replicas: int  # the Deployment's spec.replicas
    revision: int  # the pod template's revision
    template: tuple[float, float, float, float]  # (cpu req, cpu lim, mem req, mem lim) of the template
    new_pod_resources: tuple[float, float, float, float]  # what new pods get (template, or the in-place target)
    hpa_spec: HpaSpec
    hpa: HorizontalPodAutoscaler
    pods: list[Pod] = field(default_factory=list)
    backlog: float = 0.0
    oom_clock: float = 1.0  # unit-exponential budget of OOM hazard left before the next kill
    serial: int = 0
    models: dict[tuple[float, float], ReplicaModel] = field(default_factory=dict)
    stats: IntervalStats = field(default_factory=IntervalStats)
    last_hpa_decision: HpaDecision | None = None

    def model(self, cpu_limit: float, memory_limit: float) -> ReplicaModel:
        key = (cpu_limit, memory_limit)
        found = self.models.get(key)
        if found is None:
            spec = self.spec
            found = self.models[key] = replica_model(
                cpu_limit,
                memory_limit,
                concurrency=spec.concurrency,
                cpu_per_request=spec.cpu_per_request,
                cores_per_request=spec.cores_per_request,
                memory_per_request=spec.memory_per_request,
                base_memory=spec.base_memory,
            )
        return found


class Simulator:
    """A simulated cluster running a scenario's services for `duration_s` seconds."""

    def __init__(
        self,
        scenario: Scenario,
        rng: np.random.Generator,
        *,
        duration_s: int | None = None,
        workloads: dict[str, Workload] | None = None,
    ) -> None:
        self.scenario = scenario
        self.rng = rng
        self.duration_s = int(duration_s if duration_s is not None else scenario.duration_s)
        self.now = 0
        self.nodes = [
            Node(f"{pool.name}-{i}", pool.name, pool.cpu, pool.memory)
            for pool in scenario.node_pools
            for i in range(pool.nodes)
        ]
        self.services: list[ServiceRuntime] = []
        for index, spec in enumerate(scenario.services):
            workload = (workloads or {}).get(spec.name, spec.workload)
            rates = np.maximum(workload.rates(self.duration_s, rng), 0.0)
            resources = (spec.cpu_request, spec.cpu_limit, spec.memory_request, spec.memory_limit)
            self.services.append(
                ServiceRuntime(
                    index=index,
                    spec=spec,
                    rates=rates,
                    arrivals=rng.poisson(rates).astype(np.float64),
                    replicas=spec.initial_replicas,
                    revision=1,
                    template=resources,
                    new_pod_resources=resources,
                    hpa_spec=spec.hpa,
                    hpa=HorizontalPodAutoscaler(),
                    oom_clock=float(rng.exponential()),
                )
            )
        self._by_name = {svc.spec.name: svc for svc in self.services}
        for svc in self.services:
            for _ in range(svc.replicas):
                self._new_pod(svc, created_at=-3600.0)
        self._schedule_pending()
        self._warm_up()

    def _warm_up(self) -> None:
        """Start as if the initial replicas had served the initial load for an hour.

        Scheduled initial pods are ready since long ago and metrics-server holds a history of
        their CPU at the first second's load, so the HPA's first syncs see real metrics.
        """
        resolution = self.scenario.timings.metrics_resolution_s
        for svc in self.services:
            scheduled = [p for p in svc.pods if p.node is not None]
            if not scheduled or svc.spec.base_memory > svc.spec.memory_limit:
                continue  # nothing runs, or the model never fits: the pods start (and crash) for real
            model = svc.model(svc.spec.cpu_limit, svc.spec.memory_limit)
            per_pod_rate = min(float(svc.rates[0]) / len(scheduled), model.capacity)
            usage = per_pod_rate * model.usable_cores / model.capacity
            for pod in scheduled:
                pod.start_time = pod.started_at = pod.ready_since = -3600.0
                pod.ready_at = None
                pod.cpu_seconds = usage * 3600.0
                pod.scrapes = [
                    (-k * resolution, pod.cpu_seconds - usage * k * resolution) for k in reversed(range(SCRAPES_KEPT))
                ]

    # ------------------------------------------------------------------------------------------
    # Reading

    def service(self, name: str) -> ServiceRuntime:
        return self._by_name[name]

    @property
    def time_left_s(self) -> int:
        return self.duration_s - self.now

    def state(self, name: str) -> ServiceState:
        """The service as observed at the end of the last interval."""
        svc = self._by_name[name]
        spec, stats = svc.spec, svc.stats
        seconds = max(stats.seconds, 1)
        ready_seconds = stats.ready_replica_seconds
        cpu_req, cpu_lim, mem_req, mem_lim = svc.new_pod_resources
        nodes = [n for n in self.nodes if spec.node_pool in (None, n.pool)]
        requests = stats.arrivals
        return ServiceState(
            name=name,
            time_s=float(self.now),
            time_of_day_s=float(self.now % 86_400),
            load_rps=stats.arrivals / seconds,
            replicas_desired=svc.replicas,
            replicas_ready=sum(1 for p in svc.pods if p.ready),
            replicas_pending=sum(1 for p in svc.pods if not p.ready),
            cpu_request=cpu_req,
            cpu_limit=cpu_lim,
            memory_request=mem_req,
            memory_limit=mem_lim,
            cpu_usage=stats.cpu_core_seconds / ready_seconds if ready_seconds else 0.0,
            cpu_throttled_fraction=stats.throttled_replica_seconds / ready_seconds if ready_seconds else 0.0,
            memory_working_set=stats.working_set_byte_seconds / ready_seconds if ready_seconds else 0.0,
            latency_quantile_s=stats.latency_quantile(spec.slo_quantile, spec.timeout_s),
            latency_mean_s=stats.latency_mean,
            slo_latency_s=spec.slo_latency_s,
            slo_quantile=spec.slo_quantile,
            slo_violation_fraction=stats.fraction_slower_than(spec.slo_latency_s) if requests else 0.0,
            drop_fraction=stats.dropped / requests if requests else 0.0,
            oom_kills=stats.oom_kills,
            cluster_cpu_headroom=sum(n.cpu - n.cpu_requested for n in nodes),
            cluster_memory_headroom=sum(n.memory - n.memory_requested for n in nodes),
            bounds=spec.bounds,
        )

    # ------------------------------------------------------------------------------------------
    # Acting (what the Kubernetes API lets a client change)

    def set_hpa_bounds(self, name: str, min_replicas: int, max_replicas: int) -> None:
        """Patch the HPA's minReplicas/maxReplicas (it acts on them at its next sync)."""
        if not 1 <= min_replicas <= max_replicas:
            raise ValueError(f"invalid HPA bounds [{min_replicas}, {max_replicas}] for {name}")
        svc = self._by_name[name]
        svc.hpa_spec = dataclasses.replace(svc.hpa_spec, min_replicas=min_replicas, max_replicas=max_replicas)

    def set_replicas(self, name: str, replicas: int) -> None:
        """Patch the Deployment's scale (the HPA, if active, may change it again at its next sync)."""
        if replicas < 0:
            raise ValueError(f"negative replicas for {name}")
        svc = self._by_name[name]
        if replicas != svc.replicas:
            svc.replicas = replicas
            svc.stats.replica_changes += 1
            self._reconcile_deployment(svc)
            self._schedule_pending()

    def set_resources(self, name: str, cpu_request: float, cpu_limit: float, memory_request: float, memory_limit: float) -> None:
        """Change the pods' resources: in place (pods/resize) or by a rolling update, per the service."""
        if not (0 < cpu_request <= cpu_limit and 0 < memory_request <= memory_limit):
            raise ValueError(f"invalid resources for {name}: requests must be positive and within limits")
        svc = self._by_name[name]
        target = (cpu_request, cpu_limit, memory_request, memory_limit)
        if target == svc.new_pod_resources:
            return
        svc.stats.resource_changes += 1
        svc.new_pod_resources = target
        if svc.spec.resize == "in_place":
            for pod in svc.pods:
                pod.resize_to = target
                pod.resize_at = self.now + self.scenario.timings.resize_delay_s
        else:
            svc.template = target
            svc.revision += 1
            self._reconcile_deployment(svc)
            self._schedule_pending()

    # ------------------------------------------------------------------------------------------
    # Time

    def advance(self, seconds: int) -> None:
        """Run `seconds` of simulated time; statistics then describe exactly this span."""
        end = self.now + int(seconds)
        if end > self.duration_s:
            raise ValueError(f"cannot advance past the end of the run ({self.duration_s} s)")
        for svc in self.services:
            svc.stats = IntervalStats()
        while self.now < end:
            until = min(end, self._next_event_time())
            plans = [self._plan_span(svc, self.now, until) for svc in self.services]
            oom_at = min((p.oom_at for p in plans if p.oom_at is not None), default=None)
            if oom_at is not None and oom_at < until:
                until = oom_at
                plans = [self._plan_span(svc, self.now, until) for svc in self.services]
            for svc, plan in zip(self.services, plans):
                self._commit_span(svc, plan, until - self.now)
            self.now = until
            for svc, plan in zip(self.services, plans):
                if plan.oom_at == until:
                    self._fire_oom(svc, plan)
            self._process_events()

    def _next_event_time(self) -> int:
        timings = self.scenario.timings
        upcoming = min(
            (self.now // period + 1) * period for period in (timings.hpa_sync_period_s, timings.metrics_resolution_s)
        )
        for svc in self.services:
            for pod in svc.pods:
                for t in (pod.ready_at if pod.ready_since is None else None, pod.restart_at, pod.resize_at):
                    if t is not None and self.now < t < upcoming:
                        upcoming = math.ceil(t)
        return upcoming

    # ------------------------------------------------------------------------------------------
    # Spans between events

    def _plan_span(self, svc: ServiceRuntime, start: int, end: int) -> PlannedSpan:
        """The span [start, end) for one service, and when (if) an OOM kill would cut it short."""
        models: list[ReplicaModel] = []
        counts: list[int] = []
        groups: list[tuple[Pod, int]] = []
        index_of: dict[ReplicaModel, int] = {}
        for pod in svc.pods:
            if pod.ready_since is None:
                continue
            model = svc.model(pod.cpu_limit, pod.memory_limit)
            g = index_of.get(model)
            if g is None:
                g = index_of[model] = len(models)
                models.append(model)
                counts.append(0)
            counts[g] += 1
            groups.append((pod, g))
        span = run_span(models, counts, svc.rates[start:end], svc.arrivals[start:end], svc.backlog, svc.spec.timeout_s)
        if span.overload_oom_at is not None:
            return PlannedSpan(span, groups, start + span.overload_oom_at + 1, overload=True)
        hazard = sum(h * n for h, n in zip(span.oom_hazard, counts))
        oom_at = start + max(1, math.ceil(svc.oom_clock / hazard)) if hazard > 0.0 else None
        return PlannedSpan(span, groups, oom_at, overload=False)

    def _commit_span(self, svc: ServiceRuntime, plan: PlannedSpan, seconds: int) -> None:
        span, stats = plan.span, svc.stats
        stats.seconds += seconds
        stats.arrivals += span.arrivals
        stats.served += span.served
        stats.dropped += span.dropped
        stats.components.extend(span.components)
        svc.backlog = span.backlog
        for pod, g in plan.groups:
            usage = span.cpu_per_replica[g]
            pod.cpu_seconds += usage * seconds
            stats.cpu_core_seconds += usage * seconds
            stats.throttled_replica_seconds += span.throttled_fraction[g] * seconds
            stats.working_set_byte_seconds += span.working_set[g] * seconds
            svc.oom_clock -= span.oom_hazard[g] * seconds
        stats.ready_replica_seconds += len(plan.groups) * seconds
        startup_cores = min(svc.spec.cores_per_request, svc.spec.cpu_limit)
        prices = self.scenario.prices
        for pod in svc.pods:
            if pod.node is None:
                continue
            if pod.started_at is not None and pod.ready_since is None:
                pod.cpu_seconds += min(startup_cores, pod.cpu_limit) * seconds  # loading the model
            stats.scheduled_replica_seconds += seconds
            stats.cpu_request_core_seconds += pod.cpu_request * seconds
            stats.memory_request_byte_seconds += pod.memory_request * seconds
            stats.cost += prices.per_second(pod.cpu_request, pod.memory_request) * seconds
        stats.backlog = svc.backlog

    def _fire_oom(self, svc: ServiceRuntime, plan: PlannedSpan) -> None:
        """Kill what the span's OOM clock says: one replica, or every saturated one under overload."""
        if plan.overload:
            doomed = [pod for pod, _ in plan.groups if self._oom_prone(svc, pod, overloaded=True)]
        else:
            prone = [(pod, plan.span.oom_hazard[g]) for pod, g in plan.groups if plan.span.oom_hazard[g] > 0.0]
            weights = np.array([h for _, h in prone])
            doomed = [prone[int(self.rng.choice(len(prone), p=weights / weights.sum()))][0]] if prone else []
        for pod in doomed:
            model = svc.model(pod.cpu_limit, pod.memory_limit)
            in_flight = float(model.workers if plan.overload else model.oom_above + 1)
            lost = min(in_flight, svc.stats.served)  # their in-flight requests are lost
            svc.stats.served -= lost
            svc.stats.dropped += lost
            self._crash(svc, pod, "OOMKilled")
        svc.oom_clock = float(self.rng.exponential())

    @staticmethod
    def _oom_prone(svc: ServiceRuntime, pod: Pod, overloaded: bool) -> bool:
        model = svc.model(pod.cpu_limit, pod.memory_limit)
        if model.oom_above is None:
            return False
        return model.oom_above < model.workers if overloaded else True

    def _crash(self, svc: ServiceRuntime, pod: Pod, reason: str) -> None:
        """The container dies; the kubelet restarts it after CrashLoopBackOff."""
        now = float(self.now)
        ran_for = now - (pod.started_at if pod.started_at is not None else now)
        streak = 0 if ran_for >= CRASH_BACKOFF_RESET_S else pod.restarts
        backoff = min(CRASH_BACKOFF_MAX_S, CRASH_BACKOFF_INITIAL_S * 2 ** min(streak, 10))
        if pod.ready_since is not None:
            pod.not_ready_since = now
        pod.ready_since = None
        pod.started_at = None
        pod.ready_at = None
        pod.restarts += 1
        pod.last_termination_reason = reason
        pod.restart_at = now + backoff
        svc.stats.oom_kills += reason == "OOMKilled"

    # ------------------------------------------------------------------------------------------
    # Events

    def _process_events(self) -> None:
        now = float(self.now)
        for svc in self.services:
            for pod in svc.pods:
                if pod.resize_at is not None and pod.resize_at <= now:
                    self._apply_resize(svc, pod)
                if pod.restart_at is not None and pod.restart_at <= now:
                    pod.restart_at = None
                    self._start_container(svc, pod, now)
                if pod.ready_since is None and pod.ready_at is not None and pod.ready_at <= now:
                    self._finish_startup(svc, pod, now)
        timings = self.scenario.timings
        if self.now % timings.metrics_resolution_s == 0:
            for svc in self.services:
                self._scrape(svc, now)
        if self.now % timings.hpa_sync_period_s == 0:
            for svc in self.services:
                self._sync_hpa(svc, now)
        for svc in self.services:
            self._reconcile_deployment(svc)
        self._schedule_pending()

    def _apply_resize(self, svc: ServiceRuntime, pod: Pod) -> None:
        cpu_req, cpu_lim, mem_req, mem_lim = pod.resize_to
        model = svc.model(pod.cpu_limit, pod.memory_limit)
        # the kubelet does not shrink memory below what the container uses; it retries later
        in_use = model.base_memory + model.memory_per_request * model.workers * 0.5
        if mem_lim < pod.memory_limit and pod.ready and mem_lim < in_use:
            pod.resize_at = float(self.now + self.scenario.timings.hpa_sync_period_s)
            return
        if not resize_requests(pod, cpu_req, mem_req):
            pod.resize_at = float(self.now + self.scenario.timings.hpa_sync_period_s)  # Deferred: no room
            return
        pod.cpu_limit, pod.memory_limit = cpu_lim, mem_lim
        pod.resize_at = pod.resize_to = None

    def _start_container(self, svc: ServiceRuntime, pod: Pod, now: float) -> None:
        if pod.start_time is None:
            pod.start_time = now  # the pod's status.startTime: its first start, kept across restarts
        pod.started_at = now
        pod.ready_at = now + svc.spec.startup_s

    def _finish_startup(self, svc: ServiceRuntime, pod: Pod, now: float) -> None:
        if svc.spec.base_memory > pod.memory_limit:
            self._crash(svc, pod, "OOMKilled")  # the model does not fit: killed while loading
            return
        pod.ready_since = now
        pod.ready_at = None

    def _scrape(self, svc: ServiceRuntime, now: float) -> None:
        """metrics-server: sample each running container's cumulative CPU."""
        for pod in svc.pods:
            if pod.started_at is None:
                pod.scrapes.clear()  # a restarted container starts a new counter series
                continue
            pod.scrapes.append((now, pod.cpu_seconds))
            if len(pod.scrapes) > SCRAPES_KEPT:
                del pod.scrapes[0]

    def _sync_hpa(self, svc: ServiceRuntime, now: float) -> None:
        """The HPA controller's sync of this service's HPA (reconcileAutoscaler)."""
        decision = svc.hpa.reconcile(now, svc.replicas, svc.hpa_spec, self._metric_replicas(svc, now))
        svc.last_hpa_decision = decision
        if decision.desired_replicas != svc.replicas:
            svc.replicas = decision.desired_replicas
            svc.stats.replica_changes += 1

    def _metric_replicas(self, svc: ServiceRuntime, now: float) -> int | HpaMetricsError:
        """The CPU metric's replica proposal from what the API and metrics-server show now."""
        timings = self.scenario.timings
        sampled_at = now - timings.metric_lag_s
        window = timings.metrics_resolution_s
        pods: list[PodInfo] = []
        metrics: list[PodMetric] = []
        for pod in svc.pods:
            scheduled = pod.node is not None
            transition = pod.ready_since if pod.ready else (pod.not_ready_since or pod.start_time)
            pods.append(
                PodInfo(
                    name=pod.name,
                    container_requests_milli=(("main", round(pod.cpu_request * 1000)),),
                    started_s_ago=None if pod.start_time is None else now - pod.start_time,
                    ready_transition_s_ago=None if transition is None or not scheduled else now - transition,
                    phase=pod.phase,
                    ready=pod.ready if scheduled else None,
                )
            )
            usage = _cpu_rate(pod.scrapes, sampled_at - window, sampled_at)
            if usage is not None:
                metrics.append(PodMetric(pod.name, (("main", round(usage * 1000)),), now - sampled_at, window))
        try:
            replicas, _, _ = resource_replicas(
                svc.replicas,
                svc.hpa_spec.target_cpu_utilization_percent,
                svc.hpa_spec.tolerances,
                pods,
                metrics,
                cpu_initialization_period_s=timings.cpu_initialization_period_s,
                delay_of_initial_readiness_status_s=timings.initial_readiness_delay_s,
            )
        except HpaMetricsError as error:
            return error
        return replicas

    def _reconcile_deployment(self, svc: ServiceRuntime) -> None:
        changes = deployment.reconcile(svc.replicas, svc.revision, svc.pods)
        for pod in changes.delete:
            self._delete_pod(svc, pod)
        for _ in range(changes.create):
            self._new_pod(svc, created_at=float(self.now))

    def _new_pod(self, svc: ServiceRuntime, created_at: float) -> Pod:
        svc.serial += 1
        cpu_req, cpu_lim, mem_req, mem_lim = svc.new_pod_resources
        pod = Pod(
            name=f"{svc.spec.name}-{svc.revision:x}-{svc.serial:05d}",
            service=svc.index,
            priority=svc.spec.priority,
            revision=svc.revision,
            cpu_request=cpu_req,
            cpu_limit=cpu_lim,
            memory_request=mem_req,
            memory_limit=mem_lim,
            created_at=created_at,
        )
        svc.pods.append(pod)
        return pod

    def _delete_pod(self, svc: ServiceRuntime, pod: Pod) -> None:
        unbind(pod)
        svc.pods.remove(pod)

    def _schedule_pending(self) -> None:
        """Bind unscheduled pods, highest priority first; preempt lower priorities if needed."""
        pending = [p for svc in self.services for p in svc.pods if p.node is None]
        if not pending:
            return
        pending.sort(key=lambda p: (-p.priority, p.created_at))
        for pod in pending:
            if pod.node is not None:
                continue
            svc = self.services[pod.service]
            allowed = [n for n in self.nodes if svc.spec.node_pool in (None, n.pool)]
            node = choose_node(pod, allowed)
            if node is None:
                preemption = choose_victims(pod, allowed)
                if preemption is None:
                    continue
                node, victims = preemption
                for victim in victims:
                    owner = self.services[victim.service]
                    owner.stats.preemptions += 1
                    self._delete_pod(owner, victim)
            bind(pod, node)
            self._start_container(svc, pod, float(self.now))
        # Preemption victims are recreated by their Deployments and wait (Pending) for room.
        for svc in self.services:
            if len(svc.pods) < svc.replicas:
                self._reconcile_deployment(svc)
