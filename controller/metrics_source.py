"""Every managed service's metrics from Prometheus, in a handful of grouped queries per loop.

An unreachable Prometheus or an error answer is a problem for every service; per service, a
missing series (no request rate, no latency histogram while there is load, a ready pod
without container series), a NaN, or a sample older than the staleness limit on any of its
pods (the oldest counts, so one fresh pod cannot hide stale ones) is a `ServiceProblem`
with a reason code, which makes the controller fail static for that service alone.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from rlscale.controller import profiles
from rlscale.controller.config import ALL_NAMESPACES, PrometheusSettings
from rlscale.controller.problems import ServiceProblem
from rlscale.controller.prometheus import Prometheus, Series


@dataclass(frozen=True)
class ServiceMetrics:
    load_rps: float
    error_rps: float
    latency_quantile_s: float
    latency_mean_s: float
    slow_fraction: float  # share of answered requests slower than the SLO target
    cpu_cores: float  # all containers of the service together
    throttled_fraction: float
    memory_working_set: float  # per container
    oom_kills: float
    cpu_headroom: float


@dataclass(frozen=True)
class ServiceQuery:
    """What identifies one service's series: its namespace, name (the app label's value), pods and container."""

    key: str
    namespace: str
    name: str
    pods: frozenset[str]  # the Deployment's own pods
    ready_pods: frozenset[str]
    container: str
    slo_quantile: float
    slo_latency_s: float


def namespace_pattern(namespaces: tuple[str, ...]) -> str:
    """The regex for `namespace=~"..."` that matches the managed namespaces."""
    return ".+" if ALL_NAMESPACES in namespaces else "|".join(re.escape(n) for n in namespaces)


def read_services(prometheus: Prometheus, settings: PrometheusSettings, namespaces: tuple[str, ...],
                  services: list[ServiceQuery]) -> dict[str, ServiceMetrics | ServiceProblem]:
    """Every service's metrics over the last window, by service key, or the problem that keeps it unknown."""
    if not services:
        return {}
    profile = profiles.PROFILES[settings.profile]
    label = settings.app_label
    pattern = namespace_pattern(namespaces)
    fill = {"app": settings.app_selector.format(namespaces=pattern), "pods": settings.pod_selector.format(namespaces=pattern),
            "window": f"{settings.window_s}s", "by": f"by (namespace, {label})"}
    try:
        by_pod = {name: _by_pod(prometheus.query(template.format(**fill)))
                  for name, template in (("cpu", profiles.CPU_USAGE), ("periods", profiles.CFS_PERIODS),
                                         ("throttled", profiles.CFS_THROTTLED), ("memory", profiles.MEMORY),
                                         ("oom", profiles.OOM_KILLS), ("age", profiles.SAMPLE_AGE))}
        by_app = {"requests": _by_app(prometheus.query(profile.requests.format(**fill)), label)}
        by_app["errors"] = _by_app(prometheus.query(profile.errors.format(**fill)), label) if profile.errors else {}
        buckets: dict[tuple[str, str], Series] = {}
        if profile.latency_histogram is not None:
            histogram = f"sum by (namespace, {label}, le) (rate({profile.latency_histogram}_bucket{{{fill['app']}}}[{fill['window']}]))"
            for labels, value in prometheus.query(histogram):
                buckets.setdefault((labels.get("namespace", ""), labels.get(label, "")), []).append((labels, value))
        else:
            by_app["mean"] = _by_app(prometheus.query(profile.latency_mean.format(**fill)), label)
        free = prometheus.query(profiles.NODE_CPU_FREE)
        headroom = free[0][1] if free and math.isfinite(free[0][1]) else 0.0
    except ServiceProblem as problem:
        return {s.key: problem for s in services}
    out: dict[str, ServiceMetrics | ServiceProblem] = {}
    for service in services:
        try:
            out[service.key] = _service(service, by_pod, by_app, buckets, headroom, settings.staleness_s)
        except ServiceProblem as problem:
            out[service.key] = problem
    return out


def _by_pod(series: Series) -> dict[tuple[str, str, str], float]:
    return {(labels.get("namespace", ""), labels.get("pod", ""), labels.get("container", "")): value for labels, value in series}


def _by_app(series: Series, label: str) -> dict[tuple[str, str], float]:
    return {(labels.get("namespace", ""), labels.get(label, "")): value for labels, value in series}


