"""The simulator's dynamics: conservation, determinism, throttling, OOM kills, placement."""

from __future__ import annotations

import numpy as np
import pytest

from rlscale.env.scenario import load_scenario
from rlscale.env.simulator import Simulator
from rlscale.env.workloads import Diurnal, Step, Trace, TraceReplay

from conftest import make_scenario

MIB = 2**20


def run(scenario, seconds: int, seed: int = 0, interval: int = 30) -> tuple[Simulator, list]:
    sim = Simulator(scenario, np.random.default_rng(seed), duration_s=seconds)
    history = []
    while sim.time_left_s > 0:
        sim.advance(min(interval, sim.time_left_s))
        history.append({svc.spec.name: (svc.stats, svc.replicas, len(svc.pods)) for svc in sim.services})
    return sim, history


def test_requests_are_conserved_through_overload_timeouts_and_ooms() -> None:
    # A load step far above what max replicas can serve, a short timeout, and a memory limit
    # that OOM-kills saturated replicas: every way a request can end is exercised.
    scenario = make_scenario(
        {
            "workload": {"kind": "step", "base_rps": 5, "step_rps": 80, "at_s": 300},
            "request": {"memory": "40Mi"},
            "replica": {"concurrency": 4, "base_memory": "100Mi"},
            "resources": {"limits": {"memory": "230Mi"}, "requests": {"memory": "200Mi"}},
            "bounds": {"replicas": [1, 4]},
            "timeout_s": 5,
        }
    )
    sim, history = run(scenario, 1800)
    arrived = sum(h["svc"][0].arrivals for h in history)
    served = sum(h["svc"][0].served for h in history)
    dropped = sum(h["svc"][0].dropped for h in history)
    queued = sim.service("svc").backlog
    assert arrived > 50_000
    assert dropped > 1_000 and sum(h["svc"][0].oom_kills for h in history) > 0
    assert arrived == pytest.approx(served + dropped + queued, abs=1e-6 * arrived)
    for h in history:  # and interval by interval, carrying the backlog
        stats = h["svc"][0]
        assert stats.served >= 0 and stats.dropped >= 0 and stats.backlog >= 0


def test_same_seed_same_run_other_seed_other_run() -> None:
    scenario = load_scenario("inference-mix")

    def fingerprint(seed: int) -> list:
        _, history = run(scenario, 3600, seed=seed)
        return [(n, round(s.arrivals, 6), round(s.served, 6), round(s.cost, 9), r) for h in history for n, (s, r, _) in h.items()]

    assert fingerprint(1) == fingerprint(1)
    assert fingerprint(1) != fingerprint(2)


def test_cpu_limit_below_demand_throttles_and_caps_usage() -> None:
    def throttling(cpu_limit: str) -> tuple[float, float]:
        scenario = make_scenario(
            {
                "workload": {"kind": "step", "base_rps": 30, "step_rps": 30, "at_s": 0},
                "request": {"cpu_seconds": 0.05},  # 1.5 cores of work at 30 rps
                "replica": {"concurrency": 4},
                "resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": cpu_limit}},
                "replicas": 1,
                "bounds": {"replicas": [1, 1], "cpu_limit": ["100m", 8]},
            }
        )
        sim, _ = run(scenario, 600, interval=600)
        state = sim.state("svc")
        return state.cpu_throttled_fraction, state.cpu_usage

    throttled, usage = throttling("2")  # 2 cores for 1.5 cores of demand, 4 workers
    assert 0.05 < throttled < 0.9 and usage == pytest.approx(1.5, rel=0.05)
    generous, _ = throttling("4")  # a core for every worker: never throttled
    assert generous == 0.0
    starved, starved_usage = throttling("1")  # below demand: saturated, throttled all the time
    assert starved == pytest.approx(1.0) and starved_usage <= 1.0 + 1e-9


