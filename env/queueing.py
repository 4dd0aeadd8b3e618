"""Closed-form queueing for one replica: an M/M/c queue (Erlang C) and latency mixtures.

A replica is modelled as `c` servers sharing one queue, each serving requests at rate `mu`.
Everything here is a pure function of (c, mu, lam): the probability of waiting, the
distribution of the number in the replica, and the response-time distribution
T = W + S, where S ~ Exp(mu) and W is 0 with probability 1 - C, else Exp(c*mu - lam).

An interval's latency is a *mixture* of such distributions (load and capacity change inside
an interval, and an overload backlog shifts latency up), so quantiles are taken of a
mixture of `LatencyComponent`s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_WORK_PHASES = 16  # work less variable than Erlang-16 (cv 0.25) counts as that


def replica_servers(cpu_limit: float, concurrency: int, cpu_per_request: float, cores_per_request: float) -> tuple[int, float]:
    """(servers, service rate per server) of a replica.

    A replica runs `concurrency` workers; one request can use up to `cores_per_request` cores
    and needs `cpu_per_request` core-seconds. The CPU limit caps the cores all workers use
    together, so the replica's capacity is min(concurrency * cores_per_request, cpu_limit) /
    cpu_per_request requests/s. The servers are the requests that can run at once without
    sharing the quota; their rate is set so that the capacity is exact.
    """
    usable_cores = min(concurrency * cores_per_request, cpu_limit)
    servers = max(1, min(concurrency, math.ceil(usable_cores / cores_per_request - 1e-9)))
    return servers, usable_cores / cpu_per_request / servers


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability that an arrival waits in an M/M/c queue (offered_load = lam/mu < servers)."""
    blocking = 1.0  # Erlang B by its stable recursion, then converted to C
    for k in range(1, servers + 1):
        blocking = offered_load * blocking / (k + offered_load * blocking)
    rho = offered_load / servers
    return blocking / (1.0 - rho * (1.0 - blocking))


@dataclass(slots=True)
class SteadyState:
    """The stationary M/M/c queue of one replica at arrival rate `lam` (requires lam < c*mu)."""

    servers: int
    mu: float
    lam: float
    wait_probability: float  # Erlang C

    @property
    def theta(self) -> float:
        """Rate of the waiting time given that a request waits: c*mu - lam."""
        return self.servers * self.mu - self.lam

    @property
    def mean_response(self) -> float:
        return self.wait_probability / self.theta + 1.0 / self.mu

    def response_survival(self, t: float) -> float:
        """P(T > t) for the response time T = W + S."""
        if t <= 0.0:
            return 1.0
        return _survival(t, self.mu, self.theta, self.wait_probability)

    def prob_in_system(self, n: int) -> float:
        """P(N = n), N the number of requests in the replica (in service or queued)."""
        c, a = self.servers, self.lam / self.mu
        rho = a / c
        p_c = self.wait_probability * (1.0 - rho)  # P(N = c), since P(N >= c) = C
        if n >= c:
            return p_c * rho ** (n - c)
        p = p_c
        for k in range(c, n, -1):  # P(N = k-1) = P(N = k) * k / a
            p *= k / a if a > 0 else 0.0
        return p

    def prob_at_least(self, n: int) -> float:
        """P(N >= n)."""
        if n <= 0:
            return 1.0
        if n >= self.servers:
            rho = self.lam / (self.mu * self.servers)
            return self.wait_probability * rho ** (n - self.servers)
        return max(0.0, 1.0 - sum(self.prob_in_system(k) for k in range(n)))

    def mean_busy_workers(self, workers: int) -> float:
        """E[min(N, workers)] for workers >= servers: requests holding a worker (and its memory)."""
        c = self.servers
        busy = self.lam / self.mu  # E[min(N, c)], the mean number of busy servers
        extra = workers - c
        if extra <= 0:
            return busy
        rho = self.lam / (self.mu * c)
        p_c = self.wait_probability * (1.0 - rho)
        # sum_{j=1..extra} P(N >= c + j) with a geometric tail above c
        return busy + p_c * rho * (1.0 - rho**extra) / (1.0 - rho) ** 2


