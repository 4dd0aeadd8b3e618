"""Reading a service's state from Prometheus: PromQL per profile, freshness, and latency math.

Every query has a timeout; an unreachable Prometheus, an error answer, a missing series, a
NaN, or samples older than the staleness limit is a `MetricsProblem` with a reason code, which
makes the controller fail static for that service.
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


def read_service(prometheus: Prometheus, settings: PrometheusSettings, *, namespace: str, service: str, deployment: str,
                 container: str, slo_quantile: float, slo_latency_s: float) -> ServiceMetrics:
    """A service's metrics over the last window; `MetricsProblem` if they are missing, invalid or stale."""
    profile = profiles.PROFILES[settings.profile]
    fill = {
        "app": settings.app_selector.format(namespace=namespace, service=service, deployment=deployment, container=container),
        "pods": settings.pod_selector.format(namespace=namespace, service=service, deployment=deployment, container=container),
        "window": f"{settings.window_s}s",
    }
    age = prometheus.value(profiles.FRESHNESS.format(**fill))
    if age > settings.staleness_s:
        raise MetricsProblem("MetricsStale", f"newest container sample of {deployment} is {age:.0f} s old")
    load = prometheus.value(profile.requests.format(**fill))
    errors = prometheus.value(profile.errors.format(**fill), required=False) if profile.errors else 0.0
    if profile.latency_histogram is not None:
        buckets = prometheus.query(
            f"sum by (le) (rate({profile.latency_histogram}_bucket{{{fill['app']}}}[{fill['window']}]))")
        quantile, mean, slow = histogram_figures(buckets, slo_quantile, slo_latency_s)
    else:
        mean = prometheus.value(profile.latency_mean.format(**fill)) if load > 0 else 0.0
        quantile, slow = exponential_figures(mean, slo_quantile, slo_latency_s)
    return ServiceMetrics(
        load_rps=load,
        error_rps=errors or 0.0,
        latency_quantile_s=quantile,
        latency_mean_s=mean,
        slow_fraction=slow,
        cpu_cores=prometheus.value(profiles.CPU_USAGE.format(**fill)),
        throttled_fraction=prometheus.value(profiles.THROTTLED.format(**fill), required=False) or 0.0,
        memory_working_set=prometheus.value(profiles.MEMORY.format(**fill)),
        oom_kills=prometheus.value(profiles.OOM_KILLS.format(**fill), required=False) or 0.0,
        cpu_headroom=prometheus.value(profiles.NODE_CPU_FREE, required=False) or 0.0,
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
