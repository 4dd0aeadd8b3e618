"""Each baseline on hand-made states with known answers, and the oracle as the lower bound of cost."""

from __future__ import annotations

import dataclasses

import pytest

from rlscale.agent.hpa_policies import HpaPolicy, HpaSetting, HpaVpaPolicy
from rlscale.agent.oracle import Oracle, oracle_resources, replica_of, replicas_needed
from rlscale.agent.policy import EpisodeContext
from rlscale.agent.proportional import ProportionalShare
from rlscale.agent.vpa import DecayingHistogram, VpaRecommender, VpaSettings
from rlscale.env.scenario import load_scenario
from rlscale.env.state import Decision, ServiceState
from rlscale.training.jobs import Job, run_job
from rlscale.training.loads import GENERATED_SHAPES, LoadCase
from rlscale.training.policies import PolicySpec, parse_policy_names

from conftest import make_scenario

MIB = 2.0**20
MIX = load_scenario("inference-mix")


def state(name: str, **changes) -> ServiceState:
    spec = MIX.service(name)
    base = ServiceState(
        name=name, time_s=600.0, time_of_day_s=600.0, load_rps=10.0, replicas_desired=2, replicas_ready=2,
        replicas_pending=0, cpu_request=spec.cpu_request, cpu_limit=spec.cpu_limit, memory_request=spec.memory_request,
        memory_limit=spec.memory_limit, cpu_usage=0.5, cpu_throttled_fraction=0.0, memory_working_set=spec.base_memory,
        latency_quantile_s=0.1, latency_mean_s=0.05, slo_latency_s=spec.slo_latency_s, slo_quantile=spec.slo_quantile,
        slo_violation_fraction=0.0, drop_fraction=0.0, oom_kills=0, cluster_cpu_headroom=4.0,
        cluster_memory_headroom=16 * 2**30, bounds=spec.bounds,
    )
    return dataclasses.replace(base, **changes)


def context(policy_scenario=MIX) -> EpisodeContext:
    return EpisodeContext(policy_scenario, tuple(s.name for s in policy_scenario.services))


def test_hpa_policies_hand_replicas_to_the_hpa() -> None:
    s = state("image-classifier")
    plain = HpaPolicy().decide(s)
    assert plain.replicas is None and plain.hpa_target_utilization is None
    assert (plain.cpu_limit, plain.memory_limit) == (s.cpu_limit, s.memory_limit)
    tuned = HpaPolicy({"image-classifier": HpaSetting(65, 120)}).decide(s)
    assert (tuned.replicas, tuned.hpa_target_utilization, tuned.hpa_scale_down_window_s) == (None, 65, 120)


# The pool has 3 nodes x 8 cores = 24 cores; requests: image 1 core, embedding 0.5, generation 4.
@pytest.mark.parametrize(
    ("weight", "fraction", "loads", "usages", "expected"),
    [
        ("demand", 1.0, (60, 30, 30), (1, 1, 1), {"image-classifier": 12, "text-embedding": 12, "text-generation": 1}),
        ("demand", 0.5, (10, 0, 0), (1, 1, 1), {"image-classifier": 12, "text-embedding": 1, "text-generation": 1}),
        ("demand", 1.0, (0, 0, 0), (0, 0, 0), {"image-classifier": 8, "text-embedding": 16, "text-generation": 2}),
        ("load", 1.0, (1, 1, 1), (1.0, 1.0, 2.0), {"image-classifier": 6, "text-embedding": 12, "text-generation": 3}),
        ("priority", 1.0, (1, 1, 1), (1, 1, 1), {"image-classifier": 16, "text-embedding": 14, "text-generation": 1}),
    ],
    ids=["demand", "demand-half-cluster", "no-demand-equal-shares", "load", "priority"],
)
def test_proportional_shares(weight, fraction, loads, usages, expected) -> None:
    policy = ProportionalShare(weight, fraction)
    policy.reset(context())
    names = ["image-classifier", "text-embedding", "text-generation"]
    # each service runs 2 ready replicas; the load weight is usage x ready replicas
    states = {n: state(n, load_rps=float(l), cpu_usage=u / 2) for n, l, u in zip(names, loads, usages)}
    decisions = policy.decide_all(states)
    assert {n: d.replicas for n, d in decisions.items()} == expected
    for name in names:  # resources untouched
        assert decisions[name].cpu_limit == states[name].cpu_limit


def test_priority_weights_in_detail() -> None:
    # priorities 1000 / 500 / 100 -> weights 901 / 401 / 1 of 24 cores
    policy = ProportionalShare("priority", 1.0)
    policy.reset(context())
    decisions = policy.decide_all({n: state(n) for n in ("image-classifier", "text-embedding", "text-generation")})
    assert decisions["image-classifier"].replicas == min(16, int(24 * 901 / 1303 / 1.0))
    assert decisions["text-embedding"].replicas == min(16, int(24 * 401 / 1303 / 0.5))


def test_decaying_histogram_percentile_and_decay() -> None:
    histogram = DecayingHistogram(first=1.0, ratio=2.0, buckets=10, half_life_s=100.0)
    for value in (1.5, 3.0, 6.0, 12.0):  # one sample per bucket 0..3, all at t = 0
        histogram.add(value, 1.0, 0.0)
    assert histogram.percentile(0.5) == 4.0  # the second bucket, [2, 4)
    histogram.add(100.0, 4.0, 100.0)  # one half-life later: weighs 8 against 4
    assert histogram.percentile(0.5) == 128.0


