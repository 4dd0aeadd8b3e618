"""The HPA's normalization of a metric recommendation: stabilization, rate limits, bounds.

Mirrors the normalization half of kubernetes ``pkg/controller/podautoscaler/horizontal.go``
(legacy path without ``spec.behavior``, and the behavior path) and the behavior defaults of
``pkg/apis/autoscaling/v2/defaults.go``.

Time is injected: functions take `now` in seconds, histories store timestamps, and the caller
owns the history lists (they are updated in place, as the controller's maps are). Upstream runs
a moment after its histories were written, so an entry whose age equals a window or period is
outside it: inside means ``now - timestamp < window``, old means ``now - timestamp >= window``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TypeVar

LEGACY_SCALE_UP_LIMIT_FACTOR = 2.0  # horizontal.go scaleUpLimitFactor
LEGACY_SCALE_UP_LIMIT_MINIMUM = 4.0  # horizontal.go scaleUpLimitMinimum
_INT32_MIN = -(2**31)  # a policy-less rule starts from Go's math.MinInt32 / MaxInt32
_INT32_MAX = 2**31 - 1


class SelectPolicy(StrEnum):
    """``ScalingPolicySelect``: which policy's limit wins."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class PolicyType(StrEnum):
    """``HPAScalingPolicyType``."""

    PODS = "Pods"
    PERCENT = "Percent"


class AbleToScaleReason(StrEnum):
    """Reasons the normalization sets on the AbleToScale condition."""

    READY_FOR_NEW_SCALE = "ReadyForNewScale"
    SCALE_UP_STABILIZED = "ScaleUpStabilized"
    SCALE_DOWN_STABILIZED = "ScaleDownStabilized"


class ScalingLimitedReason(StrEnum):
    """Reasons the normalization sets on the ScalingLimited condition."""

    DESIRED_WITHIN_RANGE = "DesiredWithinRange"
    SCALE_UP_LIMIT = "ScaleUpLimit"
    SCALE_DOWN_LIMIT = "ScaleDownLimit"
    TOO_MANY_REPLICAS = "TooManyReplicas"
    TOO_FEW_REPLICAS = "TooFewReplicas"


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    """``HPAScalingPolicy``: change at most `value` pods or percent per `period_seconds`."""

    type: PolicyType
    value: int
    period_seconds: int


@dataclass(frozen=True, slots=True)
class ScalingRules:
    """``HPAScalingRules``; None = unset, filled by `apply_behavior_defaults`."""

    select_policy: SelectPolicy | None = None
    stabilization_window_seconds: int | None = None
    policies: tuple[ScalingPolicy, ...] | None = None


@dataclass(frozen=True, slots=True)
class Behavior:
    """``HorizontalPodAutoscalerBehavior``."""

    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None


DEFAULT_SCALE_UP_RULES = ScalingRules(
    select_policy=SelectPolicy.MAX,
    stabilization_window_seconds=0,
    policies=(
        ScalingPolicy(PolicyType.PODS, 4, 15),
        ScalingPolicy(PolicyType.PERCENT, 100, 15),
    ),
)
# The window stays unset: the controller fills it from its downscale-stabilization flag.
DEFAULT_SCALE_DOWN_RULES = ScalingRules(
    select_policy=SelectPolicy.MAX,
    stabilization_window_seconds=None,
    policies=(ScalingPolicy(PolicyType.PERCENT, 100, 15),),
)
# Scale-up behaviors the HPA's tuning tries (what a manifest's `behavior.scaleUp` would say).
SCALE_UP_PRESETS = {
    "default": DEFAULT_SCALE_UP_RULES,
    "fast": ScalingRules(SelectPolicy.MAX, 0, (ScalingPolicy(PolicyType.PODS, 8, 15), ScalingPolicy(PolicyType.PERCENT, 300, 15))),
    "slow": ScalingRules(SelectPolicy.MAX, 60, (ScalingPolicy(PolicyType.PODS, 2, 60), ScalingPolicy(PolicyType.PERCENT, 50, 60))),
}


@dataclass(frozen=True, slots=True)
class Recommendation:
    """``timestampedRecommendation``: an unstabilized desired count and when it was made."""

    replicas: int
    timestamp: float


@dataclass(slots=True)
class ScaleEvent:
    """``timestampedScaleEvent``: a scale change (absolute, >= 0); `outdated` marks a free slot."""

    replica_change: int
    timestamp: float
    outdated: bool = False


_Entry = TypeVar("_Entry", Recommendation, ScaleEvent)


# --------------------------------------------------------------------------------------------
# Defaults


