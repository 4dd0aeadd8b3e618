"""What one service's ready replicas do with their load over a span of seconds.

Pure functions: given the ready replicas (grouped by resources), the per-second arrival
rates and arrival counts, and the overload backlog carried in, return what was served,
dropped, queued, the CPU and memory used, and the latency distribution as mixture
components. The simulator calls this between events (pod start-ups, HPA syncs, ...), when the
set of ready replicas is fixed.

Model (see DESIGN.md, "Model semantics"):
- Load is balanced in proportion to replica capacity (requests go to pods with room).
- Below capacity, each replica is an M/M/c queue in steady state (`queueing.SteadyState`) at the
  span's mean rate; requests whose response would exceed the timeout are dropped.
- At or above capacity (or while a backlog drains), a fluid backlog builds at arrivals minus
  capacity, second by second; a request waits backlog / capacity; the backlog is capped at what
  capacity can clear within the timeout, the excess is dropped.
- CPU: a replica uses (served rate x CPU per request) plus its idle CPU, at most its usable
  cores: its limit, or less when node contention squeezes it (`contention.effective_cpu`); the
  idle CPU (runtime threads, scrapes) takes its part first, the requests have the rest. With a
  fluid limit it is throttled (its CFS quota runs out) while more requests run than the limit can
  give full cores to; with CFS periods (`cfs_period_s`), a request runs at full speed until the
  period's quota is spent, and the replica is throttled in the periods whose work exceeds the
  quota (`queueing.cfs_throttled_share`). A replica squeezed below its limit by its neighbours is
  slowed, not throttled.
- Latency: the M/M/c response plus the per-request overhead outside the workers. Under CFS
  periods, the throttled share of the requests is answered as the queue at the limit's rate has
  it, the rest as the workers at full speed would (`ReplicaModel.answered`). For CPU work that
  varies less (or more) than an exponential's (`work_cv`), the wait is scaled as Allen-Cunneen's
  M/G/c approximation has it and the service time is a shifted exponential of the same mean and
  variation.
- Memory: working set = base + per-request memory x requests in workers; an upward crossing
  above the limit is an OOM kill (a hazard per second in steady state; certain under overload).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rlscale.env.queueing import LatencyComponent, SteadyState, cfs_throttled_share, replica_servers, steady_state, wait_factor

LATE_SHARE_CAP = 0.25  # see `_late_s`
MIN_REQUEST_SHARE = 0.05  # idle CPU above the limit still leaves the requests this share of it (a replica that serves at all)
MIN_SERVICE_CV = 0.05  # a service time less variable than this is drawn as if it were (keeps the exponential's rate finite)


@dataclass(frozen=True, slots=True)
class ReplicaModel:
    """The queueing parameters of a replica with given limits (shared by pods with equal limits)."""

    cpu_limit: float
    memory_limit: float
    cpu_available: float  # the CPU it can use while serving: its limit, or less under node contention
    servers: int
    mu: float  # per server
    capacity: float  # requests/s per replica
    usable_cores: float
    throttle_from: int | None  # requests in the replica at which the CPU quota runs out
    oom_above: int | None  # the most requests in workers that fit in memory (None: all fit)
    workers: int
    memory_per_request: float
    base_memory: float
    service_mu: float = 0.0  # the rate a request in service is answered at (mu, or full speed under CFS)
    overhead_s: float = 0.0
    idle_cpu: float = 0.0
    cfs_period_s: float = 0.0
    quota_requests: float | None = None  # CFS: the requests' work a period's quota holds (None: never throttled)
    work_cv: float = 1.0  # coefficient of variation of a request's CPU work (1: exponential)

    def answered(self, weight: float, state: SteadyState, throttled: float = 1.0) -> list[LatencyComponent]:
        """The latency of `weight` requests answered in steady state `state` (the queue at the limit's rate).

        With a fluid limit, that queue's response. Under CFS periods a request runs at full speed
        until the period's quota is spent: the `throttled` share of them (that of the periods) is
        answered as the limit's queue has it, the rest as a queue of the workers at full speed would.
        The wait is M/M/c's scaled by `wait_factor` (Allen-Cunneen), the service time has the
        work's variation (`_service`).
        """
        if self.quota_requests is None:
            return [self._answer(weight, self.mu, state)]
        limited = self._answer(weight * min(throttled, 1.0), self.mu, state)
        if throttled >= 1.0:
            return [limited]
        full = steady_state(self.workers, self.service_mu, state.lam)
        return [limited, self._answer(weight * (1.0 - throttled), self.service_mu, full)]

    def _answer(self, weight: float, mu: float, state: SteadyState) -> LatencyComponent:
        shift, rate = self._service(mu)
        return LatencyComponent(weight, self.overhead_s + shift, rate, state.theta / wait_factor(self.work_cv), state.wait_probability)

    def queued(self, weight: float, wait_s: float) -> LatencyComponent:
        """The latency of `weight` requests that waited `wait_s` in an overload backlog, then were served at `mu`."""
        shift, rate = self._service(self.mu)
        return LatencyComponent(weight, wait_s + self.overhead_s + shift, rate, rate, 0.0)

    def _service(self, mu: float) -> tuple[float, float]:
        """(shift, rate): the service time as shift + Exp(rate), with the mean 1/mu and the work's variation (cv <= 1;
        a larger cv keeps the exponential, its queueing delay still scaled)."""
        cv = min(1.0, max(self.work_cv, MIN_SERVICE_CV))
        return (1.0 - cv) / mu, mu / cv

    def cpu(self, work_cores: float) -> float:
        return min(self.cpu_available, work_cores + self.idle_cpu)


def replica_model(
    cpu_limit: float,
    memory_limit: float,
    *,
    concurrency: int,
    cpu_per_request: float,
    cores_per_request: float,
    memory_per_request: float,
    base_memory: float,
    cpu_available: float | None = None,
    overhead_s: float = 0.0,
    idle_cpu: float = 0.0,
    cfs_period_s: float = 0.0,
    work_cv: float = 1.0,
) -> ReplicaModel:
    available = cpu_limit if cpu_available is None else min(cpu_available, cpu_limit)
    for_requests = max(available - idle_cpu, MIN_REQUEST_SHARE * available)  # the idle CPU takes its part of the quota first
    servers, mu = replica_servers(for_requests, concurrency, cpu_per_request, cores_per_request)
    usable = min(concurrency * cores_per_request, for_requests)
    quota_binds = available >= cpu_limit and for_requests < concurrency * cores_per_request
    throttle_from = int(for_requests / cores_per_request) + 1 if quota_binds else None
    cfs = cfs_period_s > 0.0 and quota_binds  # squeezed by neighbours, a request is slowed (shares), not paused (quota)
    quota_requests = for_requests * cfs_period_s / cpu_per_request if cfs else None
    if memory_per_request <= 0:
        oom_above = None if base_memory <= memory_limit else -1
    else:
        fit = math.floor((memory_limit - base_memory) / memory_per_request)
        oom_above = None if fit >= concurrency else max(fit, -1)
    return ReplicaModel(
        cpu_limit, memory_limit, available, servers, mu, servers * mu, usable, throttle_from, oom_above,
        concurrency, memory_per_request, base_memory, cores_per_request / cpu_per_request if cfs else mu,
        overhead_s, idle_cpu, cfs_period_s, quota_requests, work_cv,
    )


@dataclass(slots=True)
class Span:
    """What happened in one span; the simulator adds spans into interval statistics."""

    seconds: int = 0
    arrivals: float = 0.0
    served: float = 0.0
    dropped: float = 0.0
    backlog: float = 0.0  # still queued at the end
    cpu_per_replica: list[float] = field(default_factory=list)  # cores, per group (mean over the span)
    throttled_fraction: list[float] = field(default_factory=list)  # per group
    working_set: list[float] = field(default_factory=list)  # bytes per replica, per group
    oom_hazard: list[float] = field(default_factory=list)  # OOM kills per replica-second, per group
    overload_oom_at: int | None = None  # second (offset) at which overload OOM-kills a group
    components: list[LatencyComponent] = field(default_factory=list)


def run_span(
    models: list[ReplicaModel],
    counts: list[int],
    rates: np.ndarray,
    arrivals: np.ndarray,
    backlog: float,
    timeout_s: float,
    *,
    mean_rate: float,
    peak_rate: float,
    total_arrivals: float,
) -> Span:
    """Serve `arrivals` (counts per second; `rates` their Poisson means) with the ready replicas.

    `models[g]` describes the `counts[g]` ready replicas of group g. The caller passes the
    span's mean rate, an upper bound of its peak rate and its total arrivals (it keeps prefix
    sums); the per-second arrays are read only under overload. With no ready replica, every
    arrival and the backlog are dropped (no endpoints).
    """
    span = Span(seconds=len(arrivals), arrivals=total_arrivals)
    capacity = 0.0
    for model, count in zip(models, counts):
        capacity += model.capacity * count
    if capacity <= 0.0:
        span.dropped = total_arrivals + backlog
        return span
    if backlog <= 0.0 and (peak_rate < capacity or float(rates.max()) < capacity):
        _steady(span, models, counts, capacity, mean_rate, total_arrivals, timeout_s)
    else:
        _overloaded(span, models, counts, capacity, rates, arrivals, backlog, timeout_s)
    return span


def _steady(
    span: Span,
    models: list[ReplicaModel],
    counts: list[int],
    capacity: float,
    mean_rate: float,
    total_arrivals: float,
    timeout_s: float,
) -> None:
    load = mean_rate / capacity  # the same utilization on every replica
    for model, count in zip(models, counts):
        lam = load * model.capacity  # per replica
        state = steady_state(model.servers, model.mu, lam)
        share = total_arrivals * model.capacity * count / capacity
        throttled = throttled_share(model, state, lam)
        timed_out = share * sum(c.weight * c.survival(timeout_s) for c in model.answered(1.0, state, throttled))
        span.served += share - timed_out
        span.dropped += timed_out
        span.components.extend(model.answered(share - timed_out, state, throttled))
        span.cpu_per_replica.append(model.cpu(lam * model.usable_cores / model.capacity))
        span.throttled_fraction.append(throttled)
        busy = state.mean_busy_workers(model.workers)
        span.working_set.append(model.base_memory + model.memory_per_request * busy)
        span.oom_hazard.append(_oom_hazard(model, state, lam))


def throttled_share(model: ReplicaModel, state: SteadyState, lam: float) -> float:
    """The share of a replica's (active CFS) periods it is throttled in, at `lam` requests/s in steady state `state`."""
    if model.throttle_from is None:
        return 0.0
    if model.quota_requests is not None:
        return cfs_throttled_share(state, model.cfs_period_s, model.quota_requests, model.work_cv, _late_s(model))
    return state.prob_at_least(model.throttle_from)


