"""Kubernetes' own HPA unit-test cases, run against `rlscale.env.hpa_replicas` / `hpa_behavior`.

The cases live outside the project (``RLSCALE_HPA_CASES``, default ``../shared/hpa-cases``); their
README states the schemas and conventions used here. Every case is one test whose id is its
``name``. A missing or unreadable case file becomes one failing test, never a skip. Expected
values are upstream's and are never adjusted; the one case Go never asserts (``go_test_skipped``)
runs too, against the value the README derives for it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rlscale.env import hpa, hpa_behavior
from rlscale.env.hpa_behavior import (
    Behavior,
    PolicyType,
    Recommendation,
    ScaleEvent,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
)
from rlscale.env.hpa_replicas import (
    HpaMetricsError,
    PodInfo,
    PodMetric,
    group_pods,
    resource_replicas,
)

Case = dict[str, Any]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CASES_DIR = Path(os.environ.get("RLSCALE_HPA_CASES", PROJECT_ROOT.parent / "shared" / "hpa-cases"))
NOW = 1_000_000_000.0  # an arbitrary clock reading; the cases give ages


class UnreadableCases:
    """Stands in for the cases of a file that could not be read, so that its test fails."""

    def __init__(self, message: str) -> None:
        self.message = message


def _load(file_name: str) -> list[Any]:
    path = CASES_DIR / file_name
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problem = f"cannot read {path}: {exc}"
    else:
        if isinstance(data, list) and data:
            return data
        problem = f"{path} holds no list of cases"
    return [UnreadableCases(f"{problem} (set RLSCALE_HPA_CASES to the case directory)")]


def _params(file_name: str) -> list[Any]:
    return [
        pytest.param(case, id=f"{file_name}: unreadable")
        if isinstance(case, UnreadableCases)
        else pytest.param(case, id=case["name"])
        for case in _load(file_name)
    ]


def _readable(case: Case | UnreadableCases) -> Case:
    if isinstance(case, UnreadableCases):
        pytest.fail(case.message)
    return case


# --------------------------------------------------------------------------------------------
# replica_calc.json: GetResourceReplicas


def _containers(entries: list[Case], value_key: str) -> tuple[tuple[str, int | None], ...]:
    return tuple((entry["name"], entry[value_key]) for entry in entries)


def _replica_calc_inputs(case: Case) -> tuple[list[PodInfo], list[PodMetric]]:
    pods = [
        PodInfo(
            name=pod["name"],
            container_requests_milli=_containers(pod["containers"], "request_milli"),
            started_s_ago=pod["started_s_ago"],
            ready_transition_s_ago=pod["ready_transition_s_ago"],
            phase=pod["phase"],
            ready=pod["ready"],
            being_deleted=pod["being_deleted"],
        )
        for pod in case["pods"]
    ]
    reported = [pod for pod in case["pods"] if pod["metric_reported"]] + case["extra_metrics"]
    metrics = [
        PodMetric(
            name=item["name"],
            container_usage_milli=_containers(item["containers"], "usage_milli"),
            age_s=case["metric_age_s"],
            window_s=case["metric_window_s"],
        )
        for item in reported
    ]
    # The translation must give the metrics API exactly as many items as the Go fake returned.
    assert len(metrics) == case["metrics_api_returned_items"]
    return pods, metrics


@pytest.mark.parametrize("case", _params("replica_calc.json"))
def test_replica_calc_case(case: Case | UnreadableCases) -> None:
    case = _readable(case)
    pods, metrics = _replica_calc_inputs(case)

    def calculate() -> tuple[int, int, int]:
        return resource_replicas(
            case["current_replicas"],
            case["target_utilization_percent"],
            (case["tolerance_scale_down"], case["tolerance_scale_up"]),
            pods,
            metrics,
            case["container"],
            resource=case["resource"],
            cpu_initialization_period_s=case["cpu_initialization_period_s"],
            delay_of_initial_readiness_status_s=case["delay_of_initial_readiness_status_s"],
        )

    if case["expected_error_contains"] is not None:
        with pytest.raises(HpaMetricsError, match=re.escape(case["expected_error_contains"])):
            calculate()
        return
    assert calculate() == (
        case["expected_replicas"],
        case["expected_utilization_percent"],
        case["expected_raw_milli"],
    )


# --------------------------------------------------------------------------------------------
# group_pods.json: groupPods


@pytest.mark.parametrize("case", _params("group_pods.json"))
def test_group_pods_case(case: Case | UnreadableCases) -> None:
    case = _readable(case)
    pods = [
        PodInfo(
            name=pod["name"],
            container_requests_milli=(),
            started_s_ago=pod["started_s_ago"],
            ready_transition_s_ago=pod["ready_transition_s_ago"],
            phase=pod["phase"],
            ready=pod["ready"] if pod["has_ready_condition"] else None,
            being_deleted=pod["being_deleted"],
        )
        for pod in case["pods"]
    ]
    metrics = {
        item["pod"]: PodMetric(
            name=item["pod"],
            container_usage_milli=(("", item["value_milli"]),),
            age_s=item["timestamp_age_s"],
            window_s=item["window_s"],
        )
        for item in case["metrics"]
    }
    groups = group_pods(
        pods,
        metrics,
        resource=case["resource"],
        cpu_initialization_period_s=case["cpu_initialization_period_s"],
        delay_of_initial_readiness_status_s=case["delay_of_initial_readiness_status_s"],
    )
    assert groups.ready_count == case["expected_ready_pod_count"]
    assert groups.unready == set(case["expected_unready_pods"])
    assert groups.missing == set(case["expected_missing_pods"])
    assert groups.ignored == set(case["expected_ignored_pods"])


# --------------------------------------------------------------------------------------------
# behavior.json: normalization, one checker per `kind`


def _rules(data: Case | None) -> ScalingRules | None:
    if data is None:
        return None
    policies = data["policies"]
    return ScalingRules(
        select_policy=None if data["select_policy"] is None else SelectPolicy(data["select_policy"]),
        stabilization_window_seconds=data["stabilization_window_seconds"],
        policies=None
        if policies is None
        else tuple(
            ScalingPolicy(PolicyType(p["type"]), p["value"], p["period_seconds"]) for p in policies
        ),
    )


def _behavior(case: Case) -> Behavior:
    return Behavior(scale_up=_rules(case["scale_up"]), scale_down=_rules(case["scale_down"]))


def _recommendations(case: Case) -> list[Recommendation]:
    return [Recommendation(r["replicas"], NOW - r["age_s"]) for r in case["recommendations"]]


def _events(entries: list[Case]) -> list[ScaleEvent]:
    return [ScaleEvent(e["replica_change"], NOW - e["age_s"], e["outdated"]) for e in entries]


def _check_legacy_convert(case: Case) -> None:
    assert hpa_behavior.limit_by_legacy_rules(
        case["current_replicas"],
        case["prenormalized_desired_replicas"],
        case["min_replicas"],
        case["max_replicas"],
        scale_up_limit_factor=case["scale_up_limit_factor"],
        scale_up_limit_minimum=case["scale_up_limit_minimum"],
    ) == (case["expected_replicas"], case["expected_condition_reason"])


def _check_scale_up_limit(case: Case) -> None:
    rules = _rules(case["scale_up"])
    assert rules is not None
    up, down = _events(case["scale_up_events"]), _events(case["scale_down_events"])
    limit = hpa_behavior.scale_up_limit(case["current_replicas"], up, down, rules, NOW)
    assert limit == case["expected_limit"]


def _check_scale_down_limit(case: Case) -> None:
    rules = _rules(case["scale_down"])
    assert rules is not None
    up, down = _events(case["scale_up_events"]), _events(case["scale_down_events"])
    limit = hpa_behavior.scale_down_limit(case["current_replicas"], up, down, rules, NOW)
    assert limit == case["expected_limit"]


def _check_legacy_stabilize(case: Case) -> None:
    recommendations = _recommendations(case)
    stabilized = hpa_behavior.stabilize_legacy(
        recommendations, NOW, case["prenormalized_desired_replicas"], case["downscale_stabilization_window_s"]
    )
    assert stabilized == case["expected_replicas"]
    assert len(recommendations) == case["expected_recommendations_count_after"]


def _check_rate_limit(case: Case) -> None:
    assert hpa_behavior.limit_by_behavior_rate(
        case["current_replicas"],
        case["prenormalized_desired_replicas"],
        case["min_replicas"],
        case["max_replicas"],
        _behavior(case),
        _events(case["scale_up_events"]),
        _events(case["scale_down_events"]),
        NOW,
    ) == (case["expected_replicas"], case["expected_condition_reason"])


def _check_store_scale_event(case: Case) -> None:
    up, down = _events(case["scale_up_events"]), _events(case["scale_down_events"])
    events = up if case["direction"] == "up" else down
    changed = hpa_behavior.replicas_changed_in_period(events, NOW, 60)
    assert changed == case["expected_replicas_change_last_60s"]
    behavior = _behavior(case) if case["behavior_present"] else None
    hpa_behavior.store_scale_event(behavior, up, down, case["prev_replicas"], case["new_replicas"], NOW)
    assert [(e.replica_change, e.outdated) for e in events] == [
        (e["replica_change"], e["outdated"]) for e in case["expected_events_after"]
    ]


def _check_stabilize_with_behavior(case: Case) -> None:
    recommendations = _recommendations(case)
    stabilized, _reason = hpa_behavior.stabilize_with_behavior(
        recommendations,
        NOW,
        case["current_replicas"],
        case["prenormalized_desired_replicas"],
        case["scale_up"]["stabilization_window_seconds"],
        case["scale_down"]["stabilization_window_seconds"],
    )
    assert stabilized == case["expected_replicas"]
    if case["expected_recommendations_after"] is not None:
        assert [r.replicas for r in recommendations] == case["expected_recommendations_after"]


CHECKERS: dict[str, Callable[[Case], None]] = {
    "legacy_convert": _check_legacy_convert,
    "scale_up_limit": _check_scale_up_limit,
    "scale_down_limit": _check_scale_down_limit,
    "legacy_stabilize": _check_legacy_stabilize,
    "rate_limit": _check_rate_limit,
    "store_scale_event": _check_store_scale_event,
    "stabilize_with_behavior": _check_stabilize_with_behavior,
}


@pytest.mark.parametrize("case", _params("behavior.json"))
def test_behavior_case(case: Case | UnreadableCases) -> None:
    case = _readable(case)
    checker = CHECKERS.get(case["kind"])
    if checker is None:
        pytest.fail(f"no checker for kind {case['kind']!r}")
    checker(case)


# --------------------------------------------------------------------------------------------
# behavior_defaults.json: the defaults the code hard-codes


def test_defaults_match_behavior_defaults_json() -> None:
    path = CASES_DIR / "behavior_defaults.json"
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        pytest.fail(f"cannot read {path}: {exc}")
    assert hpa_behavior.DEFAULT_SCALE_UP_RULES == _rules(facts["behavior_scale_up_default"])
    assert hpa_behavior.DEFAULT_SCALE_DOWN_RULES == _rules(facts["behavior_scale_down_default"])
    scale_down = facts["behavior_scale_down_default"]
    assert hpa.DOWNSCALE_STABILIZATION_WINDOW_S == scale_down["stabilization_window_seconds_effective"]
    controller = facts["controller_defaults"]
    assert hpa.SYNC_PERIOD_S == controller["horizontal_pod_autoscaler_sync_period_s"]
    assert hpa.DOWNSCALE_STABILIZATION_WINDOW_S == controller["downscale_stabilization_window_s"]
    assert hpa.DEFAULT_TOLERANCE == controller["tolerance"]
    assert hpa.CPU_INITIALIZATION_PERIOD_S == controller["cpu_initialization_period_s"]
    assert hpa.DELAY_OF_INITIAL_READINESS_STATUS_S == controller["initial_readiness_delay_s"]
    legacy = facts["legacy_no_behavior_limits"]
    assert hpa_behavior.LEGACY_SCALE_UP_LIMIT_FACTOR == legacy["scale_up_limit_factor"]
    assert hpa_behavior.LEGACY_SCALE_UP_LIMIT_MINIMUM == legacy["scale_up_limit_minimum"]
