"""The HPA's replica calculator for resource (CPU/memory) utilization targets, as pure functions.

Mirrors ``GetResourceReplicas`` in kubernetes ``pkg/controller/podautoscaler/replica_calculator.go``
and the resource half of ``metrics/client.go``. Two layers, one implementation of the arithmetic:

* `replicas_from_groups` is the core: plain ints for pods whose group (ready, unready, missing) is
  already known. A simulator that tracks its pods' states calls this directly, millions of times.
* `resource_replicas` is the per-pod front-end: it extracts metric values, groups the pods
  (`group_pods`), sums their requests (`pod_requests`) and hands the ints to the core.

Times are "seconds ago" relative to the calculation, so no clock is needed: a point in time
``now - x`` is stored as ``x``. Go's strict ``After``/``Before`` become strict ``<``/``>``.
Quantities are integer milli-units, and integer division is used wherever Go divides int64s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

Tolerances = tuple[float, float]
"""(scale_down, scale_up): a usage ratio r is inside tolerance iff 1-scale_down <= r <= 1+scale_up."""

RESOURCE_CPU = "cpu"
PHASE_PENDING = "Pending"
_TERMINAL_PHASES = frozenset({"Failed", "Succeeded"})  # podutil.IsPodTerminal

_NO_PODS = "no pods returned by selector while calculating replica count"
_NO_METRICS_FOR_TARGETED_PODS = "did not receive metrics for targeted pods (pods might be unready)"
_NO_MATCHING_METRICS = "no metrics returned matched known pods"


class HpaMetricsError(Exception):
    """The replica count cannot be computed; the message is upstream's error text."""


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What the calculator reads from one listed pod (``v1.Pod``).

    `ready` is the Ready condition's status, None when the pod has no Ready condition.
    `started_s_ago` is None when ``Status.StartTime`` is nil. `ready_transition_s_ago` is the
    condition's ``LastTransitionTime``; it is required whenever the condition exists.
    `container_requests_milli` pairs each container's name with its request (None = no request).
    """

    name: str
    container_requests_milli: tuple[tuple[str, int | None], ...]
    started_s_ago: float | None
    ready_transition_s_ago: float | None
    phase: str = "Running"
    ready: bool | None = True
    being_deleted: bool = False

    def __post_init__(self) -> None:
        if self.ready is not None and self.ready_transition_s_ago is None:
            raise ValueError(f"pod {self.name}: a Ready condition needs ready_transition_s_ago")


@dataclass(frozen=True, slots=True)
class PodMetric:
    """One item of the resource metrics API (``metricsapi.PodMetrics``) for one resource.

    `container_usage_milli` pairs each container's name with its usage (None = resource absent).
    """

    name: str
    container_usage_milli: tuple[tuple[str, int | None], ...]
    age_s: float
    window_s: float = 60.0


@dataclass(frozen=True, slots=True)
class PodGroups:
    """The result of `group_pods`: how many pods are ready, and which are not."""

    ready_count: int
    unready: frozenset[str]
    missing: frozenset[str]
    ignored: frozenset[str]


def is_within_tolerance(usage_ratio: float, tolerances: Tolerances) -> bool:
    """Mirrors ``Tolerances.isWithin``."""
    scale_down, scale_up = tolerances
    return 1.0 - scale_down <= usage_ratio <= 1.0 + scale_up


def utilization_ratio(
    usage_sum_milli: int, request_sum_milli: int, entry_count: int, target_utilization_percent: int
) -> tuple[float, int, int]:
    """Mirrors ``GetResourceUtilizationRatio`` over pre-summed metric entries that have requests.

    Returns (ratio, utilization_percent, raw_milli): the utilization is an integer percentage
    first and the ratio a float of it, as upstream computes them.
    """
    if request_sum_milli == 0:
        raise HpaMetricsError(_NO_MATCHING_METRICS)
    utilization = usage_sum_milli * 100 // request_sum_milli
    return utilization / target_utilization_percent, utilization, usage_sum_milli // entry_count


def _require_metrics_left(metric_count: int) -> None:
    # Checked by the front-end before requests are summed (Go's order), and again by the core.
    if metric_count == 0:
        raise HpaMetricsError(_NO_METRICS_FOR_TARGETED_PODS)


def replicas_from_groups(
    current_replicas: int,
    target_utilization_percent: int,
    tolerances: Tolerances,
    ready_requests_milli: Sequence[int],
    ready_usages_milli: Sequence[int],
    missing_requests_milli: Sequence[int] = (),
    unready_requests_milli: Sequence[int] = (),
    extra_metric_count: int = 0,
) -> tuple[int, int, int]:
    """The arithmetic of ``GetResourceReplicas`` once the pods are grouped.

    `ready_*` hold one entry per ready pod with a metric (the same order in both);
    `missing_requests_milli` the requests of running pods without a metric;
    `unready_requests_milli` the requests of pending/unready pods; `extra_metric_count` the
    metrics whose name matches no pod (they count in the second pass's ``len(metrics)``).
    Returns (replicas, utilization_percent, raw_milli); the last two come from the first pass,
    as upstream's status does.
    """
    ready_count = len(ready_usages_milli)
    _require_metrics_left(ready_count + extra_metric_count)
    usage_sum = sum(ready_usages_milli)
    request_sum = sum(ready_requests_milli)
    ratio, utilization, raw_milli = utilization_ratio(
        usage_sum, request_sum, ready_count, target_utilization_percent
    )

    scale_up_with_unready = bool(unready_requests_milli) and ratio > 1.0
    if not scale_up_with_unready and not missing_requests_milli:
        if is_within_tolerance(ratio, tolerances):
            return current_replicas, utilization, raw_milli
        return math.ceil(ratio * ready_count), utilization, raw_milli

    # Second pass: fill in the pods left out, in the direction that dampens the change.
    entry_count = ready_count
    if missing_requests_milli and ratio != 1.0:
        request_sum += sum(missing_requests_milli)
        entry_count += len(missing_requests_milli)
        if ratio < 1.0:  # scale-down: a missing pod uses its request, or the target if above 100%
            fallback = max(100, target_utilization_percent)
            usage_sum += sum(request * fallback // 100 for request in missing_requests_milli)
    if scale_up_with_unready:  # scale-up: an unready pod uses nothing
        request_sum += sum(unready_requests_milli)
        entry_count += len(unready_requests_milli)
    new_ratio, _, _ = utilization_ratio(usage_sum, request_sum, entry_count, target_utilization_percent)
    metric_count = entry_count + extra_metric_count  # upstream's len(metrics) counts the extras

    if (
        is_within_tolerance(new_ratio, tolerances)
        or (ratio < 1.0 < new_ratio)
        or (ratio > 1.0 > new_ratio)
    ):
        return current_replicas, utilization, raw_milli
    new_replicas = math.ceil(new_ratio * metric_count)
    if (new_ratio < 1.0 and new_replicas > current_replicas) or (
        new_ratio > 1.0 and new_replicas < current_replicas
    ):
        return current_replicas, utilization, raw_milli
    return new_replicas, utilization, raw_milli


def metric_usage_milli(metric: PodMetric, container: str | None = None) -> int | None:
    """A pod's value from one metrics item, or None when the item gives none.

    Mirrors ``getPodMetrics`` (pod mode: the sum over containers, none if any container lacks
    the resource or there are no containers) and ``getContainerMetrics`` (that container's usage).
    """
    if container is None:
        if not metric.container_usage_milli:
            return None
        total = 0
        for _, usage in metric.container_usage_milli:
            if usage is None:
                return None
            total += usage
        return total
    for name, usage in metric.container_usage_milli:
        if name == container:
            return usage
    return None


class PodGroup(IntEnum):
    """Where ``groupPods`` puts one pod."""

    READY = 0
    UNREADY = 1
    MISSING = 2
    IGNORED = 3


def pod_group(
    phase: str,
    being_deleted: bool,
    ready: bool | None,
    started_s_ago: float | None,
    ready_transition_s_ago: float | None,
    metric_age_s: float | None,
    metric_window_s: float,
    cpu: bool,
    cpu_initialization_period_s: float,
    delay_of_initial_readiness_status_s: float,
) -> PodGroup:
    """Mirrors the body of ``groupPods`` for one pod: ignored, unready, missing or ready, in that order.

    Plain values so a simulator can classify its pods without building objects;
    `metric_age_s` is None when the pod has no metric. The readiness checks apply to CPU only:
    a pod still initialising counts only if ready with a full metric window since its last
    transition; after that only a pod that never became ready is left out.
    """
    if being_deleted or phase in _TERMINAL_PHASES:
        return PodGroup.IGNORED
    if phase == PHASE_PENDING:
        return PodGroup.UNREADY
    if metric_age_s is None:
        return PodGroup.MISSING
    if not cpu:
        return PodGroup.READY
    if ready is None or started_s_ago is None or ready_transition_s_ago is None:
        return PodGroup.UNREADY
    # start + cpuInit > now  <=>  started_s_ago < cpuInit
    if started_s_ago < cpu_initialization_period_s:
        # metricTimestamp < transition + window
        unready = not ready or ready_transition_s_ago - metric_age_s < metric_window_s
    else:
        # start + delay > transition: the pod has never been ready since it started
        unready = not ready and ready_transition_s_ago + delay_of_initial_readiness_status_s > started_s_ago
    return PodGroup.UNREADY if unready else PodGroup.READY


def group_pods(
    pods: Iterable[PodInfo],
    metrics: Mapping[str, PodMetric],
    *,
    resource: str = RESOURCE_CPU,
    cpu_initialization_period_s: float,
    delay_of_initial_readiness_status_s: float,
) -> PodGroups:
    """Mirrors ``groupPods`` over pod objects; `metrics` holds the items that gave a value, by name."""
    names: tuple[set[str], set[str], set[str], set[str]] = (set(), set(), set(), set())
    for pod in pods:
        metric = metrics.get(pod.name)
        group = pod_group(
            pod.phase,
            pod.being_deleted,
            pod.ready,
            pod.started_s_ago,
            pod.ready_transition_s_ago,
            None if metric is None else metric.age_s,
            0.0 if metric is None else metric.window_s,
            resource == RESOURCE_CPU,
            cpu_initialization_period_s,
            delay_of_initial_readiness_status_s,
        )
        names[group].add(pod.name)
    ready, unready, missing, ignored = names
    return PodGroups(len(ready), frozenset(unready), frozenset(missing), frozenset(ignored))


def pod_requests(
    pods: Iterable[PodInfo], container: str | None = None, resource: str = RESOURCE_CPU
) -> dict[str, int]:
    """Each pod's request, summed over its containers or just `container`.

    Mirrors ``calculateRequests`` / ``calculatePodRequestsFromContainers`` (regular containers;
    pod-level requests and sidecar init containers are outside this model).
    """
    requests: dict[str, int] = {}
    for pod in pods:
        total = 0
        found = False
        for name, request in pod.container_requests_milli:
            if container is not None and name != container:
                continue
            if request is None:
                raise HpaMetricsError(
                    f"missing request for {resource} in container {name} of Pod {pod.name}"
                )
            total += request
            found = True
            if container is not None:
                break  # container names are unique in a pod
        if container is not None and not found:
            raise HpaMetricsError(f"container {container} not found in Pod {pod.name}")
        requests[pod.name] = total
    return requests


def resource_replicas(
    current_replicas: int,
    target_utilization_percent: int,
    tolerances: Tolerances,
    pods: Sequence[PodInfo],
    metrics: Sequence[PodMetric],
    container: str | None = None,
    *,
    resource: str = RESOURCE_CPU,
    cpu_initialization_period_s: float,
    delay_of_initial_readiness_status_s: float,
) -> tuple[int, int, int]:
    """Mirrors ``GetResourceReplicas``: (replicas, utilization_percent, raw_milli) from pods.

    `metrics` is what the metrics API returned (possibly for pods that no longer exist);
    `container` selects a ContainerResource metric. Raises `HpaMetricsError` as upstream errs.
    """
    if not metrics:
        raise HpaMetricsError(
            f"unable to get metrics for resource {resource}: "
            "no metrics returned from resource metrics API"
        )
    usage_by_pod: dict[str, int] = {}
    metric_by_pod: dict[str, PodMetric] = {}
    for metric in metrics:
        usage = metric_usage_milli(metric, container)
        if usage is not None:
            usage_by_pod[metric.name] = usage
            metric_by_pod[metric.name] = metric
    if not pods:
        raise HpaMetricsError(_NO_PODS)

    groups = group_pods(
        pods,
        metric_by_pod,
        resource=resource,
        cpu_initialization_period_s=cpu_initialization_period_s,
        delay_of_initial_readiness_status_s=delay_of_initial_readiness_status_s,
    )
    kept = usage_by_pod.keys() - groups.ignored - groups.unready
    _require_metrics_left(len(kept))
    requests = pod_requests(pods, container, resource)

    ready_names = [name for name in kept if name in requests]
    return replicas_from_groups(
        current_replicas,
        target_utilization_percent,
        tolerances,
        [requests[name] for name in ready_names],
        [usage_by_pod[name] for name in ready_names],
        [requests[name] for name in groups.missing],
        [requests[name] for name in groups.unready],
        extra_metric_count=len(kept) - len(ready_names),
    )
