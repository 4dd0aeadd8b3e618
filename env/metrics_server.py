"""metrics-server and the HPA's reading of it: CPU samples per pod, and the metric's proposal.

metrics-server samples each running container's cumulative CPU every resolution period; a
pod's metric is the rate between two consecutive samples, so a container that (re)started
shows no metric until its second sample. The HPA reads the sample `metric_lag_s` old.
"""

from __future__ import annotations

from rlscale.env.cluster import Pod
from rlscale.env.hpa_replicas import PHASE_PENDING, HpaMetricsError, PodGroup, pod_group, replicas_from_groups
from rlscale.env.runtime import ServiceRuntime
from rlscale.env.scenario import ClusterTimings

SAMPLES_KEPT = 8


def scrape(pods: list[Pod], now: float) -> None:
    """Sample the cumulative CPU of every running container (a restart starts a new series)."""
    for pod in pods:
        if pod.started_at is None:
            pod.scrapes.clear()
            continue
        pod.scrapes[now] = pod.cpu_seconds
        if len(pod.scrapes) > SAMPLES_KEPT:
            del pod.scrapes[next(iter(pod.scrapes))]


def metric_replicas(svc: ServiceRuntime, now: float, timings: ClusterTimings) -> tuple[int, int] | HpaMetricsError:
    """(replica proposal, utilization %) of the CPU-utilization metric, as the HPA computes it at `now`.

    Each pod is grouped by upstream's rules (`pod_group`) from what the API and metrics-server
    show, then the replica calculator's core runs on the groups.
    """
    window = float(timings.metrics_resolution_s)
    age = float(timings.metric_lag_s)
    sampled_at = now - age
    window_start = sampled_at - window
    cpu_init, readiness_delay = timings.cpu_initialization_period_s, timings.initial_readiness_delay_s
    ready_requests: list[int] = []
    ready_usages: list[int] = []
    missing_requests: list[int] = []
    unready_requests: list[int] = []
    for pod in svc.pods:
        scheduled = pod.node is not None
        at_start, at_end = pod.scrapes.get(window_start), pod.scrapes.get(sampled_at)
        has_metric = at_start is not None and at_end is not None
        transition = pod.ready_since if pod.ready_since is not None else (pod.not_ready_since or pod.start_time)
        group = pod_group(
            "Running" if scheduled else PHASE_PENDING,
            False,
            (pod.ready_since is not None) if scheduled else None,
            None if pod.start_time is None else now - pod.start_time,
            None if transition is None or not scheduled else now - transition,
            age if has_metric else None,
            window,
            True,
            cpu_init,
            readiness_delay,
        )
        request = round(pod.cpu_request * 1000)
        if group is PodGroup.READY:
            ready_requests.append(request)
            ready_usages.append(round(max(0.0, at_end - at_start) / window * 1000))
        elif group is PodGroup.UNREADY:
            unready_requests.append(request)
        elif group is PodGroup.MISSING:
            missing_requests.append(request)
    try:
        replicas, utilization, _ = replicas_from_groups(
            svc.replicas,
            svc.hpa_spec.target_cpu_utilization_percent,
            svc.hpa_spec.tolerances,
            ready_requests,
            ready_usages,
            missing_requests,
            unready_requests,
        )
    except HpaMetricsError as error:
        return error
    return replicas, utilization