def test_vpa_recommends_p90_plus_margin_and_bumps_after_oom() -> None:
    recommender = VpaRecommender(VpaSettings(half_life_s=1e9))
    for i in range(100):
        recommender.observe(state("image-classifier", time_s=float(i), cpu_usage=0.5, memory_working_set=400 * MIB))
    cpu, memory = recommender.recommendation()
    assert cpu == pytest.approx(0.5 * 1.15, rel=0.06)  # bucket resolution is 5%
    assert memory == pytest.approx(400 * MIB * 1.15, rel=0.06)
    recommender.observe(state("image-classifier", time_s=100.0, oom_kills=1, memory_limit=1024 * MIB))
    _, bumped = recommender.recommendation()
    assert bumped == pytest.approx(1.2 * 1024 * MIB)


def test_hpa_vpa_keeps_the_cpu_limit_and_scales_the_memory_limit() -> None:
    policy = HpaVpaPolicy({"image-classifier": HpaSetting(70)}, VpaSettings(half_life_s=1e9, min_update_interval_s=0))
    policy.reset(context())
    s = state("image-classifier", cpu_usage=0.3, memory_working_set=300 * MIB)
    decision = policy.decide(s)
    spec = MIX.service("image-classifier")
    assert decision.replicas is None and decision.hpa_target_utilization == 70
    assert decision.cpu_request == pytest.approx(0.3 * 1.15, rel=0.06)
    assert decision.cpu_limit == s.cpu_limit
    assert decision.memory_limit == pytest.approx(decision.memory_request * spec.memory_limit / spec.memory_request)


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        (0.0, 1),
        # M/M/1 replicas of 10 requests/s: p95 of Exp(10 - lam) <= 0.97 s needs lam <= 10 - ln(20)/0.97 = 6.91
        (6.9, 1),
        (6.95, 2),
        (13.8, 2),
        (13.9, 3),
    ],
)
def test_oracle_replicas_needed(rate: float, expected: int) -> None:
    scenario = make_scenario({"slo": {"quantile": 0.95, "latency_s": 1.0}})  # 1 core, 0.1 core-s
    spec = scenario.services[0]
    model = replica_of(spec, Decision(None, 1.0, 1.0, spec.memory_request, spec.memory_limit), 1.0)
    assert replicas_needed(model, spec, rate, rate) == expected


def test_a_peak_above_capacity_needs_more_replicas_than_the_mean() -> None:
    scenario = make_scenario({"slo": {"quantile": 0.95, "latency_s": 1.0}})
    spec = scenario.services[0]
    model = replica_of(spec, Decision(None, 1.0, 1.0, spec.memory_request, spec.memory_limit), 1.0)
    assert replicas_needed(model, spec, 5.0, 25.0) == 3  # capacity 10/s each must exceed the peak


def test_oracle_resources_are_the_largest_replica_at_tiny_requests() -> None:
    spec = MIX.service("image-classifier")  # 4 workers of 1 core, limit bounds [0.5, 4], 8-core nodes
    r = oracle_resources(MIX, spec)
    assert r.cpu_limit == 4.0
    assert r.memory_limit >= spec.base_memory + spec.concurrency * spec.memory_per_request
    assert r.cpu_request <= 0.01 * r.cpu_limit and r.memory_request <= 0.01 * r.memory_limit


def test_oracle_refuses_a_run_without_the_future() -> None:
    with pytest.raises(ValueError, match="future"):
        Oracle().reset(context())


def _contenders(scenario) -> list[PolicySpec]:
    names = [s.name for s in scenario.services]
    return [
        PolicySpec("hpa"),
        *[PolicySpec("hpa-tuned", settings={n: HpaSetting(t, w) for n in names}) for t in (70, 90) for w in (0, 300)],
        *[PolicySpec("hpa+vpa", settings={n: HpaSetting(t) for n in names}) for t in (50, 90)],
        PolicySpec("predictive"),
        PolicySpec("kpa"),
        *[PolicySpec(p, fraction=f) for p in ("proportional-demand", "proportional-priority") for f in (0.1, 0.5)],
        *parse_policy_names("learned:default"),
    ]


def _totals(summaries) -> tuple[float, float]:
    figures = [s.figures() for s in summaries.values()]
    return sum(f["cost"] for f in figures), sum(f["slo_violation_rate"] for f in figures) / len(figures)


@pytest.mark.parametrize("scenario_name", ["image-classification", "inference-mix"])
@pytest.mark.parametrize("shape", GENERATED_SHAPES)
def test_no_contender_is_cheaper_than_the_oracle_at_no_more_slo_violations(scenario_name: str, shape: str) -> None:
    scenario = dataclasses.replace(load_scenario(scenario_name), duration_s=7200)
    case = LoadCase(shape, shape=shape)
    for seed in (0, 1):
        oracle_cost, oracle_violations = _totals(run_job(scenario, Job(PolicySpec("oracle"), case, seed)))
        for contender in _contenders(scenario):
            cost, violations = _totals(run_job(scenario, Job(contender, case, seed)))
            assert not (cost < oracle_cost and violations <= oracle_violations), (contender.name, seed, cost, oracle_cost)
