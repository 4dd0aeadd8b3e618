"""The simulator's latency against an independent discrete-event simulation of the same queue.

The DES below knows nothing of the model: c FCFS servers, Poisson arrivals, exponential
service times, simulated customer by customer (vectorised across independent replications).
The simulator is run as a user runs it: a scenario with one replica of c workers at a constant
load, and its reported mean and p95 latency are compared with the DES's.
"""

from __future__ import annotations

import numpy as np
import pytest

from rlscale.env.simulator import Simulator

from conftest import make_scenario

SERVICE_RATE = 10.0  # requests/s per worker (0.1 core-seconds at one core)
REPLICATIONS = 200
CUSTOMERS = 12_000
WARM_UP = 2_000


def des_response_times(servers: int, utilization: float, seed: int) -> np.ndarray:
    """Response times of an M/M/c FCFS queue, after a warm-up, pooled over replications."""
    rng = np.random.default_rng(seed)
    arrival_rate = utilization * servers * SERVICE_RATE
    gaps = rng.exponential(1.0 / arrival_rate, size=(CUSTOMERS, REPLICATIONS))
    services = rng.exponential(1.0 / SERVICE_RATE, size=(CUSTOMERS, REPLICATIONS))
    arrivals = np.cumsum(gaps, axis=0)
    free_at = np.zeros((REPLICATIONS, servers))  # when each server finishes its current work
    rows = np.arange(REPLICATIONS)
    responses = np.empty((CUSTOMERS, REPLICATIONS))
    for n in range(CUSTOMERS):
        server = free_at.argmin(axis=1)
        start = np.maximum(arrivals[n], free_at[rows, server])
        finish = start + services[n]
        free_at[rows, server] = finish
        responses[n] = finish - arrivals[n]
    return responses[WARM_UP:].ravel()


def simulated_latency(servers: int, utilization: float) -> tuple[float, float]:
    rate = utilization * servers * SERVICE_RATE
    scenario = make_scenario(
        {
            "workload": {"kind": "step", "base_rps": rate, "step_rps": rate, "at_s": 0},
            "request": {"cpu_seconds": 1.0 / SERVICE_RATE, "memory": 0},
            "replica": {"concurrency": servers},
            "resources": {"requests": {"cpu": servers}, "limits": {"cpu": servers}},
            "replicas": 1,
            "bounds": {"replicas": [1, 1]},
        }
    )
    sim = Simulator(scenario, np.random.default_rng(0), duration_s=600)
    sim.advance(600)
    stats = sim.service("svc").stats
    assert stats.dropped < 1e-6 and stats.backlog == 0  # the timeout is far away
    return stats.latency_mean, stats.latency_quantile(0.95, cap=1000.0)


@pytest.mark.parametrize("servers", [1, 4, 16])
@pytest.mark.parametrize("utilization", [0.3, 0.5, 0.7, 0.9, 0.95])
def test_mean_and_p95_latency_match_a_discrete_event_simulation(servers: int, utilization: float) -> None:
    des = des_response_times(servers, utilization, seed=servers * 100 + int(utilization * 100))
    mean, p95 = simulated_latency(servers, utilization)
    assert mean == pytest.approx(des.mean(), rel=0.10)
    assert p95 == pytest.approx(np.quantile(des, 0.95), rel=0.10)
