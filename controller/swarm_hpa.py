"""The HPA Swarm does not have: rlscale's exact Kubernetes HPA (`env/hpa*.py`) on the tasks' CPU.

Swarm has no autoscaler, so where a Kubernetes service would be handed back to its
HorizontalPodAutoscaler (a `Decision` without replicas: the HPA baseline, or a learned
policy's fallback), a Swarm service gets what the same pure functions compute from what the
Engine API shows: each task is grouped as upstream groups pods (running = ready, not yet
running = pending, no CPU sample yet = missing metric), the replica calculator proposes from the
CPU used per reservation, and one `HorizontalPodAutoscaler` per service (its recommendation
history: downscale stabilization, scale-up limits) normalises the proposal. It is reconciled at
every observation, as the Kubernetes HPA keeps reconciling while rlscale pins it.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlscale.env.hpa import (
    CPU_INITIALIZATION_PERIOD_S,
    DELAY_OF_INITIAL_READINESS_STATUS_S,
    HorizontalPodAutoscaler,
    HpaDecision,
    HpaSpec,
)
from rlscale.env.hpa_behavior import Behavior, ScalingRules
from rlscale.env.hpa_replicas import PHASE_PENDING, HpaMetricsError, PodGroup, pod_group, replicas_from_groups


@dataclass(frozen=True)
class TaskReading:
    """What the HPA reads of one task whose desired state is running."""

    running: bool
    running_s: float | None  # how long it has been running (None: not yet)
    cpu_request_milli: int
    cpu_usage_milli: int | None  # None: no CPU sample pair yet
    metric_window_s: float


def hpa_spec(min_replicas: int, max_replicas: int, target_utilization: int, scale_down_window_s: int | None) -> HpaSpec:
    """An `autoscaling/v2` HPA with one CPU target; a window is set as a manifest sets it (behavior.scaleDown)."""
    behavior = None if scale_down_window_s is None else Behavior(scale_down=ScalingRules(stabilization_window_seconds=scale_down_window_s))
    return HpaSpec(min_replicas=min_replicas, max_replicas=max_replicas, target_cpu_utilization_percent=target_utilization,
                   behavior=behavior)


def metric_replicas(current_replicas: int, spec: HpaSpec, tasks: list[TaskReading]) -> int | HpaMetricsError:
    """The CPU metric's replica proposal, as upstream's replica calculator makes it from these tasks."""
    ready_requests: list[int] = []
    ready_usages: list[int] = []
    missing_requests: list[int] = []
    unready_requests: list[int] = []
    for task in tasks:
        group = pod_group("Running" if task.running else PHASE_PENDING, False, task.running if task.running else None,
                          task.running_s, task.running_s, 0.0 if task.cpu_usage_milli is not None else None,
                          task.metric_window_s, True, CPU_INITIALIZATION_PERIOD_S, DELAY_OF_INITIAL_READINESS_STATUS_S)
        if group is PodGroup.READY and task.cpu_usage_milli is not None:
            ready_requests.append(task.cpu_request_milli)
            ready_usages.append(task.cpu_usage_milli)
        elif group is PodGroup.UNREADY:
            unready_requests.append(task.cpu_request_milli)
        elif group is PodGroup.MISSING:
            missing_requests.append(task.cpu_request_milli)
    try:
        replicas, _, _ = replicas_from_groups(current_replicas, spec.target_cpu_utilization_percent, spec.tolerances,
                                              ready_requests, ready_usages, missing_requests, unready_requests)
    except HpaMetricsError as error:
        return error
    return replicas


class SwarmHpa:
    """One emulated HPA per service, reconciled once per observation."""

    def __init__(self) -> None:
        self.controllers: dict[str, HorizontalPodAutoscaler] = {}
        self.decisions: dict[str, HpaDecision] = {}

    def reconcile(self, name: str, now: float, current_replicas: int, spec: HpaSpec, tasks: list[TaskReading]) -> HpaDecision:
        controller = self.controllers.setdefault(name, HorizontalPodAutoscaler())
        decision = controller.reconcile(now, current_replicas, spec, metric_replicas(current_replicas, spec, tasks))
        self.decisions[name] = decision
        return decision

    def forget(self, keep: set[str]) -> None:
        """Drop the memory of services no longer managed."""
        for name in set(self.controllers) - keep:
            self.controllers.pop(name, None)
            self.decisions.pop(name, None)
