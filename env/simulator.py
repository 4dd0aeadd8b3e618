"""The cluster simulator: services on nodes, driven by load, scaled by the HPA.

`Simulator` advances simulated time in whole seconds. Between events (pod start-ups and
restarts, in-place resizes, metric samples, HPA syncs, OOM kills) the ready replicas of each
service are fixed, and `dynamics.run_span` computes the span in closed form (second by second
under overload). At events the Kubernetes controllers act: metrics-server samples, the HPA
(the exact algorithm, every sync period, on lagging samples), the Deployment controller
(scaling and rolling updates), the scheduler (placement by requests, preemption by priority)
and the kubelet (start-up delay, OOM kills with CrashLoopBackOff, in-place resize).

All randomness (Poisson arrivals, OOM clocks, which pod an OOM hits) comes from the generator
given to the constructor. The simulator is also the state behind the Kubernetes-API emulator,
so its actuation methods mirror API objects: the HPA's min/max replicas, the Deployment's
replica count, and the pods' resources.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from rlscale.env import deployment, kubelet
from rlscale.env.cluster import Node, Pod, bind, choose_node, choose_victims, resize_requests, set_cpu_limit, unbind
from rlscale.env.contention import CpuClaim, effective_cpu
from rlscale.env.dynamics import ReplicaModel, Span, run_span
from rlscale.env.hpa import HpaSpec
from rlscale.env.hpa_behavior import SCALE_UP_PRESETS, Behavior, ScalingRules
from rlscale.env.hpa_replicas import HpaMetricsError
from rlscale.env.kpa import TICK_S as KPA_TICK_S, KpaSettings, KpaState, kpa_step
from rlscale.env.metrics_server import SAMPLES_KEPT, metric_replicas, scrape
from rlscale.env.runtime import IntervalStats, ServiceRuntime
from rlscale.env.scenario import Scenario
from rlscale.env.state import Resources, ServiceState, most_common_resources, same_resources
from rlscale.env.workloads import Workload, start_time_of_day

PEAK_BLOCK_S = 15  # block size of the precomputed per-block peak rates
SQUEEZE_STEP = 0.99  # squeezed CPU is rounded to this geometric grid of the limit (bounded model cache)
WARM_START_S = 3600.0  # the initial replicas have been ready this long when the run starts


@dataclass(slots=True)
class _NodeLayout:
    """A contended node's pods grouped for the contention model, valid while `key` holds."""

    key: tuple
    services: tuple[int, ...]
    groups: list[list[Pod]]
    claims: list[CpuClaim] | None = None


@dataclass(slots=True)
class PlannedSpan:
    span: Span
    oom_at: int | None  # when an OOM kill ends the span early
    overload: bool  # the OOM comes from overload (every saturated replica over its limit)