def test_memory_limit_below_working_set_oom_kills_and_restarts() -> None:
    def ooms(memory_limit: str) -> tuple[int, Simulator]:
        scenario = make_scenario(
            {
                "workload": {"kind": "step", "base_rps": 25, "step_rps": 25, "at_s": 0},
                "request": {"cpu_seconds": 0.1, "memory": "50Mi"},
                "replica": {"concurrency": 4, "base_memory": "100Mi"},
                "resources": {"requests": {"cpu": 4, "memory": "128Mi"}, "limits": {"cpu": 4, "memory": memory_limit}},
                "replicas": 2,
                "bounds": {"replicas": [2, 2], "memory_limit": ["128Mi", "1Gi"]},
            }
        )
        sim, history = run(scenario, 1800)
        return sum(h["svc"][0].oom_kills for h in history), sim

    kills, sim = ooms("220Mi")  # 2 requests in flight fit; the third crosses the limit
    assert kills > 0
    pods = sim.service("svc").pods
    assert any(p.last_termination_reason == "OOMKilled" and p.restarts > 0 for p in pods)
    safe_kills, _ = ooms("400Mi")  # all 4 workers' requests fit
    assert safe_kills == 0


def test_a_model_larger_than_the_memory_limit_crash_loops() -> None:
    scenario = make_scenario(
        {
            "replica": {"base_memory": "600Mi"},
            "resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "512Mi"}},
            "replicas": 1,
            "bounds": {"replicas": [1, 1], "memory_limit": ["256Mi", "1Gi"]},
        }
    )
    sim, history = run(scenario, 900)
    (pod,) = sim.service("svc").pods
    assert not pod.ready and pod.last_termination_reason == "OOMKilled"
    # back-off doubles (10 s, 20 s, 40 s, ...) after each 10 s start-up: 5 or 6 restarts in 15 min
    assert 4 <= pod.restarts <= 7
    arrived = sum(h["svc"][0].arrivals for h in history)
    assert sum(h["svc"][0].dropped for h in history) == pytest.approx(arrived)  # nothing can serve


def test_pods_that_fit_nowhere_stay_pending() -> None:
    scenario = make_scenario(
        {
            "workload": {"kind": "step", "base_rps": 60, "step_rps": 60, "at_s": 0},
            "resources": {"requests": {"cpu": 1}, "limits": {"cpu": 1}},
            "replicas": 1,
        },
        node_pools=[{"name": "pool", "nodes": 1, "cpu": 3, "memory": "16Gi"}],
    )
    sim, _ = run(scenario, 600)
    svc = sim.service("svc")
    state = sim.state("svc")
    assert svc.replicas > 3  # the HPA wants more than the node holds
    assert sum(p.node is not None for p in svc.pods) == 3
    assert state.replicas_pending == svc.replicas - 3 and state.replicas_ready == 3
    assert state.pool_cpu_headroom == pytest.approx(0.0)


def test_high_priority_service_preempts_low_priority_pods() -> None:
    low = {
        "name": "batch", "priority": 0,
        "workload": {"kind": "step", "base_rps": 5, "step_rps": 5, "at_s": 0},
        "request": {"cpu_seconds": 0.1}, "replica": {"base_memory": "100Mi", "concurrency": 1, "startup_s": 10},
        "resources": {"requests": {"cpu": 1, "memory": "256Mi"}, "limits": {"cpu": 1, "memory": "512Mi"}},
        "replicas": 3, "bounds": {"replicas": [3, 3]}, "slo": {"quantile": 0.95, "latency_s": 1.0},
    }
    high = dict(low, name="online", priority=1000, replicas=1, bounds={"replicas": [1, 10]},
                workload={"kind": "step", "base_rps": 1, "step_rps": 40, "at_s": 60})
    scenario = make_scenario(
        node_pools=[{"name": "pool", "nodes": 1, "cpu": 4, "memory": "16Gi"}],
        services=[low, high],
    )
    sim, history = run(scenario, 900)
    online, batch = sim.service("online"), sim.service("batch")
    assert sum(h["batch"][0].preemptions for h in history) >= 3
    assert sum(p.node is not None for p in online.pods) == 4
    assert all(p.node is None for p in batch.pods) and len(batch.pods) == 3  # recreated, Pending


def test_scale_up_waits_for_start_up() -> None:
    scenario = make_scenario({"replica": {"startup_s": 45}, "replicas": 1, "bounds": {"replicas": [1, 10]}})
    sim = Simulator(scenario, np.random.default_rng(0), duration_s=600)
    sim.set_hpa_bounds("svc", 3, 3)
    sim.advance(15)  # the HPA syncs at 15 s and raises the Deployment to 3
    svc = sim.service("svc")
    assert svc.replicas == 3 and sum(p.ready for p in svc.pods) == 1
    sim.advance(44)
    assert sum(p.ready for p in svc.pods) == 1
    sim.advance(1)  # 15 + 45 = 60
    assert sum(p.ready for p in svc.pods) == 3