def merge_rules(defaults: ScalingRules, user: ScalingRules | None) -> ScalingRules:
    """Mirrors ``copyHPAScalingRules``: each set user field replaces the default's (a policies
    list replaces the whole list)."""
    if user is None:
        return defaults
    return replace(
        defaults,
        select_policy=(
            defaults.select_policy if user.select_policy is None else user.select_policy
        ),
        stabilization_window_seconds=(
            defaults.stabilization_window_seconds
            if user.stabilization_window_seconds is None
            else user.stabilization_window_seconds
        ),
        policies=defaults.policies if user.policies is None else user.policies,
    )


def apply_behavior_defaults(behavior: Behavior) -> Behavior:
    """Mirrors ``SetDefaults_HorizontalPodAutoscalerBehavior`` (``GenerateHPAScale{Up,Down}Rules``)."""
    return Behavior(
        scale_up=merge_rules(DEFAULT_SCALE_UP_RULES, behavior.scale_up),
        scale_down=merge_rules(DEFAULT_SCALE_DOWN_RULES, behavior.scale_down),
    )


def defaulted_rules(rules: ScalingRules | None) -> ScalingRules:
    """`rules`, which must be set: upstream dereferences them, so only a defaulted Behavior works."""
    if rules is None:
        raise ValueError("behavior rules are unset; apply apply_behavior_defaults() first")
    return rules


# --------------------------------------------------------------------------------------------
# Stabilization


def _put(history: list[_Entry], old_index: int | None, entry: _Entry) -> None:
    # A new entry takes the last slot found old (histories never shrink upstream), else appends.
    if old_index is None:
        history.append(entry)
    else:
        history[old_index] = entry


def stabilize_legacy(
    recommendations: list[Recommendation], now: float, desired: int, window_s: float
) -> int:
    """Mirrors ``stabilizeRecommendation``: the max of `desired` and the recommendations younger
    than `window_s`; records `desired`."""
    stabilized = desired
    old_index: int | None = None
    for index, recommendation in enumerate(recommendations):
        if now - recommendation.timestamp >= window_s:
            old_index = index
        elif recommendation.replicas > stabilized:
            stabilized = recommendation.replicas
    _put(recommendations, old_index, Recommendation(desired, now))
    return stabilized


def stabilize_with_behavior(
    recommendations: list[Recommendation],
    now: float,
    current: int,
    desired: int,
    up_window_s: float,
    down_window_s: float,
) -> tuple[int, AbleToScaleReason]:
    """Mirrors ``stabilizeRecommendationWithBehaviors``: `current` clamped between the lowest
    recommendation of the up window and the highest of the down window; records `desired`.

    The reason is the one upstream reports if the result differs from `desired`.
    """
    up_bound = desired
    down_bound = desired
    old_index: int | None = None
    for index, recommendation in enumerate(recommendations):
        age = now - recommendation.timestamp
        replicas = recommendation.replicas
        inside_up = age < up_window_s
        inside_down = age < down_window_s
        if inside_up and replicas < up_bound:
            up_bound = replicas
        if inside_down and replicas > down_bound:
            down_bound = replicas
        if not (inside_up or inside_down):
            old_index = index
    _put(recommendations, old_index, Recommendation(desired, now))
    stabilized = min(max(current, up_bound), down_bound)
    if desired >= current:
        return stabilized, AbleToScaleReason.SCALE_UP_STABILIZED
    return stabilized, AbleToScaleReason.SCALE_DOWN_STABILIZED


# --------------------------------------------------------------------------------------------
# Rate limits and bounds


def replicas_changed_in_period(events: Sequence[ScaleEvent], now: float, period_s: float) -> int:
    """Mirrors ``getReplicasChangePerPeriod``: the changes of the events younger than `period_s`."""
    changed = 0
    for event in events:
        if now - event.timestamp < period_s:
            changed += event.replica_change
    return changed


def _period_start_replicas(
    current: int,
    up_events: Sequence[ScaleEvent],
    down_events: Sequence[ScaleEvent],
    period_s: float,
    now: float,
) -> int:
    # The replica count when the policy's period began: undo the changes made within it.
    return (
        current
        - replicas_changed_in_period(up_events, now, period_s)
        + replicas_changed_in_period(down_events, now, period_s)
    )


