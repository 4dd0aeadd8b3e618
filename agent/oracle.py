"""The clairvoyant oracle: the cheapest replicas and limits that meet the SLO, knowing the future.

Not deployable (it reads the load to come); it is the lower bound of cost that shows how much a
policy has left to win. At the start of a run it knows every second's request rate. For each
service it picks the memory limit that holds every worker's requests (no OOM kill) and, among
CPU limits spread over the bounds, the one whose replica plan costs least; the plan gives, at
each decision time, the fewest replicas whose steady-state latency meets the SLO (with a small
margin) at the highest rate until that decision can no longer matter: the interval, the HPA's
sync delay and the start-up time of new replicas.
"""

from __future__ import annotations

import math

import numpy as np

from rlscale.agent.policy import EpisodeContext, Policy
from rlscale.env.queueing import replica_servers, steady_state
from rlscale.env.scenario import ServiceSpec
from rlscale.env.state import Decision, ServiceState

CPU_CANDIDATES = 10
LATENCY_MARGIN = 0.95  # aim at 95% of the SLO target
MEMORY_MARGIN = 1.05


class Oracle(Policy):
    name = "oracle"

    def reset(self, context: EpisodeContext) -> None:
        super().reset(context)
        if context.future_rates is None:
            raise ValueError("the oracle needs a simulated run: it reads the future load")
        self._plans: dict[str, tuple[Decision, list[int]]] = {}
        for name in context.managed:
            self._plans[name] = self._plan(context.spec(name), context.future_rates(name))

    def decide(self, state: ServiceState) -> Decision:
        resources, replicas = self._plans[state.name]
        index = min(int(state.time_s) // self.context.scenario.decision_interval_s, len(replicas) - 1)
        return Decision(
            replicas=replicas[index],
            cpu_request=resources.cpu_request,
            cpu_limit=resources.cpu_limit,
            memory_request=resources.memory_request,
            memory_limit=resources.memory_limit,
        )

    def _plan(self, spec: ServiceSpec, rates: np.ndarray) -> tuple[Decision, list[int]]:
        scenario = self.context.scenario
        bounds = spec.bounds
        interval = scenario.decision_interval_s
        memory_limit = min(
            max((spec.base_memory + spec.memory_per_request * spec.concurrency) * MEMORY_MARGIN, bounds.min_memory_limit),
            bounds.max_memory_limit,
        )
        memory_request = memory_limit * spec.memory_request / spec.memory_limit
        peaks = _lookahead_peaks(rates, interval, interval + scenario.timings.hpa_sync_period_s + math.ceil(spec.startup_s))
        best: tuple[float, Decision, list[int]] | None = None
        for cpu_limit in _cpu_candidates(spec):
            cpu_request = cpu_limit * spec.cpu_request / spec.cpu_limit
            plan = [_replicas_needed(spec, cpu_limit, peak) for peak in peaks]
            cost = sum(plan) * scenario.prices.per_second(cpu_request, memory_request)
            if best is None or cost < best[0]:
                best = (cost, Decision(None, cpu_request, cpu_limit, memory_request, memory_limit), plan)
        assert best is not None
        return best[1], best[2]


def _cpu_candidates(spec: ServiceSpec) -> list[float]:
    low, high = spec.bounds.min_cpu_limit, spec.bounds.max_cpu_limit
    spread = np.geomspace(low, high, CPU_CANDIDATES) if high > low else np.array([low])
    return sorted({*(float(v) for v in spread), spec.cpu_limit})


def _lookahead_peaks(rates: np.ndarray, interval: int, horizon: int) -> list[float]:
    """For each decision time k * interval, the highest rate within the next `horizon` seconds."""
    peaks = []
    for start in range(0, len(rates), interval):
        window = rates[start : start + horizon]
        peaks.append(float(window.max()) if window.size else 0.0)
    return peaks


def _replicas_needed(spec: ServiceSpec, cpu_limit: float, rate: float) -> int:
    """The fewest replicas (within bounds) whose latency quantile meets the SLO at `rate`."""
    servers, mu = replica_servers(cpu_limit, spec.concurrency, spec.cpu_per_request, spec.cores_per_request)
    capacity = servers * mu
    target, allowed = spec.slo_latency_s * LATENCY_MARGIN, 1.0 - spec.slo_quantile
    n = max(spec.bounds.min_replicas, math.floor(rate / capacity) + 1)
    while n < spec.bounds.max_replicas:
        if steady_state(servers, mu, rate / n).response_survival(target) <= allowed:
            break
        n += 1
    return n
