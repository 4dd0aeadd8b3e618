"""One HorizontalPodAutoscaler's controller state and its reconcile step, without I/O or a clock.

Mirrors ``reconcileAutoscaler`` and the normalization methods of the ``HorizontalController`` in
kubernetes ``pkg/controller/podautoscaler/horizontal.go``, for one HPA with one CPU-utilization
metric. The metric's replica proposal comes from `rlscale.env.hpa_replicas`; the building blocks
of normalization come from `rlscale.env.hpa_behavior`. The controller's configuration defaults
live here, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rlscale.env.hpa_behavior import (
    LEGACY_SCALE_UP_LIMIT_FACTOR,
    LEGACY_SCALE_UP_LIMIT_MINIMUM,
    AbleToScaleReason,
    Behavior,
    Recommendation,
    ScaleEvent,
    ScalingLimitedReason,
    apply_behavior_defaults,
    defaulted_rules,
    limit_by_behavior_rate,
    limit_by_legacy_rules,
    stabilize_legacy,
    stabilize_with_behavior,
    store_scale_event,
)
from rlscale.env.hpa_replicas import HpaMetricsError, Tolerances

# kube-controller-manager defaults (pkg/controller/podautoscaler/config/v1alpha1/defaults.go).
SYNC_PERIOD_S = 15.0  # --horizontal-pod-autoscaler-sync-period
DEFAULT_TOLERANCE = 0.1  # --horizontal-pod-autoscaler-tolerance
DEFAULT_TOLERANCES: Tolerances = (DEFAULT_TOLERANCE, DEFAULT_TOLERANCE)
CPU_INITIALIZATION_PERIOD_S = 300.0  # --horizontal-pod-autoscaler-cpu-initialization-period
DELAY_OF_INITIAL_READINESS_STATUS_S = 30.0  # --horizontal-pod-autoscaler-initial-readiness-delay
DOWNSCALE_STABILIZATION_WINDOW_S = 300.0  # --horizontal-pod-autoscaler-downscale-stabilization

CPU_UTILIZATION_METRIC_NAME = "cpu resource utilization (percentage of request)"
RESCALE_ABOVE_MAX = "Current number of replicas above Spec.MaxReplicas"
RESCALE_BELOW_MIN = "Current number of replicas below Spec.MinReplicas"
RESCALE_ABOVE_TARGET = f"{CPU_UTILIZATION_METRIC_NAME} above target"
RESCALE_BELOW_TARGET = "All metrics below target"


class ScalingActiveReason(StrEnum):
    """Reasons reconcile sets on the ScalingActive condition."""

    VALID_METRIC_FOUND = "ValidMetricFound"
    SCALING_DISABLED = "ScalingDisabled"
    FAILED_GET_RESOURCE_METRIC = "FailedGetResourceMetric"


@dataclass(frozen=True, slots=True, kw_only=True)
class HpaSpec:
    """The parts of an ``autoscaling/v2`` HPA spec this model reads.

    A given `behavior` is stored defaulted, as the API server stores it; None selects the
    legacy normalization. `tolerances` are (scale_down, scale_up).
    """

    max_replicas: int
    target_cpu_utilization_percent: int
    min_replicas: int = 1  # the API's default when minReplicas is unset
    behavior: Behavior | None = None
    tolerances: Tolerances = DEFAULT_TOLERANCES

    def __post_init__(self) -> None:
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError(
                f"need 0 <= min_replicas <= max_replicas and max_replicas >= 1, "
                f"got {self.min_replicas} and {self.max_replicas}"
            )
        if self.target_cpu_utilization_percent <= 0:
            raise ValueError(
                f"target_cpu_utilization_percent must be > 0, got {self.target_cpu_utilization_percent}"
            )
        if self.behavior is not None:
            object.__setattr__(self, "behavior", apply_behavior_defaults(self.behavior))


@dataclass(frozen=True, slots=True)
class HpaDecision:
    """What one reconcile decided, and the condition reasons it set (None = left as it was).

    `rescale_reason` is upstream's event text for a rescale, "" when the scale is unchanged.
    `able_to_scale` is the normalization's reason; upstream overwrites it with SucceededRescale
    once the scale update succeeds, which is I/O and not modelled.
    """

    desired_replicas: int
    rescale_reason: str
    scaling_active: ScalingActiveReason | None
    able_to_scale: AbleToScaleReason | None = None
    scaling_limited: ScalingLimitedReason | None = None


class HorizontalPodAutoscaler:
    """One HPA's controller memory (its recommendations and scale events) and `reconcile`.

    `recommendations=None` means "never reconciled": the first reconcile seeds the history with
    the current count (``recordInitialRecommendation``); pass a list, even an empty one, to start
    from that history instead. The histories are plain lists and may be inspected or replaced.
    """

    __slots__ = (
        "recommendations",
        "scale_up_events",
        "scale_down_events",
        "downscale_stabilization_window_s",
        "scale_up_limit_factor",
        "scale_up_limit_minimum",
        "_needs_initial_recommendation",
    )

    def __init__(
        self,
        *,
        recommendations: list[Recommendation] | None = None,
        downscale_stabilization_window_s: float = DOWNSCALE_STABILIZATION_WINDOW_S,
        scale_up_limit_factor: float = LEGACY_SCALE_UP_LIMIT_FACTOR,
        scale_up_limit_minimum: float = LEGACY_SCALE_UP_LIMIT_MINIMUM,
    ) -> None:
        self.recommendations: list[Recommendation] = [] if recommendations is None else recommendations
        self.scale_up_events: list[ScaleEvent] = []
        self.scale_down_events: list[ScaleEvent] = []
        self.downscale_stabilization_window_s = downscale_stabilization_window_s
        self.scale_up_limit_factor = scale_up_limit_factor
        self.scale_up_limit_minimum = scale_up_limit_minimum
        self._needs_initial_recommendation = recommendations is None

    def reconcile(
        self,
        now: float,
        current_replicas: int,
        spec: HpaSpec,
        metric_replicas: int | HpaMetricsError,
    ) -> HpaDecision:
        """Mirrors ``reconcileAutoscaler`` from reading the scale to storing the scale event.

        `current_replicas` is the target's ``scale.Spec.Replicas``; `metric_replicas` is the
        replica proposal of the CPU metric (computed with `current_replicas` as the current
        count, as upstream does), or the error that computing it raised. Out-of-range counts are
        brought to the bounds without consulting the metric or the behavior; a metric error
        leaves the scale unchanged and records nothing.
        """
        if self._needs_initial_recommendation:
            self.recommendations.append(Recommendation(current_replicas, now))
            self._needs_initial_recommendation = False

        if current_replicas == 0:  # someone scaled the target to zero: hands off
            return HpaDecision(0, "", ScalingActiveReason.SCALING_DISABLED)
        if current_replicas > spec.max_replicas:
            self._store_scale_event(spec, current_replicas, spec.max_replicas, now)
            return HpaDecision(spec.max_replicas, RESCALE_ABOVE_MAX, None)
        if current_replicas < spec.min_replicas:
            self._store_scale_event(spec, current_replicas, spec.min_replicas, now)
            return HpaDecision(spec.min_replicas, RESCALE_BELOW_MIN, None)
        if isinstance(metric_replicas, HpaMetricsError):
            return HpaDecision(current_replicas, "", ScalingActiveReason.FAILED_GET_RESOURCE_METRIC)

        proposed = max(metric_replicas, 0)
        rescale_reason = ""
        if proposed > current_replicas:
            rescale_reason = RESCALE_ABOVE_TARGET
        elif proposed < current_replicas:
            rescale_reason = RESCALE_BELOW_TARGET
        if spec.behavior is None:
            desired, able_to_scale, scaling_limited = self._normalize_legacy(
                now, current_replicas, proposed, spec
            )
        else:
            desired, able_to_scale, scaling_limited = self._normalize_with_behavior(
                now, current_replicas, proposed, spec, spec.behavior
            )
        if desired == current_replicas:
            rescale_reason = ""
        else:
            self._store_scale_event(spec, current_replicas, desired, now)
        return HpaDecision(
            desired, rescale_reason, ScalingActiveReason.VALID_METRIC_FOUND, able_to_scale, scaling_limited
        )

    def _normalize_legacy(
        self, now: float, current: int, desired: int, spec: HpaSpec
    ) -> tuple[int, AbleToScaleReason, ScalingLimitedReason]:
        """Mirrors ``normalizeDesiredReplicas`` (no ``spec.behavior``)."""
        window = self.downscale_stabilization_window_s
        stabilized = stabilize_legacy(self.recommendations, now, desired, window)
        able_to_scale = (
            AbleToScaleReason.READY_FOR_NEW_SCALE
            if stabilized == desired
            else AbleToScaleReason.SCALE_DOWN_STABILIZED
        )
        replicas, scaling_limited = limit_by_legacy_rules(
            current,
            stabilized,
            spec.min_replicas,
            spec.max_replicas,
            scale_up_limit_factor=self.scale_up_limit_factor,
            scale_up_limit_minimum=self.scale_up_limit_minimum,
        )
        return replicas, able_to_scale, scaling_limited

    def _normalize_with_behavior(
        self, now: float, current: int, desired: int, spec: HpaSpec, behavior: Behavior
    ) -> tuple[int, AbleToScaleReason, ScalingLimitedReason]:
        """Mirrors ``normalizeDesiredReplicasWithBehaviors``; an unset scale-down window takes
        the controller's (``maybeInitScaleDownStabilizationWindow``)."""
        up_window = defaulted_rules(behavior.scale_up).stabilization_window_seconds
        down_window = defaulted_rules(behavior.scale_down).stabilization_window_seconds
        stabilized, stabilized_reason = stabilize_with_behavior(
            self.recommendations,
            now,
            current,
            desired,
            up_window_s=0 if up_window is None else up_window,  # the API default
            down_window_s=self.downscale_stabilization_window_s if down_window is None else down_window,
        )
        able_to_scale = AbleToScaleReason.READY_FOR_NEW_SCALE if stabilized == desired else stabilized_reason
        replicas, scaling_limited = limit_by_behavior_rate(
            current,
            stabilized,
            spec.min_replicas,
            spec.max_replicas,
            behavior,
            self.scale_up_events,
            self.scale_down_events,
            now,
        )
        return replicas, able_to_scale, scaling_limited

    def _store_scale_event(self, spec: HpaSpec, previous: int, new: int, now: float) -> None:
        store_scale_event(spec.behavior, self.scale_up_events, self.scale_down_events, previous, new, now)

