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
from sys import intern
from dataclasses import dataclass

from rlscale.controller import profiles
from rlscale.controller.config import ALL_NAMESPACES, PrometheusSettings
from rlscale.controller.latency import bracketing, exponential_figures, slower_than
from rlscale.controller.problems import ServiceProblem
from rlscale.controller.prometheus import Prometheus, Series


# per container, grouped by (namespace, pod, container): one row of these per container, label strings shared
POD_QUERIES = {"cpu": profiles.CPU_USAGE, "periods": profiles.CFS_PERIODS, "throttled": profiles.CFS_THROTTLED,
               "memory": profiles.MEMORY, "oom": profiles.OOM_KILLS, "age": profiles.SAMPLE_AGE}
INDEX = {name: i for i, name in enumerate(POD_QUERIES)}


@dataclass(frozen=True)
class AppMetrics:
    """A service's own figures over the window: what its inference server exports (the profile's queries)."""

    load_rps: float
    error_rps: float
    latency_quantile_s: float
    latency_mean_s: float
    slow_fraction: float  # share of answered requests slower than the SLO target

    @property
    def slo_violation_fraction(self) -> float:
        """Requests slower than the SLO target, failed ones counted as slow (the `ServiceState` field)."""
        if self.load_rps <= 0:
            return 0.0
        answered = max(self.load_rps - self.error_rps, 0.0)
        return min(1.0, (self.slow_fraction * answered + self.error_rps) / self.load_rps)

    @property
    def drop_fraction(self) -> float:
        return self.error_rps / self.load_rps if self.load_rps > 0 else 0.0


@dataclass(frozen=True)
class ServiceMetrics:
    app: AppMetrics
    cpu_cores: float  # all containers of the service together
    throttled_fraction: float
    memory_working_set: float  # per container
    oom_kills: float
    cpu_headroom: float


@dataclass(frozen=True)
class AppQuery:
    """What identifies one service's own series: the values of the grouping labels (`group` of `read_apps`)."""

    key: str
    series: tuple[str, ...]
    slo_quantile: float
    slo_latency_s: float


@dataclass(frozen=True)
class ServiceQuery:
    """A Kubernetes service: its series (namespace and the app label's value), pods and container."""

    app: AppQuery
    namespace: str
    pods: frozenset[str]  # the Deployment's own pods
    ready_pods: frozenset[str]
    container: str

    @property
    def key(self) -> str:
        return self.app.key


def namespace_pattern(namespaces: tuple[str, ...]) -> str:
    """The regex for `namespace=~"..."` that matches the managed namespaces."""
    return ".+" if ALL_NAMESPACES in namespaces else "|".join(re.escape(n) for n in namespaces)


def _fill(settings: PrometheusSettings, namespaces: tuple[str, ...], group: tuple[str, ...]) -> dict[str, str]:
    pattern = namespace_pattern(namespaces)
    return {"app": settings.app_selector.format(namespaces=pattern), "pods": settings.pod_selector.format(namespaces=pattern),
            "window": f"{settings.window_s}s", "by": f"by ({', '.join(group)})"}


def read_services(prometheus: Prometheus, settings: PrometheusSettings, namespaces: tuple[str, ...],
                  services: list[ServiceQuery]) -> dict[str, ServiceMetrics | ServiceProblem]:
    """Every Kubernetes service's metrics over the last window (its own and its containers'), by service key, or the
    problem that keeps it unknown."""
    if not services:
        return {}
    fill = _fill(settings, namespaces, ("namespace", settings.app_label))
    try:
        by_pod: dict[tuple[str, str, str], list[float | None]] = {}
        for i, template in enumerate(POD_QUERIES.values()):
            for labels, value in prometheus.query(template.format(**fill)):
                key = (intern(labels.get("namespace", "")), intern(labels.get("pod", "")), intern(labels.get("container", "")))
                by_pod.setdefault(key, [None] * len(POD_QUERIES))[i] = value
        free = prometheus.query(profiles.NODE_CPU_FREE)
        headroom = free[0][1] if free and math.isfinite(free[0][1]) else 0.0
    except ServiceProblem as problem:
        return {s.key: problem for s in services}
    apps = read_apps(prometheus, settings, namespaces, [s.app for s in services], ("namespace", settings.app_label))
    out: dict[str, ServiceMetrics | ServiceProblem] = {}
    for service in services:
        try:
            out[service.key] = _containers(service, apps[service.key], by_pod, headroom, settings.staleness_s)
        except ServiceProblem as problem:
            out[service.key] = problem
    return out