def work_phases(cv: float) -> int:
    """The Erlang phases that give a request's CPU work the coefficient of variation `cv` (at most 1: exponential)."""
    return 1 if cv >= 1.0 else min(MAX_WORK_PHASES, max(1, round(1.0 / max(cv, 1e-3) ** 2)))


def wait_factor(cv: float) -> float:
    """Allen-Cunneen: the M/G/c queueing delay is the M/M/c one times (1 + cv^2) / 2."""
    return (1.0 + cv * cv) / 2.0


def cfs_throttled_share(state: SteadyState, period_s: float, quota_requests: float, work_cv: float = 1.0,
                        late_s: float = 0.0) -> float:
    """The share of a replica's active CFS periods that are throttled (what cAdvisor's counters give).

    A period is active when some request is there to run: the N0 in the replica at its start or
    one arriving in it. It is throttled when the work wanting to run in it exceeds the quota,
    which holds `quota_requests` requests' mean work: the rest of the requests in service, the
    whole work of those queued, and that of the requests arriving before its last `late_s`
    (arrivals later than that cannot use up the quota before the period ends). A request's work
    is Erlang with k = `work_phases(work_cv)` phases (k = 1: exponential, memoryless); a request in
    service has 1..k of them left, uniformly. For m phases of work, P(work > q) = P(Poisson(k q) < m).
    N0 is the M/M/c queue's, the queue above the servers geometric with its mean scaled by
    `wait_factor` (Allen-Cunneen). Checked against a discrete-event simulation of CFS
    (`tests/test_cpu_model.py`).
    """
    servers, rho = state.servers, state.lam / (state.mu * state.servers)
    factor = wait_factor(work_cv)
    decay = factor * rho / (1.0 - rho + factor * rho)  # decay / (1 - decay) = factor x rho / (1 - rho)
    arrivals = state.lam * max(0.0, period_s - late_s)
    tail = math.log(1e-12) / math.log(decay) if 0.0 < decay < 1.0 else 0.0
    size = int(min(20_000, max(32.0, tail + arrivals + 10 * math.sqrt(arrivals) + quota_requests + 10 * math.sqrt(quota_requests) + 10)))
    below = [state.prob_in_system(n) for n in range(servers)]  # fewer than the servers: all in service
    queued = state.prob_in_system(servers) / (1.0 - rho) * (1.0 - decay) * decay ** np.arange(size)  # N0 = servers + i
    arriving = _poisson(arrivals, size)
    k = work_phases(work_cv)
    enough = np.cumsum(_poisson(k * quota_requests, (size + servers + 1) * k))  # P(Poisson(k q) <= m)
    step = np.arange(size) * k

    def throttled_with(busy: int, whole: np.ndarray) -> float:
        """P(throttled) with `busy` requests in service (1..k phases left each) and P(whole requests = j) in `whole`."""
        rest = np.ones(1)
        for _ in range(busy):
            rest = np.convolve(rest, np.ones(k) / k)  # phases left of the ones in service, from `busy` on
        chance = np.zeros(size)
        for offset, p in enumerate(rest):  # P(work of m phases > q) = P(Poisson(k q) <= m - 1); none for m = 0
            m = step + busy + offset
            chance += p * np.where(m > 0, enough[np.maximum(m - 1, 0)], 0.0)
        return float(np.dot(whole, chance))

    total = sum(p * throttled_with(n, arriving) for n, p in enumerate(below))
    total += throttled_with(servers, np.convolve(queued, arriving)[:size])
    active = 1.0 - below[0] * math.exp(-state.lam * period_s)
    return float(min(1.0, max(0.0, total / active))) if active > 0.0 else 0.0