class Simulator:
    """A simulated cluster running a scenario's services for `duration_s` seconds."""

    def __init__(
        self,
        scenario: Scenario,
        rng: np.random.Generator,
        *,
        duration_s: int | None = None,
        workloads: dict[str, Workload] | None = None,
        start_time_of_day_s: float | None = None,
    ) -> None:
        """`start_time_of_day_s`: the local wall-clock time of day at which the run starts, for every service
        (the emulator's clock); None: each service's own workload's (`start_time_of_day`)."""
        self.scenario = scenario
        self.timings = scenario.timings
        self.rng = rng
        self.duration_s = int(duration_s if duration_s is not None else scenario.duration_s)
        self.now = 0
        self.nodes = [
            Node(f"{pool.name}-{i}", pool.name, pool.cpu, pool.memory)
            for pool in scenario.node_pools
            for i in range(pool.nodes)
        ]
        self.services: list[ServiceRuntime] = []
        self._day_starts: list[float] = []  # per service: its wall clock's time of day at t = 0
        self._peaks: list[np.ndarray] = []
        for index, spec in enumerate(scenario.services):
            workload = (workloads or {}).get(spec.name, spec.workload)
            self._day_starts.append(start_time_of_day(workload) if start_time_of_day_s is None else start_time_of_day_s)
            rates = np.maximum(workload.rates(self.duration_s, rng), 0.0)
            resources = (spec.cpu_request, spec.cpu_limit, spec.memory_request, spec.memory_limit)
            svc = ServiceRuntime(
                index=index,
                spec=spec,
                rates=rates,
                arrivals=rng.poisson(rates).astype(np.float64),
                replicas=spec.initial_replicas,
                template=resources,
                new_pod_resources=resources,
                hpa_spec=spec.hpa,
                oom_clock=float(rng.exponential()),
                cfs_period_s=scenario.timings.cfs_period_ms / 1000.0,
            )
            self.services.append(svc)
            padded = np.pad(rates, (0, -len(rates) % PEAK_BLOCK_S))
            self._peaks.append(padded.reshape(-1, PEAK_BLOCK_S).max(axis=1))
            for _ in range(svc.replicas):
                self._new_pod(svc, created_at=-WARM_START_S)
        self._by_name = {svc.spec.name: svc for svc in self.services}
        self._layouts: dict[str, _NodeLayout] = {}
        self._schedule_pending()
        self._warm_up()

    def _warm_up(self) -> None:
        """Start as if the initial replicas had served the first second's load for an hour.

        Scheduled initial pods are ready since long ago and metrics-server holds a history of
        their CPU, so the HPA's first syncs see real metrics. Pods whose model does not fit in
        their memory limit start for real (and crash).
        """
        resolution = self.timings.metrics_resolution_s
        for svc in self.services:
            scheduled = [p for p in svc.pods if p.node is not None]
            if not scheduled or svc.spec.base_memory > svc.spec.memory_limit:
                continue
            model = svc.model(svc.spec.cpu_limit, svc.spec.memory_limit)
            per_pod_rate = min(float(svc.rates[0]) / len(scheduled), model.capacity)
            usage = per_pod_rate * model.usable_cores / model.capacity
            for pod in scheduled:
                pod.start_time = pod.started_at = pod.ready_since = -WARM_START_S
                pod.ready_at = None
                pod.cpu_seconds = usage * WARM_START_S
                for k in reversed(range(SAMPLES_KEPT)):
                    pod.scrapes[float(-k * resolution)] = pod.cpu_seconds - usage * k * resolution
            svc.changed()

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
        spec, stats, view = svc.spec, svc.stats, svc.view
        seconds = max(stats.seconds, 1)
        ready_seconds = stats.ready_replica_seconds
        ready = [Resources(p.cpu_request, p.cpu_limit, p.memory_request, p.memory_limit) for p, _ in view.ready]
        cpu_req, cpu_lim, mem_req, mem_lim = most_common_resources(ready, Resources(*svc.template))
        nodes = [n for n in self.nodes if spec.node_pool in (None, n.pool)]
        requests = stats.arrivals
        return ServiceState(
            name=name,
            time_s=float(self.now),
            time_of_day_s=float((self._day_starts[svc.index] + self.now) % 86_400),
            load_rps=requests / seconds,
            replicas_desired=svc.replicas,
            replicas_ready=len(view.ready),
            replicas_pending=len(svc.pods) - len(view.ready),
            cpu_request=cpu_req,
            cpu_limit=cpu_lim,
            memory_request=mem_req,
            memory_limit=mem_lim,
            cpu_usage=stats.cpu_core_seconds / ready_seconds if ready_seconds else 0.0,
            cpu_throttled_fraction=stats.throttled_replica_seconds / ready_seconds if ready_seconds else 0.0,
            memory_working_set=stats.working_set_byte_seconds / ready_seconds if ready_seconds else 0.0,
            latency_quantile_s=stats.latency_quantile(spec.slo_quantile, spec.timeout_s),
            slo_latency_s=spec.slo_latency_s,
            slo_quantile=spec.slo_quantile,
            slow_request_fraction=stats.fraction_slower_than(spec.slo_latency_s) if requests else 0.0,
            drop_fraction=stats.dropped / requests if requests else 0.0,
            oom_kills=stats.oom_kills,
            pool_cpu_headroom=sum(n.cpu - n.cpu_requested for n in nodes),
            pool_memory_headroom=sum(n.memory - n.memory_requested for n in nodes),
            bounds=spec.bounds,
            in_place_resize=spec.resize == "in_place",
            workers_cores=spec.workers_cores,
        )

    # ------------------------------------------------------------------------------------------
    # Acting (what the Kubernetes API lets a client change)

    def set_hpa_bounds(self, name: str, min_replicas: int, max_replicas: int) -> None:
        """Patch the HPA's minReplicas/maxReplicas (it acts on them at its next sync)."""
        if not 1 <= min_replicas <= max_replicas:
            raise ValueError(f"invalid HPA bounds [{min_replicas}, {max_replicas}] for {name}")
        svc = self._by_name[name]
        self.set_hpa_spec(name, dataclasses.replace(svc.hpa_spec, min_replicas=min_replicas, max_replicas=max_replicas))

    def set_hpa_spec(self, name: str, spec: HpaSpec) -> None:
        """Replace the HPA's spec (bounds, target, behavior); it acts on it at its next sync."""
        self._by_name[name].hpa_spec = spec

    def set_hpa_target(self, name: str, target_utilization: int, scale_down_window_s: int | None = None,
                       scale_up: str | None = None, tolerance: float | None = None) -> None:
        """Patch the HPA's CPU target and, if given, its scale-down window, scale-up behavior and tolerance.

        A window is set the way a manifest sets it: ``behavior.scaleDown.stabilizationWindowSeconds``;
        a scale-up preset replaces ``behavior.scaleUp`` (`hpa_behavior.SCALE_UP_PRESETS`); the
        tolerance is the per-HPA ``tolerance`` of both directions. What is not given is kept.
        """
        svc = self._by_name[name]
        spec = svc.hpa_spec
        behavior = spec.behavior
        if scale_down_window_s is not None or scale_up is not None:
            down = behavior.scale_down if behavior and behavior.scale_down else ScalingRules()
            if scale_down_window_s is not None:
                down = dataclasses.replace(down, stabilization_window_seconds=scale_down_window_s)
            up = SCALE_UP_PRESETS[scale_up] if scale_up is not None else (behavior.scale_up if behavior else None)
            behavior = Behavior(scale_up=up, scale_down=down)
        tolerances = spec.tolerances if tolerance is None else (tolerance, tolerance)
        self.set_hpa_spec(name, dataclasses.replace(spec, target_cpu_utilization_percent=target_utilization,
                                                    behavior=behavior, tolerances=tolerances))

    def set_kpa(self, name: str, settings: KpaSettings | None) -> None:
        """Put a Knative Pod Autoscaler in charge of the replicas instead of the HPA (None: the HPA again)."""
        svc = self._by_name[name]
        if settings != svc.kpa:
            svc.kpa, svc.kpa_state = settings, KpaState()
            svc.in_flight_mark = svc.in_flight_seconds

    def set_replicas(self, name: str, replicas: int) -> None:
        """Patch the Deployment's scale (an active HPA may change it again at its next sync)."""
        if replicas < 0:
            raise ValueError(f"negative replicas for {name}")
        svc = self._by_name[name]
        if replicas != svc.replicas:
            svc.replicas = replicas
            svc.stats.replica_changes += 1
            self._reconcile_deployment(svc)
            self._schedule_pending()

    def set_resources(self, name: str, cpu_request: float, cpu_limit: float, memory_request: float, memory_limit: float) -> None:
        """Change the pods' resources: in place (pods/resize) or by a rolling update, per the service.

        In place, running pods are resized after the resize delay and new pods are created with
        the new resources (as VPA's admission webhook does); by rolling update, the pod
        template changes and the Deployment replaces its pods.
        """
        if not (0 < cpu_request <= cpu_limit and 0 < memory_request <= memory_limit):
            raise ValueError(f"invalid resources for {name}: requests must be positive and within limits")
        svc = self._by_name[name]
        target = Resources(cpu_request, cpu_limit, memory_request, memory_limit)
        if same_resources(target, Resources(*svc.new_pod_resources)):
            return
        svc.stats.resource_changes += 1
        if svc.spec.resize == "in_place":
            svc.new_pod_resources = target
            for pod in svc.pods:
                self.resize_pod(name, pod.name, *target)
        else:
            self.update_template(name, *target)

    def update_template(self, name: str, cpu_request: float, cpu_limit: float, memory_request: float, memory_limit: float) -> None:
        """Change the Deployment's pod template: a new revision, rolled out by the Deployment controller."""
        svc = self._by_name[name]
        target = Resources(cpu_request, cpu_limit, memory_request, memory_limit)
        if same_resources(target, Resources(*svc.template)):
            return
        svc.template = svc.new_pod_resources = target
        svc.revision += 1
        svc.changed()
        self._reconcile_deployment(svc)
        self._schedule_pending()

    def resize_pod(self, name: str, pod_name: str, cpu_request: float, cpu_limit: float, memory_request: float, memory_limit: float) -> None:
        """pods/resize: the kubelet resizes the running container after the resize delay (or defers it)."""
        svc = self._by_name[name]
        pod = next((p for p in svc.pods if p.name == pod_name), None)
        if pod is None:
            raise KeyError(pod_name)
        pod.resize_to = (cpu_request, cpu_limit, memory_request, memory_limit)
        pod.resize_at = float(self.now + self.timings.resize_delay_s)
        svc.changed()

    # ------------------------------------------------------------------------------------------
    # Time

    def advance(self, seconds: int) -> None:
        """Run `seconds` of simulated time; the statistics then describe exactly this span."""
        end = self.now + int(seconds)
        if end > self.duration_s:
            raise ValueError(f"cannot advance past the end of the run ({self.duration_s} s)")
        for svc in self.services:
            svc.stats = IntervalStats()
        while self.now < end:
            until = min(end, self._next_event_time())
            self._contend(self.now, until)
            plans = [self._plan_span(svc, self.now, until) for svc in self.services]
            oom_at = min((p.oom_at for p in plans if p.oom_at is not None), default=None)
            if oom_at is not None and oom_at < until:
                until = oom_at
                plans = [self._plan_span(svc, self.now, until) for svc in self.services]
            for svc, plan in zip(self.services, plans):
                self._commit_span(svc, plan.span, until - self.now)
            self.now = until
            for svc, plan in zip(self.services, plans):
                if plan.oom_at == until:
                    self._fire_oom(svc, plan)
            self._process_events()

    def _next_event_time(self) -> int:
        timings = self.timings
        periods = [timings.hpa_sync_period_s, timings.metrics_resolution_s]
        if any(svc.kpa is not None for svc in self.services):
            periods.append(KPA_TICK_S)
        upcoming = min((self.now // p + 1) * p for p in periods)
        for svc in self.services:
            pod_event = svc.view.next_event
            if self.now < pod_event < upcoming:
                upcoming = math.ceil(pod_event)
        return upcoming

    def _plan_span(self, svc: ServiceRuntime, start: int, end: int) -> PlannedSpan:
        """The span [start, end) for one service, and when (if) an OOM kill would cut it short."""
        view = svc.view
        first, last = start // PEAK_BLOCK_S, (end - 1) // PEAK_BLOCK_S
        peaks = self._peaks[svc.index]
        span = run_span(
            view.models,
            view.counts,
            svc.rates[start:end],
            svc.arrivals[start:end],
            svc.backlog,
            svc.spec.timeout_s,
            mean_rate=float(svc.rate_sums[end] - svc.rate_sums[start]) / (end - start),
            peak_rate=float(peaks[first] if first == last else peaks[first : last + 1].max()),
            total_arrivals=float(svc.arrival_sums[end] - svc.arrival_sums[start]),
        )
        if span.overload_oom_at is not None:
            return PlannedSpan(span, start + span.overload_oom_at + 1, overload=True)
        hazard = sum(h * n for h, n in zip(span.oom_hazard, view.counts))
        oom_at = start + max(1, math.ceil(svc.oom_clock / hazard)) if hazard > 0.0 else None
        return PlannedSpan(span, oom_at, overload=False)

    def _commit_span(self, svc: ServiceRuntime, span: Span, seconds: int) -> None:
        stats, view = svc.stats, svc.view
        stats.seconds += seconds
        stats.arrivals += span.arrivals
        stats.served += span.served
        stats.dropped += span.dropped
        for component in span.components:
            stats.add_component(component)
            svc.in_flight_seconds += component.weight * component.mean
        svc.backlog = stats.backlog = span.backlog
        for g, count in enumerate(view.counts):
            replica_seconds = count * seconds
            stats.cpu_core_seconds += span.cpu_per_replica[g] * replica_seconds
            stats.throttled_replica_seconds += span.throttled_fraction[g] * replica_seconds
            stats.working_set_byte_seconds += span.working_set[g] * replica_seconds
            svc.oom_clock -= span.oom_hazard[g] * replica_seconds
        above_cpu = above_memory = 0.0  # usage above requests, which the max(request, usage) rule bills
        for pod, g in view.ready:
            pod.cpu_seconds += span.cpu_per_replica[g] * seconds
            pod.throttled_seconds += span.throttled_fraction[g] * seconds
            pod.running_seconds += seconds
            pod.working_set = span.working_set[g]
            above_cpu += max(0.0, span.cpu_per_replica[g] - pod.cpu_request)
            above_memory += max(0.0, pod.working_set - pod.memory_request)
        for pod in view.starting:  # loading the model
            burn = min(svc.spec.cores_per_request, pod.cpu_limit)
            pod.cpu_seconds += burn * seconds
            pod.running_seconds += seconds
            pod.working_set = min(svc.spec.base_memory, pod.memory_limit)
            above_cpu += max(0.0, burn - pod.cpu_request)
            above_memory += max(0.0, pod.working_set - pod.memory_request)
        stats.ready_replica_seconds += len(view.ready) * seconds
        stats.scheduled_replica_seconds += view.scheduled * seconds
        stats.cpu_request_core_seconds += view.cpu_requested * seconds
        stats.memory_request_byte_seconds += view.memory_requested * seconds
        prices = self.scenario.prices
        if not prices.bills_usage:
            above_cpu = above_memory = 0.0
        stats.cost += prices.per_second(view.cpu_requested + above_cpu, view.memory_requested + above_memory) * seconds

    def _contend(self, start: int, end: int) -> None:
        """Node CPU contention over [start, end): what each ready pod can use on a crowded node.

        Only nodes whose pods' limits exceed their CPU can contend; on the others every pod keeps
        its limit. A pod whose available CPU changes changes its service's replica groups.
        """
        loads: dict[int, tuple[float, float]] = {}  # service -> (mean rate, ready capacity) at the span's start
        for node in self.nodes:
            if node.cpu_limits > node.cpu * (1.0 + 1e-12):
                self._squeeze(node, start, end, loads)
                node.squeezed = True
            elif node.squeezed:
                node.squeezed = False
                for pod in node.pods:
                    if pod.cpu_available is not None:
                        pod.cpu_available = None
                        self.services[pod.service].changed()

    def _squeeze(self, node: Node, start: int, end: int, loads: dict[int, tuple[float, float]]) -> None:
        layout = self._layouts.get(node.name)
        if layout is None or layout.key != self._layout_key(node, layout.services):
            layout = self._layouts[node.name] = self._layout(node)
        claims = []
        for members in layout.groups:
            pod = members[0]
            svc = self.services[pod.service]
            usable = svc.usable_cores(pod)
            if pod.ready_since is not None:
                demand = _on_demand_grid(self._pod_demand(svc, pod, start, end, loads))
                claims.append(CpuClaim(pod.cpu_request, usable, demand, len(members)))
            else:
                burn = min(svc.spec.cores_per_request, usable)
                claims.append(CpuClaim(pod.cpu_request, burn, burn, len(members)))
        if claims == layout.claims:
            return  # the same claims as last span: the same answer, already applied
        layout.claims = claims
        for claim, members, cpu in zip(claims, layout.groups, effective_cpu(node.cpu, claims)):
            squeezed = _on_grid(cpu, claim.limit)
            for pod in members:
                if pod.ready_since is not None and pod.cpu_available != squeezed:
                    pod.cpu_available = squeezed
                    self.services[pod.service].changed()
        layout.key = self._layout_key(node, layout.services)  # our own changes keep the groups as they are

    def _layout(self, node: Node) -> "_NodeLayout":
        """The node's pods that want CPU, grouped: same service, resources and state."""
        groups: dict[tuple, list[Pod]] = {}
        for pod in node.pods:
            if pod.ready_since is not None:
                key: tuple = (pod.service, pod.cpu_request, pod.cpu_limit, pod.memory_limit, pod.cpu_available)
            elif pod.started_at is not None:  # loading its model: a steady burn
                key = (pod.service, pod.cpu_request, pod.cpu_limit, "starting")
            else:
                continue
            groups.setdefault(key, []).append(pod)
        services = tuple(sorted({pod.service for pod in node.pods}))
        return _NodeLayout(self._layout_key(node, services), services, list(groups.values()))

    def _layout_key(self, node: Node, services: tuple[int, ...]) -> tuple:
        return (node.version, *(self.services[i].version for i in services))

    def _pod_demand(self, svc: ServiceRuntime, pod: Pod, start: int, end: int, loads: dict[int, tuple[float, float]]) -> float:
        """The CPU a ready pod needs on average over [start, end): its share of the load (by capacity), and its idle CPU."""
        if svc.backlog > 0.0:
            return svc.usable_cores(pod)  # a queue is waiting: every replica is busy
        load = loads.get(svc.index)
        if load is None:
            view = svc.view
            load = loads[svc.index] = (float(svc.rate_sums[end] - svc.rate_sums[start]) / (end - start),
                                       sum(m.capacity * n for m, n in zip(view.models, view.counts)))
        rate, total = load
        mine = svc.model(pod.cpu_limit, pod.memory_limit, pod.cpu_available).capacity
        work = rate * mine / total * svc.spec.cpu_per_request if total > 0 else 0.0
        return min(svc.usable_cores(pod), work + svc.spec.idle_cpu)

    def _fire_oom(self, svc: ServiceRuntime, plan: PlannedSpan) -> None:
        """Kill what the span's OOM clock says: one replica, or every saturated one under overload."""
        view = svc.view
        if plan.overload:
            doomed = [pod for pod, g in view.ready if _oom_under_overload(view.models[g])]
        else:
            prone = [(pod, plan.span.oom_hazard[g]) for pod, g in view.ready if plan.span.oom_hazard[g] > 0.0]
            weights = np.array([h for _, h in prone])
            doomed = [prone[int(self.rng.choice(len(prone), p=weights / weights.sum()))][0]] if prone else []
        for pod in doomed:
            model = svc.model(pod.cpu_limit, pod.memory_limit)
            in_flight = float(model.workers if plan.overload else model.oom_above + 1)
            lost = min(in_flight, svc.stats.served)  # the killed container's requests are lost
            svc.stats.served -= lost
            svc.stats.dropped += lost
            svc.stats.oom_kills += 1
            kubelet.crash(pod, float(self.now), kubelet.OOM_KILLED)
        svc.oom_clock = float(self.rng.exponential())
        svc.changed()

    # ------------------------------------------------------------------------------------------
    # Events

    def _process_events(self) -> None:
        now = float(self.now)
        for svc in self.services:
            if svc.view.next_event <= now:
                self._pod_events(svc, now)
        if self.now % self.timings.metrics_resolution_s == 0:
            for svc in self.services:
                scrape(svc.pods, now)
        if self.now % self.timings.hpa_sync_period_s == 0:
            for svc in self.services:
                if svc.kpa is None:
                    self._sync_hpa(svc, now)
        if self.now % KPA_TICK_S == 0:
            for svc in self.services:
                if svc.kpa is not None:
                    self._tick_kpa(svc, now)
        for svc in self.services:
            self._reconcile_deployment(svc)
        self._schedule_pending()

    def _pod_events(self, svc: ServiceRuntime, now: float) -> None:
        """The kubelet's events due now: resizes, container restarts, start-ups that end."""
        for pod in svc.pods:
            if pod.resize_at is not None and pod.resize_at <= now:
                self._apply_resize(svc, pod, now)
            if pod.restart_at is not None and pod.restart_at <= now:
                pod.restart_at = None
                kubelet.start_container(pod, now, svc.spec.startup_s)
            if pod.ready_since is None and pod.ready_at is not None and pod.ready_at <= now:
                kubelet.finish_startup(pod, now, svc.spec.base_memory)
        svc.changed()

    def _apply_resize(self, svc: ServiceRuntime, pod: Pod, now: float) -> None:
        cpu_req, cpu_lim, mem_req, mem_lim = pod.resize_to
        model = svc.model(pod.cpu_limit, pod.memory_limit)
        working_set = model.base_memory + model.memory_per_request * model.workers / 2
        retry_at = now + self.timings.hpa_sync_period_s
        if kubelet.memory_shrink_blocked(pod, mem_lim, working_set) or not resize_requests(pod, cpu_req, mem_req):
            pod.resize_at = retry_at  # Deferred: retried later
            return
        set_cpu_limit(pod, cpu_lim)
        pod.memory_limit = mem_lim
        pod.resize_at = pod.resize_to = None

    def _sync_hpa(self, svc: ServiceRuntime, now: float) -> None:
        """The HPA controller's sync of this service's HPA (reconcileAutoscaler)."""
        metric = metric_replicas(svc, now, self.timings)
        if not isinstance(metric, HpaMetricsError):
            svc.last_utilization = metric[1]
            metric = metric[0]
        decision = svc.hpa.reconcile(now, svc.replicas, svc.hpa_spec, metric)
        svc.last_hpa_decision = decision
        svc.last_hpa_sync = now
        if decision.desired_replicas != svc.replicas:
            svc.replicas = decision.desired_replicas
            svc.stats.replica_changes += 1

    def _tick_kpa(self, svc: ServiceRuntime, now: float) -> None:
        """The Knative autoscaler's tick: total requests in flight over the last tick, then its decision."""
        assert svc.kpa is not None
        concurrency = (svc.in_flight_seconds - svc.in_flight_mark) / KPA_TICK_S
        svc.in_flight_mark = svc.in_flight_seconds
        bounds = svc.spec.bounds
        desired = kpa_step(svc.kpa, svc.kpa_state, now, concurrency, len(svc.view.ready), bounds.min_replicas, bounds.max_replicas)
        if desired != svc.replicas:
            svc.replicas = desired
            svc.stats.replica_changes += 1

    def _reconcile_deployment(self, svc: ServiceRuntime) -> None:
        view = svc.view
        if view.outdated == 0 and len(svc.pods) == svc.replicas:
            return  # nothing for the Deployment controller to do
        changes = deployment.reconcile(svc.replicas, svc.revision, svc.pods)
        for pod in changes.delete:
            unbind(pod)
            svc.pods.remove(pod)
        for _ in range(changes.create):
            self._new_pod(svc, created_at=float(self.now))
        svc.changed()

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
        svc.changed()
        return pod

    def _schedule_pending(self) -> None:
        """Bind unscheduled pods, highest priority first; preempt lower priorities if needed."""
        if not any(svc.view.unscheduled for svc in self.services):
            return
        pending = sorted(
            (p for svc in self.services for p in svc.pods if p.node is None), key=lambda p: (-p.priority, p.created_at)
        )
        now = float(self.now)
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
                    unbind(victim)
                    owner.pods.remove(victim)
                    owner.changed()
            bind(pod, node)
            kubelet.start_container(pod, now, svc.spec.startup_s)
            svc.changed()
        # Preemption victims are recreated by their Deployments and wait (Pending) for room.
        for svc in self.services:
            self._reconcile_deployment(svc)


def _on_grid(cpu: float, limit: float) -> float | None:
    """Squeezed CPU rounded to a geometric grid below the limit; None when it is not squeezed."""
    steps = round(math.log(cpu / limit) / math.log(SQUEEZE_STEP)) if 0.0 < cpu < limit else 0
    return None if steps <= 0 else limit * SQUEEZE_STEP**steps


def _on_demand_grid(cores: float) -> float:
    """A pod's CPU demand rounded to 1% steps (contention's inputs repeat, and its results are cached)."""
    return 0.0 if cores <= 1e-6 else math.exp(round(math.log(cores) / math.log1p(0.01)) * math.log1p(0.01))


def _oom_under_overload(model: ReplicaModel) -> bool:
    """Saturated, every worker holds a request: over the limit unless all of them fit."""
    return model.oom_above is not None and model.oom_above < model.workers

