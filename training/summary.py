"""A run's figures per service, accumulated interval by interval.

`ServiceSummary.add` takes each interval's `IntervalStats` and the state observed after it;
`figures()` gives the numbers a user
compares policies by: cost, SLO violations, latency, drops, OOM kills, scaling actions, and
what was reserved. The run-wide latency quantile is read from a latency histogram summed over
the intervals (each interval contributes its exact mixture distribution at the bucket edges).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rlscale.env.queueing import mixture_survival
from rlscale.env.runtime import IntervalStats
from rlscale.env.scenario import ServiceSpec
from rlscale.env.state import ServiceState

# Log-spaced latency bucket edges from 1 ms to 10 min.
LATENCY_EDGES_S = np.geomspace(1e-3, 600.0, 60)


@dataclass
class ServiceSummary:
    spec: ServiceSpec
    seconds: int = 0
    intervals: int = 0
    violating_intervals: int = 0
    arrivals: float = 0.0
    served: float = 0.0
    dropped: float = 0.0
    slow_requests: float = 0.0
    cost: float = 0.0
    replica_seconds: float = 0.0
    ready_replica_seconds: float = 0.0
    cpu_request_core_seconds: float = 0.0
    cpu_used_core_seconds: float = 0.0
    oom_kills: int = 0
    preemptions: int = 0
    scaling_actions: int = 0
    max_replicas: int = 0
    slower_than: np.ndarray = field(default_factory=lambda: np.zeros(len(LATENCY_EDGES_S)))
    # Interval by interval (when recorded): for plots of a run over time.
    series: dict[str, list[float]] | None = None
    # Decisions a learned policy's safety net handed back to the HPA, by reason
    fallbacks: dict[str, int] = field(default_factory=dict)

    def add(self, stats: IntervalStats, state: ServiceState) -> None:
        spec = self.spec
        self.seconds += stats.seconds
        self.intervals += 1
        requests = stats.arrivals
        if requests > 0:
            self.violating_intervals += state.latency_quantile_s > spec.slo_latency_s
            self.slow_requests += requests * state.slo_violation_fraction
            for i, edge in enumerate(LATENCY_EDGES_S):
                self.slower_than[i] += requests * mixture_survival(stats.components, stats.dropped, float(edge))
        self.arrivals += requests
        self.served += stats.served
        self.dropped += stats.dropped
        self.cost += stats.cost
        self.replica_seconds += stats.scheduled_replica_seconds
        self.ready_replica_seconds += stats.ready_replica_seconds
        self.cpu_request_core_seconds += stats.cpu_request_core_seconds
        self.cpu_used_core_seconds += stats.cpu_core_seconds
        self.oom_kills += stats.oom_kills
        self.preemptions += stats.preemptions
        self.scaling_actions += stats.replica_changes + stats.resource_changes
        self.max_replicas = max(self.max_replicas, state.replicas_desired)
        if self.series is not None:
            for key, value in (
                ("time_s", state.time_s),
                ("load_rps", state.load_rps),
                ("replicas_desired", state.replicas_desired),
                ("replicas_ready", state.replicas_ready),
                ("latency_s", state.latency_quantile_s),
                ("cost", stats.cost),
            ):
                self.series.setdefault(key, []).append(float(value))

    def latency_quantile(self, quantile: float) -> float:
        """The run-wide latency quantile, interpolated on the log-spaced histogram."""
        return histogram_quantile(self.slower_than, self.arrivals, quantile, self.spec.timeout_s)

    def figures(self) -> dict[str, float]:
        hours = max(self.seconds, 1) / 3600.0
        return {
            "cost": self.cost,
            "slo_violation_rate": self.violating_intervals / max(self.intervals, 1),
            "slow_request_rate": self.slow_requests / self.arrivals if self.arrivals else 0.0,
            "p95_latency_s": self.latency_quantile(0.95),
            "slo_quantile_latency_s": self.latency_quantile(self.spec.slo_quantile),
            "drop_rate": self.dropped / self.arrivals if self.arrivals else 0.0,
            "oom_kills": float(self.oom_kills),
            "preemptions": float(self.preemptions),
            "scaling_actions": float(self.scaling_actions),
            "replica_hours": self.replica_seconds / 3600.0,
            "mean_replicas": self.ready_replica_seconds / 3600.0 / hours,
            "max_replicas": float(self.max_replicas),
            "cpu_core_hours": self.cpu_request_core_seconds / 3600.0,
            "cpu_used_core_hours": self.cpu_used_core_seconds / 3600.0,
            "requests": self.arrivals,
        }



def histogram_quantile(slower_than: np.ndarray, requests: float, quantile: float, cap: float) -> float:
    """A latency quantile from request counts slower than each of `LATENCY_EDGES_S` (log-linear)."""
    if requests <= 0:
        return 0.0
    survival = slower_than / requests
    target = 1.0 - quantile
    below = np.flatnonzero(survival <= target)
    if below.size == 0:
        return float(cap)
    i = int(below[0])
    if i == 0:
        return float(LATENCY_EDGES_S[0])
    s0, s1 = survival[i - 1], survival[i]
    x0, x1 = np.log(LATENCY_EDGES_S[i - 1]), np.log(LATENCY_EDGES_S[i])
    fraction = (s0 - target) / (s0 - s1) if s0 > s1 else 1.0
    return float(min(np.exp(x0 + fraction * (x1 - x0)), cap))
