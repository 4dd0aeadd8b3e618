"""Closed forms of the queueing model against direct computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlscale.env.dynamics import replica_model, run_span
from rlscale.env.queueing import (
    LatencyComponent,
    erlang_c,
    mixture_quantile,
    mixture_survival,
    replica_servers,
    steady_state,
)


def brute_force_stationary(servers: int, mu: float, lam: float, states: int = 4000) -> np.ndarray:
    """The M/M/c birth-death chain's stationary distribution, by its balance equations."""
    weights = [1.0]
    for n in range(1, states):
        weights.append(weights[-1] * lam / (min(n, servers) * mu))
    p = np.array(weights)
    return p / p.sum()


@pytest.mark.parametrize(("servers", "mu", "lam"), [(1, 10.0, 5.0), (4, 2.0, 7.0), (16, 1.0, 15.2), (3, 5.0, 0.5)])
def test_steady_state_matches_the_birth_death_chain(servers: int, mu: float, lam: float) -> None:
    p = brute_force_stationary(servers, mu, lam)
    state = steady_state(servers, mu, lam)
    assert state.wait_probability == pytest.approx(p[servers:].sum(), rel=1e-9)
    for n in (0, 1, servers - 1, servers, servers + 3):
        assert state.prob_in_system(n) == pytest.approx(p[n], rel=1e-9, abs=1e-15)
        assert state.prob_at_least(n) == pytest.approx(p[n:].sum(), rel=1e-9, abs=1e-15)
    for workers in (servers, servers + 2, servers + 10):
        busy = sum(min(n, workers) * p[n] for n in range(len(p)))
        assert state.mean_busy_workers(workers) == pytest.approx(busy, rel=1e-9)
    # Little's law: E[T] = E[N] / lam
    assert state.mean_response == pytest.approx(sum(n * p[n] for n in range(len(p))) / lam, rel=1e-9)


def test_erlang_c_known_value() -> None:
    # Two servers, offered load 1 Erlang: C = 1/3
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("limit", "concurrency", "work", "cores", "servers", "capacity"),
    [
        (0.1, 2, 0.004, 1.0, 1, 25.0),  # a 100m limit: one request at a time at a tenth of a core
        (4.0, 4, 0.05, 1.0, 4, 80.0),  # a core per worker
        (2.5, 4, 0.05, 1.0, 3, 50.0),  # the quota shared by three at full speed
        (8.0, 2, 2.0, 2.0, 2, 2.0),  # each request uses two cores; two workers cap the replica
    ],
)
def test_replica_capacity_follows_the_cpu_limit(limit, concurrency, work, cores, servers, capacity) -> None:
    got_servers, mu = replica_servers(limit, concurrency, work, cores)
    assert got_servers == servers and got_servers * mu == pytest.approx(capacity)


def test_mixture_quantile_inverts_the_survival_function() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        components = [
            LatencyComponent(
                weight=float(rng.uniform(1, 100)),
                shift=float(rng.choice([0.0, rng.uniform(0, 2)])),
                mu=(mu := float(rng.uniform(0.5, 50))),
                theta=float(rng.choice([mu, rng.uniform(0.01, 50)])),
                wait_probability=float(rng.uniform(0, 1)),
            )
            for _ in range(int(rng.integers(1, 5)))
        ]
        lost = float(rng.choice([0.0, rng.uniform(0, 5)]))
        q = float(rng.uniform(0.5, 0.999))
        t = mixture_quantile(components, lost, q, cap=1e4)
        if t < 1e4:
            assert mixture_survival(components, lost, t) == pytest.approx(1 - q, abs=1e-7)
        else:
            assert mixture_survival(components, lost, 1e4) >= 1 - q - 1e-12


def test_latency_is_capped_when_too_many_requests_are_lost() -> None:
    component = LatencyComponent(90.0, 0.0, 10.0, 10.0, 0.0)
    assert mixture_quantile([component], lost=10.0, quantile=0.95, cap=30.0) == 30.0
    assert mixture_quantile([component], lost=1.0, quantile=0.95, cap=30.0) < 1.0


def test_overload_builds_a_backlog_and_drops_past_the_timeout() -> None:
    model = replica_model(1.0, 2**30, concurrency=1, cpu_per_request=0.1, cores_per_request=1.0,
                          memory_per_request=0.0, base_memory=0.0)  # 10 requests/s
    rates = np.full(60, 20.0)
    arrivals = np.full(60, 20.0)
    span = run_span([model], [1], rates, arrivals, 0.0, timeout_s=5.0, mean_rate=20.0, peak_rate=20.0, total_arrivals=1200.0)
    assert span.served == pytest.approx(600.0)  # capacity-bound
    assert span.backlog == pytest.approx(50.0)  # capacity x timeout: what can still be served in time
    assert span.dropped == pytest.approx(1200.0 - 600.0 - 50.0)
    assert span.cpu_per_replica == [pytest.approx(1.0)] and span.throttled_fraction == [0.0]
    # latency of the last second's arrivals: the full backlog's wait
    assert max(c.shift for c in span.components) == pytest.approx(5.0 + 0.1, rel=0.05)
    assert math.isclose(span.arrivals, span.served + span.dropped + span.backlog)
