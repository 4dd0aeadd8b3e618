"""`HorizontalPodAutoscaler.reconcile` (rlscale.env.hpa), table-driven.

Expected values are derived by hand from ``reconcileAutoscaler`` in horizontal.go; the comments
give the arithmetic. Times are injected, so windows and periods are hit exactly: an entry whose
age equals a window or period is outside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from rlscale.env.hpa import DEFAULT_TOLERANCES, HorizontalPodAutoscaler, HpaSpec
from rlscale.env.hpa_behavior import (
    DEFAULT_SCALE_DOWN_RULES,
    Behavior,
    PolicyType,
    Recommendation,
    ScaleEvent,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
)
from rlscale.env.hpa_replicas import HpaMetricsError, PodInfo, PodMetric, resource_replicas

ABOVE_TARGET = "cpu resource utilization (percentage of request) above target"
BELOW_TARGET = "All metrics below target"
DEFAULT_BEHAVIOR = Behavior()  # all defaults: up 4 pods / 100 % per 15 s, down 100 % per 15 s


def spec(min_replicas: int, max_replicas: int, behavior: Behavior | None = None) -> HpaSpec:
    return HpaSpec(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_cpu_utilization_percent=50,
        behavior=behavior,
    )


# --------------------------------------------------------------------------------------------
# One reconcile


@dataclass(frozen=True)
class OneSync:
    spec: HpaSpec
    current: int
    metric: int | HpaMetricsError
    desired: int
    rescale_reason: str
    scaling_active: str | None
    able_to_scale: str | None = None
    scaling_limited: str | None = None
    up_events: tuple[int, ...] = ()  # replica changes stored by the sync
    down_events: tuple[int, ...] = ()
    history: list[Recommendation] | None = None  # None: a fresh HPA, seeded on its first sync
    autoscaler_options: dict[str, Any] | None = None


ONE_SYNC = {
    "disabled when the target is scaled to zero": OneSync(
        spec(1, 10), current=0, metric=5, desired=0, rescale_reason="", scaling_active="ScalingDisabled"
    ),
    "above max: max, bypassing metric and behavior": OneSync(
        spec(1, 10, DEFAULT_BEHAVIOR),
        current=15,
        metric=30,
        desired=10,
        rescale_reason="Current number of replicas above Spec.MaxReplicas",
        scaling_active=None,
        down_events=(5,),  # stored because a behavior exists
    ),
    "below min: min, no event without a behavior": OneSync(
        spec(3, 10),
        current=1,
        metric=1,
        desired=3,
        rescale_reason="Current number of replicas below Spec.MinReplicas",
        scaling_active=None,
    ),
    "metric error keeps the scale": OneSync(
        spec(1, 10),
        current=4,
        metric=HpaMetricsError("did not receive metrics for targeted pods (pods might be unready)"),
        desired=4,
        rescale_reason="",
        scaling_active="FailedGetResourceMetric",
    ),
    "explicit empty history is not seeded (TestScaleDown)": OneSync(
        spec(2, 6),
        current=5,
        metric=3,
        desired=3,
        rescale_reason=BELOW_TARGET,
        scaling_active="ValidMetricFound",
        able_to_scale="ReadyForNewScale",
        scaling_limited="DesiredWithinRange",
        history=[],
    ),
    "legacy scale-up limit: max(2.0 * 3, 4) = 6": OneSync(
        spec(1, 2000),
        current=3,
        metric=1000,
        desired=6,
        rescale_reason=ABOVE_TARGET,
        scaling_active="ValidMetricFound",
        able_to_scale="ReadyForNewScale",  # the seed (3) is below 1000: nothing to stabilize
        scaling_limited="ScaleUpLimit",
    ),
    "legacy scale-up limit: the minimum 4 for one replica": OneSync(
        spec(1, 100),
        current=1,
        metric=10,
        desired=4,
        rescale_reason=ABOVE_TARGET,
        scaling_active="ValidMetricFound",
        able_to_scale="ReadyForNewScale",
        scaling_limited="ScaleUpLimit",
    ),
    "legacy: max below the scale-up limit is TooManyReplicas": OneSync(
        spec(1, 6),
        current=4,
        metric=20,  # limit max(8, 4) = 8 is not below max 6
        desired=6,
        rescale_reason=ABOVE_TARGET,
        scaling_active="ValidMetricFound",
        able_to_scale="ReadyForNewScale",
        scaling_limited="TooManyReplicas",
    ),
    "legacy: the test file's factor 8 gives 24 (TestConvertDesiredReplicasWithRules)": OneSync(
        spec(1, 2000),
        current=3,
        metric=1000,
        desired=24,
        rescale_reason=ABOVE_TARGET,
        scaling_active="ValidMetricFound",
        able_to_scale="ReadyForNewScale",
        scaling_limited="ScaleUpLimit",
        autoscaler_options={"scale_up_limit_factor": 8.0},
    ),
    "default behavior: first scale-up limited to max(2 + 4, 2 * 2) = 6": OneSync(
        spec(1, 20, DEFAULT_BEHAVIOR),
        current=2,
        metric=20,
        desired=6,
        rescale_reason=ABOVE_TARGET,
        scaling_active="ValidMetricFound",
        able_to_scale="ReadyForNewScale",
        scaling_limited="ScaleUpLimit",
        up_events=(4,),
    ),
    "default behavior: the seeded recommendation holds a scale-down for 300 s": OneSync(
        spec(1, 10, DEFAULT_BEHAVIOR),
        current=5,
        metric=3,
        desired=5,
        rescale_reason="",
        scaling_active="ValidMetricFound",
        able_to_scale="ScaleDownStabilized",
        scaling_limited="DesiredWithinRange",
    ),
    "selectPolicy Disabled forbids scaling down": OneSync(
        spec(1, 10, Behavior(scale_down=ScalingRules(SelectPolicy.DISABLED, stabilization_window_seconds=0))),
        current=5,
        metric=3,  # stabilized 3 (window 0), then the disabled limit is current
        desired=5,
        rescale_reason="",
        scaling_active="ValidMetricFound",
        able_to_scale="ReadyForNewScale",
        scaling_limited="ScaleDownLimit",
    ),
}


@pytest.mark.parametrize("case", ONE_SYNC.values(), ids=ONE_SYNC.keys())
def test_one_reconcile(case: OneSync) -> None:
    autoscaler = HorizontalPodAutoscaler(recommendations=case.history, **(case.autoscaler_options or {}))
    decision = autoscaler.reconcile(100.0, case.current, case.spec, case.metric)
    assert decision.desired_replicas == case.desired
    assert decision.rescale_reason == case.rescale_reason
    assert decision.scaling_active == case.scaling_active
    assert decision.able_to_scale == case.able_to_scale
    assert decision.scaling_limited == case.scaling_limited
    assert tuple(e.replica_change for e in autoscaler.scale_up_events) == case.up_events
    assert tuple(e.replica_change for e in autoscaler.scale_down_events) == case.down_events


def test_seeded_history_stabilizes_the_first_scale_down() -> None:
    """TestScaleDownStabilizeInitialSize: spec 5 replicas, the metric computes 3, the HPA stays at 5."""
    pods = [
        PodInfo(f"pod-{i}", (("app", 1000),), started_s_ago=3600, ready_transition_s_ago=3600)
        for i in range(5)
    ]
    metrics = [
        PodMetric(f"pod-{i}", (("app", usage),), age_s=0, window_s=60)
        for i, usage in enumerate([100, 300, 500, 250, 250])
    ]
    # 1400 * 100 // 5000 = 28 %, ratio 28 / 50 = 0.56, ceil(0.56 * 5) = 3
    metric = resource_replicas(
        5,
        50,
        DEFAULT_TOLERANCES,
        pods,
        metrics,
        cpu_initialization_period_s=120,
        delay_of_initial_readiness_status_s=10,
    )
    assert metric == (3, 28, 280)

    autoscaler = HorizontalPodAutoscaler()
    decision = autoscaler.reconcile(0.0, 5, spec(2, 6), metric[0])
    assert (decision.desired_replicas, decision.able_to_scale, decision.scaling_limited) == (
        5,
        "ScaleDownStabilized",
        "DesiredWithinRange",
    )
    assert [r.replicas for r in autoscaler.recommendations] == [5, 3]  # the seed, then the proposal


def test_metric_error_records_no_recommendation() -> None:
    autoscaler = HorizontalPodAutoscaler()
    autoscaler.reconcile(0.0, 4, spec(1, 10), HpaMetricsError("no metrics returned matched known pods"))
    assert [(r.replicas, r.timestamp) for r in autoscaler.recommendations] == [(4, 0.0)]  # only the seed


# --------------------------------------------------------------------------------------------
# Several syncs: each step's current count is the previous step's decision


@dataclass(frozen=True)
class Step:
    now: float
    metric: int
    desired: int
    able_to_scale: str
    scaling_limited: str


@dataclass(frozen=True)
class Run:
    spec: HpaSpec
    initial: int
    steps: tuple[Step, ...]
    up_events_after: tuple[tuple[int, float], ...] = ()  # (replica_change, timestamp)
    down_events_after: tuple[tuple[int, float], ...] = ()


FIVE_PODS_A_MINUTE = (ScalingPolicy(PolicyType.PODS, 5, 60),)
SLOW_SCALE_DOWN = Behavior(
    scale_down=ScalingRules(stabilization_window_seconds=120, policies=FIVE_PODS_A_MINUTE)
)

RUNS = {
    # Pods 4 and Percent 100 per 15 s, Max: each sync may double (or add 4) from the count 15 s ago.
    "default behavior doubles per sync up to max": Run(
        spec(1, 20, DEFAULT_BEHAVIOR),
        initial=2,
        steps=(
            Step(0, 40, 6, "ReadyForNewScale", "ScaleUpLimit"),  # max(2 + 4, 2 * 2)
            Step(15, 40, 12, "ReadyForNewScale", "ScaleUpLimit"),  # the +4 is 15 s old: from 6
            Step(30, 40, 20, "ReadyForNewScale", "TooManyReplicas"),  # limit 24, max 20
            Step(45, 40, 20, "ReadyForNewScale", "TooManyReplicas"),  # at max: no change, no event
        ),
        # Each event is outdated (age 15 >= the 15 s period) at the next store and takes its slot.
        up_events_after=((8, 30.0),),
    ),
    "120 s scale-down window, then 5 pods per 60 s, then minReplicas": Run(
        spec(2, 20, SLOW_SCALE_DOWN),
        initial=20,
        steps=(
            Step(0, 20, 20, "ReadyForNewScale", "DesiredWithinRange"),
            Step(15, 4, 20, "ScaleDownStabilized", "DesiredWithinRange"),  # 20 @ 0 is in the window
            Step(105, 4, 20, "ScaleDownStabilized", "DesiredWithinRange"),
            Step(120, 4, 15, "ReadyForNewScale", "ScaleDownLimit"),  # 20 @ 0 is 120 s old: out; 20 - 5
            Step(135, 4, 15, "ReadyForNewScale", "ScaleDownLimit"),  # the -5 @ 120 is in the period
            Step(180, 4, 10, "ReadyForNewScale", "ScaleDownLimit"),  # ... and now 60 s old: out
            Step(240, 4, 5, "ReadyForNewScale", "ScaleDownLimit"),
            Step(300, 4, 4, "ReadyForNewScale", "DesiredWithinRange"),  # limit 0 < min 2: only the min binds
        ),
        down_events_after=((1, 300.0),),  # every event reused the outdated slot of the one before
    ),
    "legacy: 300 s scale-down stabilization": Run(
        spec(1, 20),
        initial=10,
        steps=(
            Step(0, 10, 10, "ReadyForNewScale", "DesiredWithinRange"),
            Step(15, 4, 10, "ScaleDownStabilized", "DesiredWithinRange"),
            Step(285, 4, 10, "ScaleDownStabilized", "DesiredWithinRange"),  # 10 @ 0 is 285 s old
            Step(300, 4, 4, "ReadyForNewScale", "DesiredWithinRange"),  # ... now 300 s: out
        ),
    ),
}


@pytest.mark.parametrize("run", RUNS.values(), ids=RUNS.keys())
def test_reconcile_over_several_syncs(run: Run) -> None:
    autoscaler = HorizontalPodAutoscaler()
    current = run.initial
    for step in run.steps:
        decision = autoscaler.reconcile(step.now, current, run.spec, step.metric)
        got = (decision.desired_replicas, decision.able_to_scale, decision.scaling_limited)
        assert got == (step.desired, step.able_to_scale, step.scaling_limited), f"at t={step.now:g}"
        current = decision.desired_replicas
    assert _changes_and_times(autoscaler.scale_up_events) == run.up_events_after
    assert _changes_and_times(autoscaler.scale_down_events) == run.down_events_after


def _changes_and_times(events: list[ScaleEvent]) -> tuple[tuple[int, float], ...]:
    return tuple((event.replica_change, event.timestamp) for event in events)


# --------------------------------------------------------------------------------------------
# The spec: API defaulting


def test_spec_defaults_user_rules_field_by_field() -> None:
    one_pod_a_minute = (ScalingPolicy(PolicyType.PODS, 1, 60),)
    behavior = spec(1, 10, Behavior(scale_up=ScalingRules(policies=one_pod_a_minute))).behavior
    assert behavior == Behavior(
        scale_up=ScalingRules(SelectPolicy.MAX, 0, one_pod_a_minute),  # the list replaces the defaults
        scale_down=DEFAULT_SCALE_DOWN_RULES,  # window left unset for the controller to fill
    )