def read_apps(prometheus: Prometheus, settings: PrometheusSettings, namespaces: tuple[str, ...], services: list[AppQuery],
              group: tuple[str, ...]) -> dict[str, AppMetrics | ServiceProblem]:
    """Every service's own request rate and latency over the last window, in a few queries grouped `by (group)`
    (each service's series are those whose `group` labels have its `series` values), or the problem that keeps
    it unknown."""
    if not services:
        return {}
    profile = profiles.PROFILES[settings.profile]
    fill = _fill(settings, namespaces, group)
    try:
        by_app = {"requests": _by_app(prometheus.query(profile.requests.format(**fill)), group)}
        by_app["errors"] = _by_app(prometheus.query(profile.errors.format(**fill)), group) if profile.errors else {}
        histogram = None
        if profile.latency_histogram is not None:
            histogram = _histogram(prometheus, profile.latency_histogram, fill, group, services)
        else:
            by_app["mean"] = _by_app(prometheus.query(profile.latency_mean.format(**fill)), group)
    except ServiceProblem as problem:
        return {s.key: problem for s in services}
    out: dict[str, AppMetrics | ServiceProblem] = {}
    for service in services:
        try:
            out[service.key] = _app(service, by_app, histogram)
        except ServiceProblem as problem:
            out[service.key] = problem
    return out