def _poisson(mean: float, size: int) -> np.ndarray:
    """P(X = 0..size-1) for X ~ Poisson(mean)."""
    if mean <= 0.0:
        return np.eye(1, size).ravel()
    log_factorial = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, size, dtype=np.float64)))))
    return np.exp(np.arange(size) * math.log(mean) - mean - log_factorial)


def steady_state(servers: int, mu: float, lam: float) -> SteadyState:
    """The M/M/c steady state; `lam` must be below the capacity servers * mu."""
    return SteadyState(servers, mu, lam, erlang_c(servers, lam / mu) if lam > 0 else 0.0)


def _survival(t: float, mu: float, theta: float, wait_probability: float) -> float:
    no_wait = math.exp(-mu * t)
    if abs(theta - mu) < 1e-9 * mu:
        waited = (1.0 + mu * t) * no_wait
    else:
        waited = (theta * no_wait - mu * math.exp(-theta * t)) / (theta - mu)
    return (1.0 - wait_probability) * no_wait + wait_probability * waited


def _density(t: float, mu: float, theta: float, wait_probability: float) -> float:
    """The response-time density at t > 0 (minus the derivative of `_survival`)."""
    no_wait = math.exp(-mu * t)
    if abs(theta - mu) < 1e-9 * mu:
        waited = mu * mu * t * no_wait
    else:
        waited = theta * mu * (no_wait - math.exp(-theta * t)) / (theta - mu)
    return (1.0 - wait_probability) * mu * no_wait + wait_probability * waited


# ------------------------------------------------------------------------------------------
# Mixtures


@dataclass(slots=True)
class LatencyComponent:
    """`weight` requests whose latency is `shift` + an M/M/c response (mu, theta, C)."""

    weight: float
    shift: float
    mu: float
    theta: float
    wait_probability: float

    def survival(self, t: float) -> float:
        x = t - self.shift
        return 1.0 if x <= 0.0 else _survival(x, self.mu, self.theta, self.wait_probability)

    def density(self, t: float) -> float:
        x = t - self.shift
        return 0.0 if x <= 0.0 else _density(x, self.mu, self.theta, self.wait_probability)

    @property
    def mean(self) -> float:
        return self.shift + self.wait_probability / self.theta + 1.0 / self.mu


def mixture_survival(components: list[LatencyComponent], lost: float, t: float) -> float:
    """P(latency > t) over all requests, `lost` of them never answered (infinitely slow)."""
    total = lost + sum(c.weight for c in components)
    if total <= 0.0:
        return 0.0
    return (lost + sum(c.weight * c.survival(t) for c in components)) / total


def mixture_quantile(components: list[LatencyComponent], lost: float, quantile: float, cap: float) -> float:
    """The `quantile` of latency over all requests, capped at `cap` (the request timeout).

    Lost requests count as slower than anything, so when more than 1 - quantile of the
    requests were lost the answer is `cap`. Newton's method on the mixture's survival function,
    kept inside a shrinking bracket (bisection when a step would leave it).
    """
    total = lost + sum(c.weight for c in components)
    if total <= 0.0:
        return 0.0
    target = (1.0 - quantile) * total  # in request counts: no division inside the loop
    if lost + sum(c.weight * c.survival(cap) for c in components) >= target:
        return cap
    low, high = 0.0, cap
    t = min(cap, sum(c.weight * c.mean for c in components) / max(total - lost, 1e-300) * -math.log(1.0 - quantile))
    for _ in range(100):
        excess = lost + sum(c.weight * c.survival(t) for c in components) - target
        if abs(excess) <= 1e-12 * total or high - low <= 1e-9 * high:
            break
        if excess > 0.0:
            low = t
        else:
            high = t
        density = sum(c.weight * c.density(t) for c in components)
        step = t + excess / density if density > 0.0 else -1.0
        t = step if low < step < high else 0.5 * (low + high)
    return t