def test_rolling_update_replaces_pods_within_surge() -> None:
    scenario = make_scenario({"replicas": 4, "bounds": {"replicas": [4, 4], "cpu_limit": ["500m", 4]}, "resize": "rolling"})
    sim = Simulator(scenario, np.random.default_rng(0), duration_s=900)
    sim.set_resources("svc", 1, 2, 256 * MIB, 512 * MIB)
    svc = sim.service("svc")
    most = 0
    for _ in range(120):
        sim.advance(5)
        most = max(most, len(svc.pods))
        assert sum(p.ready for p in svc.pods) >= 3  # maxUnavailable 25% of 4
    assert most == 5  # maxSurge 25% of 4
    assert len(svc.pods) == 4 and all(p.cpu_limit == 2 and p.revision == 2 and p.ready for p in svc.pods)


def test_in_place_resize_keeps_pods_running() -> None:
    scenario = make_scenario({"bounds": {"cpu_limit": ["500m", 4]}})
    sim = Simulator(scenario, np.random.default_rng(0), duration_s=600)
    svc = sim.service("svc")
    before = {p.name for p in svc.pods}
    sim.set_resources("svc", 1, 3, 256 * MIB, 512 * MIB)
    sim.advance(1)
    assert all(p.cpu_limit == 1 for p in svc.pods)  # takes effect after the resize delay
    sim.advance(2)
    assert {p.name for p in svc.pods} == before and all(p.cpu_limit == 3 and p.ready for p in svc.pods)


def test_hpa_follows_a_load_step_up_and_later_down() -> None:
    scenario = make_scenario(
        {"workload": {"kind": "step", "base_rps": 40, "step_rps": 5, "at_s": 1200}, "replicas": 1, "timeout_s": 30}
    )
    sim, history = run(scenario, 2400)
    replicas = [h["svc"][1] for h in history]
    # Saturated replicas show at most limit/request = 100% CPU, so the HPA climbs by at most
    # 100/70 per sync (and overshoots while the backlog drains) ...
    assert replicas[0] == 2 and replicas[1] == 3
    # ... then settles where 40 rps x 0.1 core-s = 4 cores is 70% of the requests: ceil(4 / 0.7) = 6
    assert max(replicas[:40]) > 6 and replicas[39] == 6
    # After the drop it holds for the 300 s stabilization window, then goes to ceil(0.5 / 0.7) = 1.
    assert replicas[40 + 8] == 6 and replicas[-1] == 1


@pytest.mark.parametrize(("workload", "start", "expected"), [
    (TraceReplay(Trace("flat", 10.0, np.full(100, 50.0)), offset_s=3 * 3600), None, 3 * 3600 + 60),  # the trace's clock
    (Diurnal(mean_rps=5.0, start_s=8 * 3600), None, 8 * 3600 + 60),
    (Step(base_rps=5.0, step_rps=5.0), None, 60),  # generators without a clock start at midnight
    (Step(base_rps=5.0, step_rps=5.0), 86_380.0, 40),  # the emulator's wall clock, past midnight
], ids=["trace-offset", "diurnal-start", "step", "wall-clock"])
def test_time_of_day_is_the_services_wall_clock(workload, start, expected) -> None:
    scenario = make_scenario()
    sim = Simulator(scenario, np.random.default_rng(0), duration_s=600, workloads={"svc": workload}, start_time_of_day_s=start)
    sim.advance(60)
    assert sim.state("svc").time_of_day_s == pytest.approx(expected)


def test_the_resources_are_what_most_ready_pods_run_with() -> None:
    """Resized in place, the pods run with the new resources before (and without) the template changing."""
    sim = Simulator(make_scenario({"resize": "in_place"}), np.random.default_rng(0), duration_s=600)
    sim.advance(60)
    sim.set_resources("svc", 0.5, 0.75, 200 * 2**20, 400 * 2**20)
    assert sim.state("svc").cpu_limit == 1.0  # the resize takes effect after the kubelet's delay
    sim.advance(30)
    state = sim.state("svc")
    assert (state.cpu_request, state.cpu_limit, state.memory_request, state.memory_limit) == (0.5, 0.75, 200 * 2**20, 400 * 2**20)
    assert sim.service("svc").template[1] == 1.0
