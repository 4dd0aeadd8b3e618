"""A VPA-style resource recommender: decaying histograms, a percentile plus a margin, OOM bumps.

Modelled on the Kubernetes Vertical Pod Autoscaler's recommender: usage samples go into
histograms with exponentially growing buckets, each sample weighted by 2^(age / half-life) so
recent usage counts more; the target is a percentile of each histogram plus a safety margin;
an OOM kill adds a memory sample above the limit that was hit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rlscale.env.state import ServiceState

MIB = 2.0**20


@dataclass(frozen=True)
class VpaSettings:
    half_life_s: float = 3600.0  # VPA's default is 24 h; runs here last hours
    target_percentile: float = 0.9
    margin: float = 0.15
    oom_bump_ratio: float = 1.2
    oom_min_bump_bytes: float = 100 * MIB
    update_threshold: float = 0.1  # apply a recommendation that moved by more than 10%
    min_update_interval_s: float = 600.0


class DecayingHistogram:
    """Exponential buckets from `first` growing by `ratio`; weights decay with a half-life."""

    def __init__(self, first: float, ratio: float, buckets: int, half_life_s: float) -> None:
        self.first, self.ratio, self.half_life_s = first, ratio, half_life_s
        self.weights = [0.0] * buckets
        self.reference_time: float | None = None

    def add(self, value: float, weight: float, time_s: float) -> None:
        if self.reference_time is None:
            self.reference_time = time_s
        # Weight grows with time instead of old weights shrinking (VPA's trick); rescale rarely.
        exponent = (time_s - self.reference_time) / self.half_life_s
        if exponent > 50:
            factor = 2.0**-exponent
            self.weights = [w * factor for w in self.weights]
            self.reference_time, exponent = time_s, 0.0
        self.weights[self._bucket(value)] += weight * 2.0**exponent

    def percentile(self, p: float) -> float:
        """The upper bound of the bucket holding the p-th weighted percentile (0 if empty)."""
        total = sum(self.weights)
        if total <= 0:
            return 0.0
        running = 0.0
        for i, w in enumerate(self.weights):
            running += w
            if running >= p * total:
                return self.first * self.ratio ** (i + 1)
        return self.first * self.ratio ** len(self.weights)

    def _bucket(self, value: float) -> int:
        if value <= self.first:
            return 0
        return min(len(self.weights) - 1, int(math.log(value / self.first) / math.log(self.ratio)))


class VpaRecommender:
    """CPU and memory recommendations for one service's containers (per replica)."""

    def __init__(self, settings: VpaSettings) -> None:
        self.settings = settings
        self.cpu = DecayingHistogram(0.01, 1.05, 176, settings.half_life_s)  # 10m .. ~50 cores
        self.memory = DecayingHistogram(10 * MIB, 1.05, 176, settings.half_life_s)  # 10 MiB .. ~50 TiB
        self.samples = 0
        self.oom_floor = 0.0  # after an OOM kill, memory never drops below the bumped limit

    def observe(self, state: ServiceState) -> None:
        if state.replicas_ready > 0:
            self.cpu.add(state.cpu_usage, max(state.cpu_request, 0.01), state.time_s)
            self.memory.add(state.memory_working_set, 1.0, state.time_s)
            self.samples += 1
        if state.oom_kills > 0:
            bump = max(state.memory_limit * self.settings.oom_bump_ratio, state.memory_limit + self.settings.oom_min_bump_bytes)
            self.memory.add(bump, 1.0, state.time_s)
            self.oom_floor = max(self.oom_floor, bump)
            self.samples += 1

    def recommendation(self) -> tuple[float, float]:
        """(CPU request, memory request): the target percentile plus the margin."""
        p, scale = self.settings.target_percentile, 1.0 + self.settings.margin
        return self.cpu.percentile(p) * scale, max(self.memory.percentile(p) * scale, self.oom_floor)
