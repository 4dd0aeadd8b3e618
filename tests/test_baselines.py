"""The new ground truth's parts: the KPA's step, the predictive baseline, the frontier, the bound and the cost rule."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import make_scenario
from rlscale.agent.kpa_policy import KpaPolicy
from rlscale.agent.policy import EpisodeContext
from rlscale.agent.predictive import Holt, PredictivePolicy, PredictiveSettings
from rlscale.env.kpa import KpaSettings, KpaState, kpa_step
from rlscale.env.scenario import load_scenario
from rlscale.env.simulator import Simulator
from rlscale.env.state import ServiceState
from rlscale.training.baseline_settings import load_baseline_settings
from rlscale.training.compare import bound_costs, frontier_cost
from rlscale.training.jobs import Job, run_job
from rlscale.training.loads import LoadCase
from rlscale.training.policies import PolicySpec
from rlscale.training.runner import run_policy
from test_cli_errors import assert_one_line_error, run_cli, write_scenario

TARGET_1 = KpaSettings(target_concurrency=1.0)  # 0.7 in-flight requests per pod


@pytest.mark.parametrize(
    ("concurrency", "ready", "expected"),
    [
        (7.0, 10, 10),  # ceil(7 / 0.7)
        (10.0, 10, 15),  # ceil(10 / 0.7), below the panic threshold (15 / 10 < 2)
        (0.0, 10, 5),  # at most halved per tick (max scale-down rate 2)
        (0.0, 1, 1),  # never below the minimum
        (100.0, 10, 20),  # never above the maximum
    ],
)
def test_kpa_first_tick(concurrency: float, ready: int, expected: int) -> None:
    assert kpa_step(TARGET_1, KpaState(), 0.0, concurrency, ready, 1, 20) == expected


def test_kpa_panics_on_a_surge_and_does_not_scale_down_until_it_settles() -> None:
    state = KpaState()
    for t in range(0, 60, 2):
        kpa_step(TARGET_1, state, float(t), 1.4, 2, 1, 100)  # steady at 2 pods
    assert state.panic_since is None
    surge = kpa_step(TARGET_1, state, 60.0, 14.0, 2, 1, 100)
    assert state.panic_since == 60.0
    panic_mean = (1.4 + 1.4 + 14.0) / 3  # the panic window is 3 ticks (6 s); the stable one 30 ticks
    assert surge == math.ceil(panic_mean / 0.7) > math.ceil((29 * 1.4 + 14.0) / 30 / 0.7)
    after = [kpa_step(TARGET_1, state, 60.0 + t, 0.0, surge, 1, 100) for t in range(2, 62, 2)]
    assert all(count == surge for count in after)  # no scale-down while panicking
    assert kpa_step(TARGET_1, state, 124.0, 0.0, surge, 1, 100) < surge  # a stable window later it does


def test_kpa_scale_down_delay_holds_the_largest_recent_count() -> None:
    settings = dataclasses.replace(TARGET_1, scale_down_delay_s=10.0, max_scale_down_rate=1000.0)
    state = KpaState()
    assert kpa_step(settings, state, 0.0, 7.0, 10, 1, 20) == 10
    assert kpa_step(settings, state, 2.0, 0.0, 10, 1, 20) == 10  # delayed
    counts = [kpa_step(settings, state, float(t), 0.0, 10, 1, 20) for t in range(4, 40, 2)]
    assert counts[-1] < 10


def test_a_service_under_the_kpa_follows_its_load() -> None:
    scenario = make_scenario({"workload": {"kind": "step", "base_rps": 5, "step_rps": 60, "at_s": 600},
                              "replica": {"concurrency": 2}, "replicas": 1})
    summaries = run_policy(scenario, KpaPolicy({"svc": KpaSettings(target_concurrency=2.0)}), 0, duration_s=1800,
                           record_series=True)
    replicas = summaries["svc"].series["replicas_desired"]
    assert max(replicas[:15]) <= 2 < max(replicas[25:])  # 5 req/s at 0.1 s needs one pod; 60 req/s needs several


def test_holt_follows_a_level_and_a_trend() -> None:
    settings = PredictiveSettings(level_smoothing=0.5, trend_smoothing=0.5, trend_damping=1.0)
    flat, rising = Holt(), Holt()
    for i in range(30):
        flat.observe(10.0, settings)
        rising.observe(10.0 + 2.0 * i, settings)
    assert flat.forecast(3, settings) == pytest.approx(10.0)
    assert rising.forecast(3, settings) > rising.last + 4.0  # ~3 steps of +2 ahead of the last value


def _state(load: float, **changes) -> ServiceState:
    spec = make_scenario().services[0]
    base = ServiceState("svc", 600.0, 600.0, load, 2, 2, 0, spec.cpu_request, spec.cpu_limit, spec.memory_request,
                        spec.memory_limit, load * 0.1 / 2, 0.0, spec.base_memory, 0.1, 0.05, 1.0, 0.95, 0.0, 0.0, 0, 8.0,
                        1e10, spec.bounds)
    return dataclasses.replace(base, **changes)


def test_predictive_sets_a_floor_under_the_hpa_from_its_forecast() -> None:
    scenario = make_scenario()
    policy = PredictivePolicy(PredictiveSettings(margin=0.0, hpa_target=120))
    policy.reset(EpisodeContext(scenario, ("svc",)))
    idle = policy.decide(_state(0.0, cpu_usage=0.0))
    assert (idle.replicas, idle.hpa_floor, idle.hpa_target_utilization) == (1, True, 120)
    for _ in range(5):
        busy = policy.decide(_state(40.0))
    # 40 req/s at 0.1 core-seconds on 1-core replicas (10/s each) needs more than 4 replicas at the SLO
    assert busy.replicas >= 5


def test_predictive_settings_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="level_smoothing"):
        PredictiveSettings(level_smoothing=0.0)
    with pytest.raises(ValueError, match="margin"):
        PredictiveSettings(margin=float("nan"))


@pytest.mark.parametrize(
    ("violation", "expected"),
    [(0.0, 10.0), (0.01, 8.0), (0.02, 6.0), (0.03, 5.0), (0.5, 4.0)],
)
def test_the_frontier_interpolates_its_lower_envelope(violation: float, expected: float) -> None:
    points = [(40, 0.0, 10.0), (60, 0.02, 6.0), (70, 0.02, 7.0), (80, 0.04, 4.0), (90, 0.06, 5.0)]
    assert frontier_cost(points, violation) == pytest.approx(expected)


def test_the_bound_is_below_the_oracle_and_the_hpa() -> None:
    scenario = dataclasses.replace(load_scenario("image-classification"), duration_s=3600)
    case = LoadCase("diurnal", shape="diurnal")
    bound = sum(bound_costs(scenario, case, 0).values())
    oracle = sum(s.figures()["cost"] for s in run_job(scenario, Job(PolicySpec("oracle"), case, 0)).values())
    hpa = sum(s.figures()["cost"] for s in run_job(scenario, Job(PolicySpec("hpa"), case, 0)).values())
    assert 0 < bound <= oracle < hpa


@pytest.mark.parametrize("rule", ["max-request-usage", "request"])
def test_cost_rule(rule: str) -> None:
    # One pod requesting 0.1 core and using ~1 core: billed at its usage, or at its request.
    scenario = make_scenario({"resources": {"requests": {"cpu": 0.1}, "limits": {"cpu": 2}}, "replicas": 1,
                              "bounds": {"replicas": [1, 1], "cpu_limit": [2, 2]}, "replica": {"concurrency": 4},
                              "workload": {"kind": "step", "base_rps": 10, "step_rps": 10, "at_s": 0}},
                             prices={"cpu_core_hour": 1.0, "memory_gib_hour": 0.0, "rule": rule})
    sim = Simulator(scenario, np.random.default_rng(0), duration_s=3600)
    sim.advance(3600)
    used = sim.state("svc").cpu_usage
    assert used == pytest.approx(1.0, rel=0.05)
    billed = sim.service("svc").stats.cost  # one hour at 1 $/core-hour
    assert billed == pytest.approx(used if rule == "max-request-usage" else 0.1, rel=0.02)


def test_bad_baselines_file(tmp_path: Path) -> None:
    path = tmp_path / "baselines.yaml"
    path.write_text("predictive: {margin: 12}\n")
    assert_one_line_error(run_cli("compare", "--baselines", str(path), "--no-report"), f"{path}: predictive.margin: ",
                          "must be <= 10")
    path.write_text("kpa: {target_concurrency: 2, panic_treshold: 3}\n")
    assert_one_line_error(run_cli("compare", "--baselines", str(path), "--no-report"), "kpa.panic_treshold", "unknown key")


def test_baselines_file_fixes_the_settings(tmp_path: Path) -> None:
    path = tmp_path / "baselines.yaml"
    path.write_text("predictive: {margin: 0.4, hpa_target: 90}\nkpa: {target_concurrency: 3}\n")
    fixed = load_baseline_settings(path, load_scenario("inference-mix"))
    assert fixed["predictive"].settings["text-embedding"] == PredictiveSettings(margin=0.4, hpa_target=90)
    assert fixed["kpa"].settings["image-classifier"].target_concurrency == 3.0


@pytest.mark.parametrize(
    ("changes", "top", "field", "message"),
    [
        ({"bounds": {"replicas": [40, 50]}, "replicas": 40}, {}, "services[0].bounds", "nodes hold at most 32 pods"),
        (None, {"prices": {"cpu_core_hour": 1, "memory_gib_hour": 1, "rule": "average"}}, "prices.rule", "must be one of"),
        ({"workload": {"kind": "sparse", "burst_rps": 0}}, {}, "services[0].workload.burst_rps", "must be > 0"),
        ({"workload": {"kind": "on_off", "on_rps": 5, "on_s": -1}}, {}, "services[0].workload.on_s", "must be > 0"),
    ],
    ids=["min-replicas-do-not-fit", "unknown-price-rule", "sparse-without-bursts", "negative-on-time"],
)
def test_bad_ground_truth_input(tmp_path: Path, changes, top, field: str, message: str) -> None:
    path = write_scenario(tmp_path, changes, **top)
    assert_one_line_error(run_cli("simulate", "--scenario", str(path)), f"{path}: {field}: ", message)


def test_handing_a_service_back_restores_its_hpa_as_configured() -> None:
    from rlscale.env.backend import SimBackend
    from rlscale.env.state import Decision

    scenario = make_scenario()
    spec = scenario.services[0]
    backend = SimBackend(scenario, duration_s=600)
    backend.reset(np.random.default_rng(0))
    resources = (spec.cpu_request, spec.cpu_limit, spec.memory_request, spec.memory_limit)
    backend.apply({"svc": Decision(2, *resources, hpa_target_utilization=9000, hpa_scale_up="slow", hpa_tolerance=0.3,
                                   hpa_floor=True)})
    tuned = backend.sim.service("svc").hpa_spec
    assert (tuned.min_replicas, tuned.max_replicas, tuned.target_cpu_utilization_percent) == (2, 20, 9000)
    backend.apply({"svc": Decision(None, *resources)})  # e.g. a safety-net fallback
    assert backend.sim.service("svc").hpa_spec == spec.hpa  # target, behavior and tolerance back, not only the bounds