def _late_s(model: ReplicaModel) -> float:
    """The end of a CFS period whose arrivals cannot use up its quota: the time the workers take to burn a
    whole quota at full speed, at most `LATE_SHARE_CAP` of the period (both fit to a DES of CFS)."""
    return min(model.quota_requests / (model.workers * model.service_mu), LATE_SHARE_CAP * model.cfs_period_s)


def _oom_hazard(model: ReplicaModel, state: SteadyState, lam: float) -> float:
    """Rate of upward crossings above the memory limit: lam * P(N = the most that fit)."""
    if model.oom_above is None:
        return 0.0
    if model.oom_above < 0:
        return math.inf  # the base alone does not fit
    return lam * state.prob_in_system(model.oom_above)


def _overloaded(
    span: Span,
    models: list[ReplicaModel],
    counts: list[int],
    capacity: float,
    rates: np.ndarray,
    arrivals: np.ndarray,
    backlog: float,
    timeout_s: float,
) -> None:
    """Second by second, with a fluid backlog, while arrivals exceed capacity or a backlog drains."""
    main = models[max(range(len(models)), key=lambda g: counts[g])]  # latency shape of the bulk
    max_backlog = capacity * timeout_s
    busy_seconds = 0.0  # replica-saturated seconds (weighted by load below capacity otherwise)
    seconds = len(arrivals)
    oom_group = next((g for g, m in enumerate(models) if m.oom_above is not None and m.oom_above < m.workers), None)
    for i in range(seconds):
        arriving = float(arrivals[i])
        wait = backlog / capacity
        queued = backlog + arriving
        served = min(queued, capacity)
        backlog = queued - served
        dropped = max(0.0, backlog - max_backlog)
        backlog -= dropped
        span.served += served
        span.dropped += dropped
        saturated = backlog > 0.0 or rates[i] >= capacity
        if saturated:
            busy_seconds += 1.0
            if oom_group is not None and span.overload_oom_at is None:
                span.overload_oom_at = i
            span.components.append(main.queued(max(arriving - dropped, 0.0), wait + 1.0 / capacity))
        else:
            busy_seconds += served / capacity
            lam = served / capacity * main.capacity
            span.components.extend(main.answered(served, steady_state(main.servers, main.mu, min(lam, main.capacity * 0.999))))
    span.backlog = backlog
    utilization = busy_seconds / seconds
    for model in models:
        span.cpu_per_replica.append(model.cpu(utilization * model.usable_cores))
        span.throttled_fraction.append(0.0 if model.throttle_from is None else utilization)
        span.working_set.append(model.base_memory + model.memory_per_request * model.workers * utilization)
        span.oom_hazard.append(0.0)
