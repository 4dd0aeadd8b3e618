"""A service's history from Prometheus: range queries, aligned on one grid of intervals.

The service's own series come from the controller's PromQL profiles (`controller/profiles.py`,
the request counter, errors and latency of every service in one query, grouped by the service
label); its replicas' CPU, CFS throttling and memory come from cAdvisor's series, one series per
replica (`ReplicaQueries`: Kubernetes pods, or Swarm tasks as cAdvisor labels them), with their
readiness where kube-state-metrics has it. Each query covers the whole window in chunks of at
most `MAX_POINTS` intervals (Prometheus refuses more than 11,000 points per series).

Interval i covers (times[i] - step, times[i]]; rates are taken over exactly that interval. Gauges
are read with `last_over_time(...[step])`, so a replica that went away stops at once even where
Prometheus has no staleness marker for it (backfilled blocks).

Every failure is a `UserInputError` naming what and where: Prometheus unreachable or refusing a
query, no series for the service, NaN samples (a broken exporter).
"""

from __future__ import annotations

import json
import math
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from rlscale.controller import profiles
from rlscale.errors import UserInputError

MAX_POINTS = 10_000
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, "w": 604_800.0}
Labels = tuple[tuple[str, str], ...]


def parse_duration(text: str, where: str) -> float:
    """Seconds of a Prometheus-style duration: 90s, 30m, 6h, 7d, 2w."""
    match = _DURATION.match(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise UserInputError(where, f"{text!r} is not a duration (e.g. 30s, 15m, 6h, 7d, 2w)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def when(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Window:
    """`count` intervals of `step` seconds ending at `end` (aligned on multiples of the step)."""

    end: float
    step: float
    count: int

    @classmethod
    def covering(cls, since_s: float, until: float, step: float) -> "Window":
        end = math.floor(until / step) * step
        return cls(end, step, int(since_s // step))

    @property
    def start(self) -> float:
        return self.end - self.count * self.step

    @property
    def times(self) -> np.ndarray:
        """The end of each interval."""
        return self.start + self.step * np.arange(1, self.count + 1)


class PrometheusHistory:
    """Range and instant queries against one Prometheus, each failure a one-line user error."""

    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, path: str, params: dict[str, str], what: str) -> dict:
        address = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(address, timeout=self.timeout_s) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # Prometheus answers bad queries with 400/422 and a JSON error
            try:
                detail = json.loads(exc.read()).get("error", exc.reason)
            except ValueError:
                detail = exc.reason
            raise UserInputError(f"--prometheus {self.url}", f"refused the query for {what} ({detail}): {params['query']}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UserInputError(f"--prometheus {self.url}", f"cannot query Prometheus ({reason})") from None
        if body.get("status") != "success":
            raise UserInputError(f"--prometheus {self.url}", f"query for {what} failed ({body.get('error', body)}): {params['query']}")
        return body["data"]

    def range(self, promql: str, window: Window, what: str, *, ratio: bool = False) -> dict[Labels, np.ndarray]:
        """Each series of `promql` on the window's grid (NaN where it has no sample). A NaN sample is a broken
        exporter, except in a `ratio` (a latency per request), which is NaN where nothing was requested."""
        out: dict[Labels, np.ndarray] = {}
        for first in range(0, window.count, MAX_POINTS):
            last = min(window.count, first + MAX_POINTS) - 1
            start, end = window.start + window.step * (first + 1), window.start + window.step * (last + 1)
            data = self._get("/api/v1/query_range", {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                      "step": f"{window.step:g}"}, what)
            for series in data.get("result", []):
                labels: Labels = tuple(sorted(series.get("metric", {}).items()))
                values = out.setdefault(labels, np.full(window.count, np.nan))
                for stamp, text in series.get("values", []):
                    index = int(round((float(stamp) - window.start) / window.step)) - 1
                    value = float(text)
                    if ratio and math.isnan(value):
                        continue
                    if not math.isfinite(value):
                        name = ",".join(f"{k}={v}" for k, v in labels) or "the series"
                        raise UserInputError(f"--prometheus {self.url}", f"{what} is {text} at {when(float(stamp))} ({name}): "
                                                                          "a broken exporter? Calibrate needs finite samples")
                    if 0 <= index < window.count:
                        values[index] = value
        return out

    def instant(self, promql: str, at: float, what: str) -> list[tuple[dict[str, str], float]]:
        data = self._get("/api/v1/query", {"query": promql, "time": f"{at:.3f}"}, what)
        found = []
        for series in data.get("result", []):
            value = float(series["value"][1])
            if math.isfinite(value):
                found.append((series.get("metric", {}), value))
        return found


@dataclass(frozen=True)
class ReplicaQueries:
    """PromQL for one service's replicas, one series per replica grouped by `group` ($window: the step)."""

    group: str
    cpu: str
    periods: str
    throttled: str
    memory: str
    ready: str | None  # 1 when the replica is ready; None: a replica with samples is ready
    created: str | None = None  # instant queries over the whole history ($range): per replica, when it was created ...
    ready_time: str | None = None  # ... and when it first became ready (kube-state-metrics)


def kubernetes_replicas(namespace: str, pod_regex: str, container: str) -> ReplicaQueries:
    """cAdvisor and kube-state-metrics series of a Deployment's pods (the controller's templates)."""
    pods = f'namespace="{namespace}",pod=~"{pod_regex}"'
    containers = f'{pods},container="{container}"'
    return ReplicaQueries(
        group="pod",
        cpu=profiles.CPU_USAGE.format(pods=containers, window="$window"),
        periods=profiles.CFS_PERIODS.format(pods=containers, window="$window"),
        throttled=profiles.CFS_THROTTLED.format(pods=containers, window="$window"),
        memory=f"max by (pod) (last_over_time(container_memory_working_set_bytes{{{containers}}}[$window]))",
        ready=f'max by (pod) (last_over_time(kube_pod_status_ready{{condition="true",{pods}}}[$window]))',
        created=f"max by (pod) (max_over_time(kube_pod_created{{{pods}}}[$range]))",
        ready_time=f"min by (pod) (min_over_time(kube_pod_status_ready_time{{{pods}}}[$range]))",
    )


SWARM_TASK = "container_label_com_docker_swarm_task_name"


def swarm_replicas(service: str) -> ReplicaQueries:
    """cAdvisor's series of a Swarm service's tasks (cAdvisor labels containers with their Docker labels)."""
    mine = f'container_label_com_docker_swarm_service_name="{service}"'

    def rate(metric: str) -> str:
        return f"sum by ({SWARM_TASK}) (rate({metric}{{{mine}}}[$window]))"

    return ReplicaQueries(
        group=SWARM_TASK,
        cpu=rate("container_cpu_usage_seconds_total"),
        periods=rate("container_cpu_cfs_periods_total"),
        throttled=rate("container_cpu_cfs_throttled_periods_total"),
        memory=f"max by ({SWARM_TASK}) (last_over_time(container_memory_working_set_bytes{{{mine}}}[$window]))",
        ready=None,
    )


@dataclass(frozen=True)
class AppQueries:
    """The service's own series from a controller profile: all services at once, grouped by `label`."""

    profile: str
    selector: str  # the services' metrics, e.g. namespace="default"
    label: str  # the label naming the service

    def _fill(self, window: str) -> dict[str, str]:
        return {"app": self.selector, "by": f"by ({self.label})", "window": window}

    def requests(self, window: str) -> str:
        return profiles.PROFILES[self.profile].requests.format(**self._fill(window))

    def errors(self, window: str) -> str | None:
        template = profiles.PROFILES[self.profile].errors
        return template.format(**self._fill(window)) if template else None

    def latency_mean(self, window: str) -> str:
        profile = profiles.PROFILES[self.profile]
        if profile.latency_histogram is None:
            return profile.latency_mean.format(**self._fill(window))  # type: ignore[union-attr]
        h, fill = profile.latency_histogram, self._fill(window)
        return (f"sum by ({self.label}) (rate({h}_sum{{{fill['app']}}}[{window}])) / "
                f"sum by ({self.label}) (rate({h}_count{{{fill['app']}}}[{window}]))")

    def latency_quantile(self, quantile: float, window: str) -> str | None:
        h = profiles.PROFILES[self.profile].latency_histogram
        if h is None:
            return None
        return f"histogram_quantile({quantile:g}, sum by ({self.label}, le) (rate({h}_bucket{{{self.selector}}}[{window}])))"


@dataclass
class History:
    """One service over the window, interval by interval (NaN: unknown). Per-replica figures are
    over the replicas ready at the end of the interval."""

    window: Window
    requests_rps: np.ndarray  # answered, failures included
    errors_rps: np.ndarray
    latency_mean_s: np.ndarray
    latency_quantile_s: np.ndarray
    ready: np.ndarray  # ready replicas at the end of the interval
    steady: np.ndarray  # bool: the same replicas were ready all through, each with CPU and memory samples
    cpu_per_replica: np.ndarray  # cores
    memory_per_replica: np.ndarray  # working set bytes
    throttled_fraction: np.ndarray  # throttled share of CFS periods
    startups_s: dict[str, float] = field(default_factory=dict)  # created -> first ready, per replica created in the window
    replicas_seen: int = 0

    @property
    def rate_per_replica(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.ready > 0, self.requests_rps / np.maximum(self.ready, 1), np.nan)


def _own(series: dict[Labels, np.ndarray], label: str, name: str) -> np.ndarray | None:
    for labels, values in series.items():
        if dict(labels).get(label) == name:
            return values
    return None


def _by_replica(series: dict[Labels, np.ndarray], group: str) -> dict[str, np.ndarray]:
    return {dict(labels).get(group, ""): values for labels, values in series.items()}


def read_history(prometheus: PrometheusHistory, window: Window, service: str, app: AppQueries, replicas: ReplicaQueries,
                 slo_quantile: float) -> History:
    """Every series calibrate needs, in a handful of range queries, and the replicas' start-ups."""
    step = f"{window.step:g}s"
    found = prometheus.range(app.requests(step), window, f"the request rate ({app.profile} profile)")
    requests = _own(found, app.label, service)
    if requests is None or not np.isfinite(requests).any():
        others = sorted({dict(labels).get(app.label, "") for labels in found} - {""})
        seen = f"; services with requests there: {', '.join(others[:8])}" if others else ""
        raise UserInputError(f"--prometheus {prometheus.url}", f"no request series for {app.label}={service!r} in "
                                                               f"{when(window.start)}..{when(window.end)} ({app.requests(step)}){seen}")
    error_query = app.errors(step)
    errors = _own(prometheus.range(error_query, window, "the error rate"), app.label, service) if error_query else None
    mean = _own(prometheus.range(app.latency_mean(step), window, "the mean latency", ratio=True), app.label, service)
    quantile_query = app.latency_quantile(slo_quantile, step)
    quantile = (_own(prometheus.range(quantile_query, window, "the latency quantile", ratio=True), app.label, service)
                if quantile_query else None)

    def fill(template: str) -> str:
        return template.replace("$window", step)

    cpu = _by_replica(prometheus.range(fill(replicas.cpu), window, "container CPU"), replicas.group)
    if not cpu:
        raise UserInputError(f"--prometheus {prometheus.url}", f"no container CPU series for {service} ({fill(replicas.cpu)}): "
                                                               "is cAdvisor scraped?")
    memory = _by_replica(prometheus.range(fill(replicas.memory), window, "container memory"), replicas.group)
    periods = _by_replica(prometheus.range(fill(replicas.periods), window, "CFS periods"), replicas.group)
    throttled = _by_replica(prometheus.range(fill(replicas.throttled), window, "CFS throttled periods"), replicas.group)
    ready = (_by_replica(prometheus.range(fill(replicas.ready), window, "pod readiness"), replicas.group)
             if replicas.ready else {name: np.where(np.isfinite(v), 1.0, np.nan) for name, v in cpu.items()})
    history = _assemble(window, requests, errors, mean, quantile, cpu, memory, periods, throttled, ready)
    history.startups_s = _startups(prometheus, window, replicas)
    return history


def _assemble(window: Window, requests: np.ndarray, errors: np.ndarray | None, mean: np.ndarray | None,
              quantile: np.ndarray | None, cpu: dict[str, np.ndarray], memory: dict[str, np.ndarray],
              periods: dict[str, np.ndarray], throttled: dict[str, np.ndarray], ready: dict[str, np.ndarray]) -> History:
    n = window.count
    names = sorted(set(ready) | set(cpu))
    nothing = np.full(n, np.nan)
    is_ready = np.array([(ready.get(r, nothing) == 1.0) for r in names]).reshape(len(names), n)
    measured = np.array([np.isfinite(cpu.get(r, nothing)) & np.isfinite(memory.get(r, nothing)) for r in names]).reshape(len(names), n)
    count = is_ready.sum(axis=0).astype(float)
    same = np.zeros(n, dtype=bool)
    same[1:] = (is_ready[:, 1:] == is_ready[:, :-1]).all(axis=0)
    steady = same & (count > 0) & np.isfinite(requests) & ~(is_ready & ~measured).any(axis=0)

    def over_ready(values: dict[str, np.ndarray], how: str) -> np.ndarray:
        stacked = np.array([np.where(is_ready[k], values.get(r, nothing), np.nan) for k, r in enumerate(names)]).reshape(len(names), n)
        with np.errstate(invalid="ignore"):
            total = np.nansum(stacked, axis=0)
        have = np.isfinite(stacked).sum(axis=0)
        return np.where(have > 0, total / (np.maximum(have, 1) if how == "mean" else 1.0), np.nan)

    with np.errstate(divide="ignore", invalid="ignore"):
        all_periods = over_ready(periods, "sum")
        share = np.where(all_periods > 0, over_ready(throttled, "sum") / all_periods, 0.0)
    return History(
        window=window, requests_rps=requests, errors_rps=errors if errors is not None else np.zeros(n),
        latency_mean_s=mean if mean is not None else nothing.copy(), latency_quantile_s=quantile if quantile is not None else nothing.copy(),
        ready=count, steady=steady, cpu_per_replica=over_ready(cpu, "mean"), memory_per_replica=over_ready(memory, "mean"),
        throttled_fraction=share, replicas_seen=len(names),
    )


def _startups(prometheus: PrometheusHistory, window: Window, replicas: ReplicaQueries) -> dict[str, float]:
    """Created -> first ready of every replica created inside the window (kube-state-metrics' timestamps)."""
    if replicas.created is None or replicas.ready_time is None:
        return {}
    span = f"{int(window.count * window.step)}s"
    created = {labels.get(replicas.group, ""): v for labels, v in
               prometheus.instant(replicas.created.replace("$range", span), window.end, "pod creation times")}
    ready = {labels.get(replicas.group, ""): v for labels, v in
             prometheus.instant(replicas.ready_time.replace("$range", span), window.end, "pod ready times")}
    return {pod: ready[pod] - created[pod] for pod in created
            if pod in ready and created[pod] >= window.start and ready[pod] >= created[pod]}
