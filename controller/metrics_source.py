"""Reading a service's state from Prometheus: PromQL per profile, freshness, and latency math.

Every query has a timeout and reads all services at once; an unreachable Prometheus, an error
answer, a missing series, a NaN, or samples older than the staleness limit is a
`MetricsProblem` with a reason code, which makes the controller fail static for that service.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from rlscale.controller import profiles
from rlscale.controller.config import PrometheusSettings


class MetricsProblem(Exception):
    """Metrics cannot be trusted now; `reason` is a short code (MetricsMissing, MetricsStale, ...)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class Prometheus:
    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """An instant query's (labels, value) pairs."""
        address = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with urllib.request.urlopen(address, timeout=self.timeout_s) as response:
                body = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise MetricsProblem("PrometheusUnavailable", f"{self.url}: {exc}") from None
        if body.get("status") != "success":
            raise MetricsProblem("PrometheusError", f"{promql}: {body.get('error', body)}")
        result = body["data"]["result"]
        if body["data"].get("resultType") == "scalar":
            return [({}, float(result[1]))]
        return [(series.get("metric", {}), float(series["value"][1])) for series in result]

    def value(self, promql: str, *, required: bool = True) -> float | None:
        """One number: the query's single value. Missing or NaN is a problem when `required`."""
        found = self.query(promql)
        if not found:
            if required:
                raise MetricsProblem("MetricsMissing", promql)
            return None
        value = found[0][1]
        if not math.isfinite(value):
            if required:
                raise MetricsProblem("MetricsInvalid", f"{promql} = {value}")
            return None
        return value


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
    """What identifies one service's series: its name (the app label's value), pods and container."""

    name: str
    pods: frozenset[str]
    container: str
    slo_quantile: float
    slo_latency_s: float


def read_services(prometheus: Prometheus, settings: PrometheusSettings, namespace: str,
                  services: list[ServiceQuery]) -> dict[str, ServiceMetrics | MetricsProblem]:
    """Every service's metrics over the last window, from a handful of grouped queries.

    A service whose series are missing, NaN or stale gets a `MetricsProblem` instead; a
    Prometheus that cannot be queried at all is one problem for every service.
    """
    profile = profiles.PROFILES[settings.profile]
    label = settings.app_label
    fill = {"app": settings.app_selector.format(namespace=namespace), "pods": settings.pod_selector.format(namespace=namespace),
            "window": f"{settings.window_s}s", "by": f"by ({label})"}
    try:
        by_pod = {name: _by_pod(prometheus.query(template.format(**fill)))
                  for name, template in (("cpu", profiles.CPU_USAGE), ("periods", profiles.CFS_PERIODS),
                                         ("throttled", profiles.CFS_THROTTLED), ("memory", profiles.MEMORY),
                                         ("oom", profiles.OOM_KILLS), ("age", profiles.SAMPLE_AGE))}
        by_app = {"requests": _by_label(prometheus.query(profile.requests.format(**fill)), label)}
        by_app["errors"] = _by_label(prometheus.query(profile.errors.format(**fill)), label) if profile.errors else {}
        if profile.latency_histogram is not None:
            buckets = prometheus.query(f"sum by ({label}, le) (rate({profile.latency_histogram}_bucket{{{fill['app']}}}[{fill['window']}]))")
        else:
            by_app["mean"] = _by_label(prometheus.query(profile.latency_mean.format(**fill)), label)
            buckets = []
        headroom = prometheus.value(profiles.NODE_CPU_FREE, required=False) or 0.0
    except MetricsProblem as problem:
        return {s.name: problem for s in services}
    out: dict[str, ServiceMetrics | MetricsProblem] = {}
    for service in services:
        try:
            out[service.name] = _service(service, by_pod, by_app, buckets, label, headroom, settings.staleness_s)
        except MetricsProblem as problem:
            out[service.name] = problem
    return out


def _by_pod(series: list[tuple[dict[str, str], float]]) -> dict[tuple[str, str], float]:
    return {(labels.get("pod", ""), labels.get("container", "")): value for labels, value in series}


def _by_label(series: list[tuple[dict[str, str], float]], label: str) -> dict[str, float]:
    return {labels.get(label, ""): value for labels, value in series}


def _service(service: ServiceQuery, by_pod: dict[str, dict[tuple[str, str], float]], by_app: dict[str, dict[str, float]],
             buckets: list[tuple[dict[str, str], float]], label: str, headroom: float, staleness_s: float) -> ServiceMetrics:
    def mine(metric: str) -> list[float]:
        return [v for (pod, container), v in by_pod[metric].items() if pod in service.pods and container == service.container]

    cpu, ages = mine("cpu"), mine("age")
    if ages and min(ages) > staleness_s:  # checked first: old samples also make the rates vanish
        raise MetricsProblem("MetricsStale", f"the newest container sample of {service.name} is {min(ages):.0f} s old")
    if not cpu or not ages:
        raise MetricsProblem("MetricsMissing", f"no container CPU series for {service.name}")
    values = [*cpu, *mine("memory"), *mine("periods"), *mine("throttled")]
    if any(not math.isfinite(v) for v in values):
        raise MetricsProblem("MetricsInvalid", f"a container series of {service.name} is not a number")
    load = by_app["requests"].get(service.name)
    if load is None:
        raise MetricsProblem("MetricsMissing", f"no request series for {service.name}")
    if not math.isfinite(load):
        raise MetricsProblem("MetricsInvalid", f"the request rate of {service.name} is not a number")
    errors = by_app["errors"].get(service.name, 0.0)
    if "mean" in by_app:
        mean = by_app["mean"].get(service.name, 0.0) if load > 0 else 0.0
        quantile, slow = exponential_figures(mean if math.isfinite(mean) else 0.0, service.slo_quantile, service.slo_latency_s)
    else:
        own = [(labels, value) for labels, value in buckets if labels.get(label) == service.name]
        quantile, mean, slow = histogram_figures(own, service.slo_quantile, service.slo_latency_s)
    periods = sum(mine("periods"))
    memory = mine("memory")
    return ServiceMetrics(
        load_rps=load, error_rps=errors if math.isfinite(errors) else 0.0, latency_quantile_s=quantile, latency_mean_s=mean,
        slow_fraction=slow, cpu_cores=sum(cpu), throttled_fraction=sum(mine("throttled")) / periods if periods > 0 else 0.0,
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
        raise MetricsProblem("MetricsInvalid", "a latency bucket is not a number")

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