def scale_up_limit(
    current: int,
    up_events: Sequence[ScaleEvent],
    down_events: Sequence[ScaleEvent],
    rules: ScalingRules,
    now: float,
) -> int:
    """Mirrors ``calculateScaleUpLimitWithScalingRules``: the highest count the policies allow."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    proposals = []
    for policy in rules.policies or ():
        start = _period_start_replicas(current, up_events, down_events, policy.period_seconds, now)
        if policy.type is PolicyType.PODS:
            proposals.append(start + policy.value)
        else:  # rounded up, or a small percentage could never add a pod
            proposals.append(math.ceil(start * (1 + policy.value / 100)))
    if rules.select_policy is SelectPolicy.MIN:
        return min(proposals, default=_INT32_MAX)
    return max(proposals, default=_INT32_MIN)


def scale_down_limit(
    current: int,
    up_events: Sequence[ScaleEvent],
    down_events: Sequence[ScaleEvent],
    rules: ScalingRules,
    now: float,
) -> int:
    """Mirrors ``calculateScaleDownLimitWithBehaviors``: the lowest count the policies allow
    (selectPolicy Max = the largest change = the lowest count)."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    proposals = []
    for policy in rules.policies or ():
        start = _period_start_replicas(current, up_events, down_events, policy.period_seconds, now)
        if policy.type is PolicyType.PODS:
            proposals.append(start - policy.value)
        else:  # Go's int32() conversion truncates
            proposals.append(int(start * (1 - policy.value / 100)))
    if rules.select_policy is SelectPolicy.MIN:
        return max(proposals, default=_INT32_MIN)
    return min(proposals, default=_INT32_MAX)


def limit_by_behavior_rate(
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    behavior: Behavior,
    up_events: Sequence[ScaleEvent],
    down_events: Sequence[ScaleEvent],
    now: float,
) -> tuple[int, ScalingLimitedReason]:
    """Mirrors ``convertDesiredReplicasWithBehaviorRate``: clamp to the rate limit and bounds."""
    if desired > current:
        rules = defaulted_rules(behavior.scale_up)
        # Never below current: a limit that low means waiting for old events to expire.
        limit = max(scale_up_limit(current, up_events, down_events, rules, now), current)
        if max_replicas > limit:
            allowed, reason = limit, ScalingLimitedReason.SCALE_UP_LIMIT
        else:
            allowed, reason = max_replicas, ScalingLimitedReason.TOO_MANY_REPLICAS
        if desired > allowed:
            return allowed, reason
    elif desired < current:
        rules = defaulted_rules(behavior.scale_down)
        limit = min(scale_down_limit(current, up_events, down_events, rules, now), current)
        if min_replicas < limit:
            allowed, reason = limit, ScalingLimitedReason.SCALE_DOWN_LIMIT
        else:
            allowed, reason = min_replicas, ScalingLimitedReason.TOO_FEW_REPLICAS
        if desired < allowed:
            return allowed, reason
    return desired, ScalingLimitedReason.DESIRED_WITHIN_RANGE


def legacy_scale_up_limit(
    current: int,
    factor: float = LEGACY_SCALE_UP_LIMIT_FACTOR,
    minimum: float = LEGACY_SCALE_UP_LIMIT_MINIMUM,
) -> int:
    """Mirrors ``calculateScaleUpLimit``: max(factor * current, minimum), truncated."""
    return int(max(factor * current, minimum))


def limit_by_legacy_rules(
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    *,
    scale_up_limit_factor: float = LEGACY_SCALE_UP_LIMIT_FACTOR,
    scale_up_limit_minimum: float = LEGACY_SCALE_UP_LIMIT_MINIMUM,
) -> tuple[int, ScalingLimitedReason]:
    """Mirrors ``convertDesiredReplicasWithRules``: bounds plus the fixed scale-up limit.

    Upstream's test file raises the factor to 8; pass it here instead of patching a global.
    """
    limit = legacy_scale_up_limit(current, scale_up_limit_factor, scale_up_limit_minimum)
    if max_replicas > limit:
        allowed, reason = limit, ScalingLimitedReason.SCALE_UP_LIMIT
    else:
        allowed, reason = max_replicas, ScalingLimitedReason.TOO_MANY_REPLICAS
    if desired < min_replicas:
        return min_replicas, ScalingLimitedReason.TOO_FEW_REPLICAS
    if desired > allowed:
        return allowed, reason
    return desired, ScalingLimitedReason.DESIRED_WITHIN_RANGE


# --------------------------------------------------------------------------------------------
# Scale events


def store_scale_event(
    behavior: Behavior | None,
    up_events: list[ScaleEvent],
    down_events: list[ScaleEvent],
    previous: int,
    new: int,
    now: float,
) -> None:
    """Mirrors ``storeScaleEvent``: record a scale change, reusing an outdated slot.

    Nothing is stored without a behavior (nothing would read it). Events at least as old as the
    direction's longest policy period are marked outdated; the last of them takes the new event.
    """
    if behavior is None:
        return
    if new > previous:
        events, rules, change = up_events, behavior.scale_up, new - previous
    else:
        events, rules, change = down_events, behavior.scale_down, previous - new
    policies = defaulted_rules(rules).policies or ()
    longest_period = max((policy.period_seconds for policy in policies), default=0)
    old_index: int | None = None
    for index, event in enumerate(events):
        if now - event.timestamp >= longest_period:
            event.outdated = True
        if event.outdated:
            old_index = index
    _put(events, old_index, ScaleEvent(change, now))
