"""The simulator's request and CPU model beyond M/M/c: per-request overhead, idle CPU, and CPU limits
as CFS quotas per period (checked against an independent discrete-event simulation of CFS)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlscale.env.queueing import cfs_throttled_share, steady_state
from rlscale.env.simulator import Simulator

from conftest import make_scenario

CPR = 0.01  # core-seconds per request
PERIOD_S = 0.1


def run(rate: float, *, limit: float, concurrency: int = 1, overhead: float = 0.0, idle: float = 0.0, cfs_ms: int = 0,
        seconds: int = 900, request: float | None = None, bounds: tuple[int, int] = (1, 1), target: int = 70, work_cv: float = 1.0,
        cores: float = 1.0) -> Simulator:
    scenario = make_scenario({
        "workload": {"kind": "step", "base_rps": rate, "step_rps": rate, "at_s": 0},
        "request": {"cpu_seconds": CPR, "memory": 0, "overhead_s": overhead, "cpu_cv": work_cv, "cores": cores},
        "replica": {"concurrency": concurrency, "idle_cpu": idle},
        "resources": {"requests": {"cpu": request or limit}, "limits": {"cpu": limit}},
        "replicas": bounds[0], "bounds": {"replicas": list(bounds), "cpu_limit": [0.05, 4]},
        "hpa": {"target_cpu_utilization": target},
    }, cluster={"cfs_period_ms": cfs_ms})
    sim = Simulator(scenario, np.random.default_rng(0), duration_s=seconds)
    sim.advance(seconds)
    return sim


def mean_latency(sim: Simulator) -> float:
    """The last interval's mean latency (what a latency histogram's sum / count shows)."""
    return sim.service("svc").stats.latency_mean


@pytest.mark.parametrize("overhead", [0.005, 0.05])
def test_the_overhead_delays_every_answer_and_costs_no_worker(overhead: float) -> None:
    plain, slow = run(40.0, limit=1.0), run(40.0, limit=1.0, overhead=overhead)
    assert mean_latency(slow) == pytest.approx(mean_latency(plain) + overhead, rel=1e-6)
    plain, slow = plain.state("svc"), slow.state("svc")
    assert slow.latency_quantile_s == pytest.approx(plain.latency_quantile_s + overhead, rel=1e-3)
    assert (slow.cpu_usage, slow.memory_working_set) == (plain.cpu_usage, plain.memory_working_set)


@pytest.mark.parametrize("idle, expected", [(0.0, 0.3), (0.1, 0.4), (0.9, 1.0)])  # 30 requests/s x 10 ms = 0.3 cores of work
def test_idle_cpu_adds_to_the_work_up_to_the_limit(idle: float, expected: float) -> None:
    assert run(30.0, limit=1.0, concurrency=2, idle=idle).state("svc").cpu_usage == pytest.approx(expected, rel=1e-3)


def test_idle_cpu_takes_its_part_of_the_limit_before_the_requests() -> None:
    """A quarter core with 0.05 idle cores leaves 0.2 cores to requests of 10 ms: 20 requests/s, not 25."""
    idle_sim = run(18.0, limit=0.25, idle=0.05)
    assert mean_latency(idle_sim) == pytest.approx(mean_latency(run(18.0, limit=0.2)), rel=1e-6)  # 90% busy ...
    assert mean_latency(idle_sim) > 2 * mean_latency(run(18.0, limit=0.25))  # ... not 72%
    idle = idle_sim.state("svc")
    assert idle.cpu_usage == pytest.approx(18.0 * CPR + 0.05, rel=1e-3)


def test_the_hpa_sees_idle_cpu() -> None:
    """0.3 cores of work on a 1-core request under a 50% target needs one replica; with 0.4 idle cores, two."""
    calm = run(30.0, limit=2.0, request=1.0, bounds=(1, 4), target=50, seconds=600)
    busy = run(30.0, limit=2.0, request=1.0, bounds=(1, 4), target=50, idle=0.4, seconds=600)
    assert calm.state("svc").replicas_desired == 1 and busy.state("svc").replicas_desired == 2


def test_a_limit_that_never_binds_is_the_same_under_cfs() -> None:
    fluid_sim, cfs_sim = run(60.0, limit=2.0, concurrency=2), run(60.0, limit=2.0, concurrency=2, cfs_ms=100)
    fluid, cfs = fluid_sim.state("svc"), cfs_sim.state("svc")
    assert (mean_latency(cfs_sim), cfs.cpu_throttled_fraction) == (mean_latency(fluid_sim), fluid.cpu_throttled_fraction) == \
        (pytest.approx(mean_latency(fluid_sim)), 0.0)


def test_the_throttled_share_counts_periods_whose_work_exceeds_the_quota() -> None:
    """By hand for an M/M/1 replica (N0 geometric), Poisson arrivals in the period and exponential work:
    P(work of N0 + A > q | N0 + A > 0), with P(work of n > q) = P(Poisson(q) < n)."""
    mu, lam, q = 25.0, 10.0, 2.5
    state = steady_state(1, mu, lam)
    rho, a = lam / mu, lam * PERIOD_S
    terms = 80
    p_n = [(1 - rho) * rho**n for n in range(terms)]
    p_a = [math.exp(-a) * a**j / math.factorial(j) for j in range(terms)]
    p_q = [math.exp(-q) * q**j / math.factorial(j) for j in range(terms)]
    throttled = sum(p_n[i] * p_a[j] * sum(p_q[:i + j]) for i in range(terms) for j in range(terms - i))
    assert cfs_throttled_share(state, PERIOD_S, q) == pytest.approx(throttled / (1 - p_n[0] * p_a[0]), rel=1e-6)
    assert cfs_throttled_share(steady_state(1, mu, 1.0), PERIOD_S, 20.0) < 1e-6  # a quota of 20 requests at 4% load: never
    shares = [cfs_throttled_share(steady_state(1, mu, r), PERIOD_S, q) for r in (2.0, 8.0, 16.0, 24.0)]
    assert shares == sorted(shares) and shares[-1] > 0.9  # more load, more throttled periods


def cfs_des(rate: float, limit: float, work_cv: float = 1.0, cores: float = 1.0, seconds: float = 900.0,
            seed: int = 1) -> tuple[float, float, float]:
    """(mean and p95 latency, throttled share of active periods) of one FCFS worker under a CFS quota: in each
    100 ms period it runs at `cores` until it has used limit x 100 ms, then waits for the next. The work per
    request is gamma-distributed with mean CPR and coefficient of variation `work_cv` (0: all alike)."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, int(rate * seconds)))
    works = rng.gamma(work_cv**-2, CPR * work_cv**2, arrivals.size) if work_cv > 0 else np.full(arrivals.size, CPR)
    quota = limit * PERIOD_S
    free_at, period, used = 0.0, -1, 0.0  # the period the worker last ran in, and the quota it used there
    latencies, active, throttled = [], set(), set()
    for arrival, work in zip(arrivals, works):
        t = max(arrival, free_at)
        here = max(period, int(t // PERIOD_S))
        while True:
            if here != period:
                period, used = here, 0.0
            active.add(here)
            ran = min(work, quota - used, ((here + 1) * PERIOD_S - t) * cores)
            work, used, t = work - ran, used + ran, t + ran / cores
            if work <= 1e-12:
                break
            if used >= quota - 1e-12:
                throttled.add(here)  # the quota is spent with work left: wait for the next period
            here += 1
            t = max(t, here * PERIOD_S)
        free_at = t
        latencies.append(t - arrival)
    kept = np.array(latencies[len(latencies) // 10:])  # the first tenth warms up
    return float(np.mean(kept)), float(np.quantile(kept, 0.95)), len(throttled) / len(active)


@pytest.mark.parametrize("work_cv, cores", [(1.0, 1.0), (0.0, 1.0), (0.5, 2.0)])  # exponential, a fixed forward pass, two threads
@pytest.mark.parametrize("limit", [0.25, 0.5])
@pytest.mark.parametrize("utilisation", [0.3, 0.6, 0.8])
def test_cfs_limits_follow_a_discrete_event_simulation_of_cfs(work_cv: float, cores: float, limit: float, utilisation: float) -> None:
    """Throttled share within 0.05 and mean latency within 20% of the DES (35% for requests running on two cores,
    whose throttled ones the limit's queue makes too slow); the fluid share misses both by more."""
    rate = utilisation * limit / CPR
    des_mean, des_p95, des_throttled = cfs_des(rate, limit, work_cv, cores)
    fluid_sim = run(rate, limit=limit, work_cv=work_cv, cores=cores)
    cfs_sim = run(rate, limit=limit, cfs_ms=100, work_cv=work_cv, cores=cores)
    fluid, cfs = fluid_sim.state("svc"), cfs_sim.state("svc")
    assert cfs.cpu_throttled_fraction == pytest.approx(des_throttled, abs=0.05)
    assert mean_latency(cfs_sim) == pytest.approx(des_mean, rel=0.2 if cores <= 1.0 else 0.35)
    assert cfs.latency_quantile_s == pytest.approx(des_p95, rel=0.5 if utilisation < 0.5 else 0.25)  # a low load's tail is its shape
    assert abs(mean_latency(cfs_sim) - des_mean) < abs(mean_latency(fluid_sim) - des_mean)
    assert cfs.cpu_usage == pytest.approx(fluid.cpu_usage)  # the same work, the same capacity
