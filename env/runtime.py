"""A service's mutable state inside the simulator, and what it did in the last interval.

`ServiceRuntime` holds one service's Deployment, HPA and pods. Facts derived from its pods
(the ready replicas grouped by limits, what is scheduled, the next pod event) are cached in a
`PodView` and rebuilt only after `changed()`, which every pod mutation calls: spans between
events then cost O(groups), not O(pods).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
import numpy as np

from rlscale.env.cluster import Pod
from rlscale.env.dynamics import ReplicaModel, replica_model
from rlscale.env.hpa import HorizontalPodAutoscaler, HpaDecision, HpaSpec
from rlscale.env.kpa import KpaSettings, KpaState
from rlscale.env.queueing import LatencyComponent, mixture_quantile, mixture_survival
from rlscale.env.scenario import ServiceSpec
from rlscale.env.state import Resources


@dataclass(slots=True)
class IntervalStats:
    """What one service did during the last `Simulator.advance` call."""

    seconds: int = 0
    arrivals: float = 0.0
    served: float = 0.0
    dropped: float = 0.0
    backlog: float = 0.0  # still queued at the end
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

    def add_component(self, component: LatencyComponent) -> None:
        """Add a latency component, merged into the last one when they share their shape."""
        last = self.components[-1] if self.components else None
        if (
            last is not None
            and last.shift == component.shift
            and last.mu == component.mu
            and last.theta == component.theta
            and last.wait_probability == component.wait_probability
        ):
            self.components[-1] = LatencyComponent(
                last.weight + component.weight, last.shift, last.mu, last.theta, last.wait_probability
            )
        else:
            self.components.append(component)

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


@dataclass(slots=True)
class PodView:
    """Facts about a service's pods, valid until the next `ServiceRuntime.changed()`."""

    models: list[ReplicaModel]  # one per group of ready pods with equal limits
    counts: list[int]  # ready pods per group
    ready: list[tuple[Pod, int]]  # each ready pod and its group
    starting: list[Pod]  # containers up, not yet ready (they burn CPU loading the model)
    scheduled: int  # pods bound to a node
    cpu_requested: float  # by scheduled pods
    memory_requested: float
    unscheduled: int
    outdated: int  # pods of an older template revision
    next_event: float  # earliest start-up end, restart or resize among the pods (inf: none)


@dataclass(slots=True)
class ServiceRuntime:
    """A service's mutable state: its Deployment, HPA, pods and queue."""

    index: int
    spec: ServiceSpec
    rates: np.ndarray  # mean requests/s of each second of the run
    arrivals: np.ndarray  # Poisson draws around `rates`
    replicas: int  # the Deployment's spec.replicas
    template: Resources  # the Deployment's pod template
    new_pod_resources: Resources  # what new pods get: the template, or the in-place resize target
    hpa_spec: HpaSpec
    hpa: HorizontalPodAutoscaler = field(default_factory=HorizontalPodAutoscaler)
    revision: int = 1  # the pod template's revision
    pods: list[Pod] = field(default_factory=list)
    backlog: float = 0.0
    oom_clock: float = 1.0  # unit-exponential budget of OOM hazard left before the next kill
    serial: int = 0
    stats: IntervalStats = field(default_factory=IntervalStats)
    last_hpa_decision: HpaDecision | None = None
    last_hpa_sync: float | None = None
    last_utilization: int | None = None  # the HPA's last CPU utilization reading (% of requests)
    cfs_period_s: float = 0.0  # the cluster's CFS period (0: fluid CPU limits)
    kpa: KpaSettings | None = None  # a Knative Pod Autoscaler in charge instead of the HPA
    kpa_state: KpaState = field(default_factory=KpaState)
    in_flight_seconds: float = 0.0  # time integral of requests in flight (what the KPA reads)
    in_flight_mark: float = 0.0  # its value at the KPA's last tick
    version: int = 0  # counts `changed()` calls: what was derived from the pods is stale when it moved
    rate_sums: np.ndarray = field(default_factory=lambda: np.zeros(1))  # prefix sums of `rates`
    arrival_sums: np.ndarray = field(default_factory=lambda: np.zeros(1))  # prefix sums of `arrivals`
    _models: dict[tuple[float, float, float | None], ReplicaModel] = field(default_factory=dict)
    _view: PodView | None = None

    def __post_init__(self) -> None:
        self.rate_sums = np.concatenate(([0.0], np.cumsum(self.rates)))
        self.arrival_sums = np.concatenate(([0.0], np.cumsum(self.arrivals)))

    def changed(self) -> None:
        """Call after any change to the pods (created, deleted, bound, started, ready, crashed, resized)."""
        self._view = None
        self.version += 1

    def model(self, cpu_limit: float, memory_limit: float, cpu_available: float | None = None) -> ReplicaModel:
        """The queueing model of a replica with these limits (cached: limits take few values).

        `cpu_available` is what node contention leaves it while serving (None: its limit).
        """
        key = (cpu_limit, memory_limit, cpu_available)
        found = self._models.get(key)
        if found is None:
            spec = self.spec
            found = self._models[key] = replica_model(
                cpu_limit,
                memory_limit,
                concurrency=spec.concurrency,
                cpu_per_request=spec.cpu_per_request,
                cores_per_request=spec.cores_per_request,
                memory_per_request=spec.memory_per_request,
                base_memory=spec.base_memory,
                cpu_available=cpu_available,
                overhead_s=spec.overhead_s,
                idle_cpu=spec.idle_cpu,
                cfs_period_s=self.cfs_period_s,
                work_cv=spec.cpu_cv,
            )
        return found

    def usable_cores(self, pod: Pod) -> float:
        """The most CPU this service's workers can use in `pod` (its limit, or less)."""
        return min(self.spec.workers_cores, pod.cpu_limit)

    @property
    def view(self) -> PodView:
        if self._view is None:
            self._view = self._build_view()
        return self._view

    def _build_view(self) -> PodView:
        models: list[ReplicaModel] = []
        counts: list[int] = []
        ready: list[tuple[Pod, int]] = []
        starting: list[Pod] = []
        group_of: dict[ReplicaModel, int] = {}
        scheduled = unscheduled = outdated = 0
        cpu = memory = 0.0
        next_event = math.inf
        for pod in self.pods:
            if pod.node is None:
                unscheduled += 1
            else:
                scheduled += 1
                cpu += pod.cpu_request
                memory += pod.memory_request
            if pod.revision != self.revision:
                outdated += 1
            if pod.ready_since is not None:
                model = self.model(pod.cpu_limit, pod.memory_limit, pod.cpu_available)
                g = group_of.get(model)
                if g is None:
                    g = group_of[model] = len(models)
                    models.append(model)
                    counts.append(0)
                counts[g] += 1
                ready.append((pod, g))
            elif pod.started_at is not None:
                starting.append(pod)
                next_event = min(next_event, pod.ready_at)
            for t in (pod.restart_at, pod.resize_at):
                if t is not None:
                    next_event = min(next_event, t)
        return PodView(models, counts, ready, starting, scheduled, cpu, memory, unscheduled, outdated, next_event)