def _service(service: ServiceQuery, by_pod: dict[str, dict[tuple[str, str, str], float]], by_app: dict[str, dict[tuple[str, str], float]],
             buckets: dict[tuple[str, str], Series], headroom: float, staleness_s: float) -> ServiceMetrics:
    namespace, container = service.namespace, service.container

    def mine(metric: str) -> list[float]:
        series = by_pod[metric]
        return [series[(namespace, pod, container)] for pod in service.pods if (namespace, pod, container) in series]

    ages = mine("age")
    if ages and max(ages) > staleness_s:  # checked first: old samples also make the rates vanish
        raise ServiceProblem("MetricsStale", f"the oldest container sample of {service.key} is {max(ages):.0f} s old "
                                             f"(limit {staleness_s:g} s)")
    unseen = sorted(p for p in service.ready_pods if (namespace, p, container) not in by_pod["cpu"]
                    or (namespace, p, container) not in by_pod["age"])
    if unseen:
        raise ServiceProblem("MetricsMissing", f"{len(unseen)} of {len(service.ready_pods)} ready pods of {service.key} have no "
                                               f"container CPU series (e.g. {unseen[0]})")
    cpu, memory, periods, throttled = mine("cpu"), mine("memory"), mine("periods"), mine("throttled")
    if any(not math.isfinite(v) for v in (*cpu, *memory, *periods, *throttled, *ages)):
        raise ServiceProblem("MetricsInvalid", f"a container series of {service.key} is not a number")
    key = (namespace, service.name)
    load = by_app["requests"].get(key)
    if load is None:
        raise ServiceProblem("MetricsMissing", f"no request series for {service.key}")
    errors = by_app["errors"].get(key, 0.0)
    if not math.isfinite(load) or not math.isfinite(errors):
        raise ServiceProblem("MetricsInvalid", f"the request or error rate of {service.key} is not a number")
    if "mean" in by_app:
        mean = by_app["mean"].get(key)
        if load > 0 and mean is None:
            raise ServiceProblem("MetricsMissing", f"{service.key} has load but no latency series")
        if load > 0 and not math.isfinite(mean):
            raise ServiceProblem("MetricsInvalid", f"the mean latency of {service.key} is not a number")
        mean = mean if load > 0 else 0.0
        quantile, slow = exponential_figures(mean, service.slo_quantile, service.slo_latency_s)
    else:
        own = buckets.get(key, [])
        if load > 0 and not own:
            raise ServiceProblem("MetricsMissing", f"{service.key} has load but no latency histogram")
        quantile, mean, slow = histogram_figures(own, service.slo_quantile, service.slo_latency_s)
    total_periods = sum(periods)
    return ServiceMetrics(
        load_rps=load, error_rps=errors, latency_quantile_s=quantile, latency_mean_s=mean, slow_fraction=slow,
        cpu_cores=sum(cpu), throttled_fraction=sum(throttled) / total_periods if total_periods > 0 else 0.0,
        memory_working_set=sum(memory) / len(memory) if memory else 0.0, oom_kills=sum(mine("oom")), cpu_headroom=headroom,
    )


def histogram_figures(buckets: list[tuple[dict[str, str], float]], quantile: float, slo_s: float) -> tuple[float, float, float]:
    """(quantile latency, mean estimate, share slower than `slo_s`) from cumulative bucket rates.

    Interpolates linearly inside a bucket, as PromQL's histogram_quantile does. With no
    requests, everything is 0.
    """
    points = sorted((float(labels["le"]), value) for labels, value in buckets if "le" in labels)
    if not points or points[-1][1] <= 0:
        return 0.0, 0.0, 0.0
    total = points[-1][1]
    if any(not math.isfinite(v) for _, v in points):
        raise ServiceProblem("MetricsInvalid", "a latency bucket is not a number")

    def at(fraction: float) -> float:
        rank = fraction * total
        previous_bound, previous_count = 0.0, 0.0
        for bound, count in points:
            if count >= rank:
                if math.isinf(bound):
                    return previous_bound
                span = count - previous_count
                return previous_bound + (bound - previous_bound) * ((rank - previous_count) / span if span > 0 else 1.0)
            previous_bound, previous_count = bound, count
        return previous_bound

    def slower_than(limit: float) -> float:
        previous_bound, previous_count = 0.0, 0.0
        for bound, count in points:
            if bound >= limit:
                if math.isinf(bound):
                    return 1.0 - previous_count / total
                share = (limit - previous_bound) / (bound - previous_bound) if bound > previous_bound else 1.0
                return 1.0 - (previous_count + share * (count - previous_count)) / total
            previous_bound, previous_count = bound, count
        return 0.0

    mean = sum(at((i + 0.5) / 20) for i in range(20)) / 20
    return at(quantile), mean, max(0.0, slower_than(slo_s))


def exponential_figures(mean: float, quantile: float, slo_s: float) -> tuple[float, float]:
    """(quantile, share slower than `slo_s`) for servers that export only a mean, assuming
    exponential latency (an M/M/1-like tail)."""
    if mean <= 0:
        return 0.0, 0.0
    return mean * math.log(1.0 / (1.0 - quantile)), math.exp(-slo_s / mean)
