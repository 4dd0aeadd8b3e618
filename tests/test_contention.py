"""Node CPU contention: CFS shares as water-filling, the conditional model, and its check by simulation."""

from __future__ import annotations

import numpy as np
import pytest

from rlscale.env.cfs_des import TWO_SERVICES, model_latency, simulate_node, two_services
from conftest import make_scenario
from rlscale.env.contention import CpuClaim, effective_cpu, water_fill
from rlscale.env.simulator import Simulator


@pytest.mark.parametrize(
    ("capacity", "weights", "caps", "expected"),
    [
        (4.0, [1, 3], [10, 10], [1.0, 3.0]),  # a saturated node splits 1:3 by requests
        (2.0, [1, 1], [0.5, 10], [0.5, 1.5]),  # a pod capped by its limit hands its share on
        (8.0, [1, 1, 2], [1, 2, 3], [1, 2, 3]),  # below the node's CPU everyone gets its cap
        (3.0, [1, 1, 1], [0.5, 2, 2], [0.5, 1.25, 1.25]),
        (1.0, [2, 1, 1], [1, 1, 0.1], [0.6, 0.3, 0.1]),
    ],
)
def test_water_fill_is_cfs_shares_capped_by_demand(capacity, weights, caps, expected):
    assert water_fill(capacity, weights, caps) == pytest.approx(expected)


def test_no_contention_when_the_limits_fit_the_node():
    claims = [CpuClaim(0.1, 1.0, 5.0, count=3), CpuClaim(0.5, 1.0, 5.0)]
    assert effective_cpu(4.0, claims) == [1.0, 1.0]


def test_saturated_pods_get_their_shares_by_request():
    claims = [CpuClaim(1.0, 4.0, 100.0), CpuClaim(3.0, 4.0, 100.0)]
    assert effective_cpu(4.0, claims) == pytest.approx([1.0, 3.0], rel=1e-4)


def test_an_idle_neighbour_leaves_the_node_to_a_busy_pod():
    busy, idle = CpuClaim(1.0, 2.0, 1.9), CpuClaim(1.0, 2.0, 0.0)
    assert effective_cpu(2.0, [busy, idle]) == pytest.approx([2.0, 1.0], rel=0.01)


def test_a_busier_neighbour_squeezes_more():
    light, heavy = (effective_cpu(2.0, [CpuClaim(1.0, 2.0, 0.5), CpuClaim(1.0, 2.0, u)])[0] for u in (0.3, 1.2))
    assert 1.0 < heavy < light < 2.0


# (kind, pod) -> the relative error allowed for mean and p95 latency (module docstring of contention.py)
TOLERANCE = {("weights", 0): 0.1, ("weights", 1): 0.1, ("loads", 0): 0.1, ("loads", 1): 0.1,
             ("workers", 0): 0.12, ("workers", 1): 0.35}


@pytest.mark.parametrize("kind", TWO_SERVICES)
@pytest.mark.parametrize("utilization", [0.5, 0.7, 0.85])
def test_the_model_matches_a_simulation_of_two_services_sharing_a_node(kind, utilization):
    # At 0.95 a simulation long enough to know its own latency within 10% takes minutes:
    # bench/contention.py runs that one.
    cpu, pods = two_services(kind, utilization)
    simulated = simulate_node(cpu, pods, 120_000, seed=7)
    for i, ((mean, p95), latencies) in enumerate(zip(model_latency(cpu, pods), simulated)):
        tolerance = TOLERANCE[(kind, i)]
        assert mean == pytest.approx(latencies.mean(), rel=tolerance), f"pod {i}: mean"
        assert p95 == pytest.approx(float(np.quantile(latencies, 0.95)), rel=tolerance), f"pod {i}: p95"


def test_twelve_bursting_pods_on_six_cores_serve_six_cores_of_work():
    # The shipped scenario's shape: 3 nodes x 2 cores, 12 pods requesting 0.5 and limited to 1 core.
    scenario = make_scenario(
        {"workload": {"kind": "step", "base_rps": 200, "step_rps": 200, "at_s": 0},
         "resources": {"requests": {"cpu": 0.5}, "limits": {"cpu": 1}}, "replicas": 12, "bounds": {"replicas": [12, 12]},
         "replica": {"concurrency": 4}, "hpa": {"target_cpu_utilization": 50}, "timeout_s": 5},
        node_pools=[{"name": "pool", "nodes": 3, "cpu": 2, "memory": "64Gi"}],
    )
    sim = Simulator(scenario, np.random.default_rng(0), duration_s=600)
    sim.advance(600)
    state = sim.state("svc")
    assert state.replicas_ready == 12
    served_per_s = state.load_rps * (1 - state.drop_fraction)
    assert served_per_s == pytest.approx(6.0 / 0.1, rel=0.05)  # 6 cores at 0.1 core-seconds per request, not 12
    assert state.cpu_usage * state.replicas_ready == pytest.approx(6.0, rel=0.05)


def test_limits_that_fit_the_node_change_nothing():
    fits = make_scenario({"replicas": 4, "bounds": {"replicas": [4, 4]}, "workload": {"kind": "step", "base_rps": 30,
                          "step_rps": 30, "at_s": 0}}, node_pools=[{"name": "pool", "nodes": 1, "cpu": 4, "memory": "64Gi"}])
    sim = Simulator(fits, np.random.default_rng(0), duration_s=300)
    sim.advance(300)
    assert all(p.cpu_available is None for p in sim.service("svc").pods)