def _by_app(series: Series, group: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    return {tuple(labels.get(g, "") for g in group): value for labels, value in series}


@dataclass(frozen=True)
class Histogram:
    """A latency histogram read for all services at once, keyed by the services' series."""

    quantiles: dict[float, dict[tuple[str, ...], float]]  # histogram_quantile per SLO quantile in use
    means: dict[tuple[str, ...], float]  # rate(_sum) / rate(_count)
    buckets: dict[tuple[str, ...], list[tuple[float, float]]]  # only the bounds around each SLO target, and +Inf


def _histogram(prometheus: Prometheus, name: str, fill: dict[str, str], group: tuple[str, ...], services: list[AppQuery]) -> Histogram:
    """Quantiles computed by Prometheus, exact means, and of the buckets only those each SLO target falls between:
    a few thousand series for 5,000 services instead of every bucket of every service."""
    app, window, by = fill["app"], fill["window"], ", ".join(group)
    bounds = [labels["le"] for labels, _ in prometheus.query(f"count by (le) ({name}_bucket{{{app}}})") if "le" in labels]
    needed = bracketing(bounds, {s.slo_latency_s for s in services})
    rate = f"rate({name}_bucket{{{app}}}[{window}])"
    quantiles = {q: _by_app(prometheus.query(f"histogram_quantile({q:g}, sum by ({by}, le) ({rate}))"), group)
                 for q in sorted({s.slo_quantile for s in services})}
    means = _by_app(prometheus.query(f"sum by ({by}) (rate({name}_sum{{{app}}}[{window}])) / "
                                     f"sum by ({by}) (rate({name}_count{{{app}}}[{window}]))"), group)
    buckets: dict[tuple[str, ...], list[tuple[float, float]]] = {}
    if needed:
        selector = "|".join(re.escape(le) for le in needed).replace("\\", "\\\\")
        for labels, value in prometheus.query(f'sum by ({by}, le) (rate({name}_bucket{{{app},le=~"{selector}"}}[{window}]))'):
            buckets.setdefault(tuple(labels.get(g, "") for g in group), []).append((float(labels["le"]), value))
    return Histogram(quantiles, means, buckets)


def _containers(service: ServiceQuery, app: AppMetrics | ServiceProblem, by_pod: dict[tuple[str, str, str], list[float | None]],
                headroom: float, staleness_s: float) -> ServiceMetrics:
    namespace, container = service.namespace, service.container
    rows = [by_pod.get((namespace, pod, container)) for pod in service.pods]

    def mine(metric: str) -> list[float]:
        column = INDEX[metric]
        return [row[column] for row in rows if row is not None and row[column] is not None]

    def seen(pod: str, metric: str) -> bool:
        row = by_pod.get((namespace, pod, container))
        return row is not None and row[INDEX[metric]] is not None

    ages = mine("age")
    if ages and max(ages) > staleness_s:  # checked first: old samples also make the rates vanish
        raise ServiceProblem("MetricsStale", f"the oldest container sample of {service.key} is {max(ages):.0f} s old "
                                             f"(limit {staleness_s:g} s)")
    unseen = sorted(p for p in service.ready_pods if not (seen(p, "cpu") and seen(p, "age")))
    if unseen:
        raise ServiceProblem("MetricsMissing", f"{len(unseen)} of {len(service.ready_pods)} ready pods of {service.key} have no "
                                               f"container CPU series (e.g. {unseen[0]})")
    cpu, memory, periods, throttled = mine("cpu"), mine("memory"), mine("periods"), mine("throttled")
    if any(not math.isfinite(v) for v in (*cpu, *memory, *periods, *throttled, *ages)):
        raise ServiceProblem("MetricsInvalid", f"a container series of {service.key} is not a number")
    if isinstance(app, ServiceProblem):  # after the containers' checks: stale samples also make the request rate vanish
        raise app
    total_periods = sum(periods)
    return ServiceMetrics(
        app=app, cpu_cores=sum(cpu), throttled_fraction=sum(throttled) / total_periods if total_periods > 0 else 0.0,
        memory_working_set=sum(memory) / len(memory) if memory else 0.0, oom_kills=sum(mine("oom")), cpu_headroom=headroom,
    )


def _app(service: AppQuery, by_app: dict[str, dict[tuple[str, ...], float]], histogram: Histogram | None) -> AppMetrics:
    key = service.series
    load = by_app["requests"].get(key)
    if load is None:
        raise ServiceProblem("MetricsMissing", f"no request series for {service.key}")
    errors = by_app["errors"].get(key, 0.0)
    if not math.isfinite(load) or not math.isfinite(errors):
        raise ServiceProblem("MetricsInvalid", f"the request or error rate of {service.key} is not a number")
    if histogram is None:
        mean = by_app["mean"].get(key)
        if load > 0 and mean is None:
            raise ServiceProblem("MetricsMissing", f"{service.key} has load but no latency series")
        if load > 0 and not math.isfinite(mean):
            raise ServiceProblem("MetricsInvalid", f"the mean latency of {service.key} is not a number")
        mean = mean if load > 0 else 0.0
        quantile, slow = exponential_figures(mean, service.slo_quantile, service.slo_latency_s)
    else:
        own = histogram.buckets.get(key, [])
        quantile, mean = histogram.quantiles[service.slo_quantile].get(key), histogram.means.get(key)
        if load > 0 and (not own or quantile is None or mean is None):
            raise ServiceProblem("MetricsMissing", f"{service.key} has load but no latency histogram")
        if load > 0 and not all(math.isfinite(v) for v in (quantile, mean, *(c for _, c in own))):
            raise ServiceProblem("MetricsInvalid", f"the latency histogram of {service.key} is not a number")
        quantile, mean = (quantile, mean) if load > 0 else (0.0, 0.0)  # with no requests Prometheus answers NaN
        slow = slower_than(own, service.slo_latency_s) if load > 0 else 0.0
    return AppMetrics(load_rps=load, error_rps=errors, latency_quantile_s=quantile, latency_mean_s=mean, slow_fraction=slow)
