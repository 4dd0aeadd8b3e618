"""The Knative Pod Autoscaler's decision (KPA, concurrency metric), as a pure step over its own state.

Mirrors ``pkg/autoscaler/scaling/autoscaler.go`` of knative/serving with its documented defaults:
every tick (2 s) the autoscaler reads the revision's total in-flight requests averaged over the
stable window (60 s) and the panic window (10% of it, 6 s), and wants
`ceil(observed / target)` pods for each, where the target per pod is the concurrency target
times the target utilization (70%). Both counts are kept within
[floor(ready / max scale-down rate), ceil(ready x max scale-up rate)]. When the panic count
reaches the panic threshold (200%) times the ready pods, it panics: it takes the larger count
and never scales down until the surge has been in the stable window for a whole window. A
scale-down delay keeps the largest count of that long. Scale to zero and the activator are
not modelled (the service's minimum replicas hold).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

TICK_S = 2  # the autoscaler's tick interval


@dataclass(frozen=True)
class KpaSettings:
    """A KPA's knobs (Knative's defaults but the concurrency target, which is per service)."""

    target_concurrency: float  # in-flight requests per pod the KPA aims at (before utilization)
    target_utilization: float = 0.7
    stable_window_s: float = 60.0
    panic_window_percentage: float = 10.0
    panic_threshold: float = 2.0  # panic when the panic count reaches 200% of the ready pods
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    scale_down_delay_s: float = 0.0

    @property
    def target_value(self) -> float:
        return self.target_concurrency * self.target_utilization


@dataclass
class KpaState:
    """What one revision's autoscaler remembers between ticks."""

    samples: deque[float] = field(default_factory=deque)  # total concurrency per tick, newest last
    panic_since: float | None = None  # when it last saw the panic threshold crossed
    max_panic_pods: int = 0
    recent_desired: deque[tuple[float, int]] = field(default_factory=deque)  # for the scale-down delay


def kpa_step(settings: KpaSettings, state: KpaState, now: float, concurrency: float, ready: int,
             min_replicas: int, max_replicas: int) -> int:
    """Record this tick's total concurrency and return the desired pod count (within the bounds)."""
    stable_ticks = max(1, round(settings.stable_window_s / TICK_S))
    panic_ticks = max(1, round(settings.stable_window_s * settings.panic_window_percentage / 100.0 / TICK_S))
    state.samples.append(concurrency)
    while len(state.samples) > stable_ticks:
        state.samples.popleft()
    recent = list(state.samples)
    stable = sum(recent) / len(recent)
    panic = sum(recent[-panic_ticks:]) / len(recent[-panic_ticks:])
    ready_pods = float(max(ready, 1))
    max_up = math.ceil(settings.max_scale_up_rate * ready_pods)
    max_down = math.floor(ready_pods / settings.max_scale_down_rate)
    stable_count = math.ceil(stable / settings.target_value)
    panic_count = math.ceil(panic / settings.target_value)
    desired_stable = int(min(max(stable_count, max_down), max_up))
    desired_panic = int(min(max(panic_count, max_down), max_up))
    over_threshold = panic_count / ready_pods >= settings.panic_threshold
    if over_threshold:
        state.panic_since = now
    elif state.panic_since is not None and state.panic_since + settings.stable_window_s < now:
        state.panic_since, state.max_panic_pods = None, 0
    desired = desired_stable
    if state.panic_since is not None:  # never scale down while panicking
        state.max_panic_pods = max(state.max_panic_pods, desired_stable, desired_panic)
        desired = state.max_panic_pods
    if settings.scale_down_delay_s > 0:
        state.recent_desired.append((now, desired))
        while state.recent_desired[0][0] <= now - settings.scale_down_delay_s:
            state.recent_desired.popleft()
        desired = max(count for _, count in state.recent_desired)
    return min(max(desired, min_replicas), max_replicas)
