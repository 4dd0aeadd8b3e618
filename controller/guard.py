"""The safety guard: a pure function from a policy's decision to what may be applied, with reasons.

Every change the guard makes carries a reason (as the HPA's ScaleUpLimit does); the bounds are
applied last, so no decision that leaves the guard is ever outside them. A decision that is
not a decision at all (NaN, negative, non-finite limits) raises `InvalidDecision`: the
controller then fails static.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import StrEnum

from rlscale.controller.config import GuardSettings
from rlscale.env.state import Decision, ServiceState


class Clamp(StrEnum):
    MAX_STEP_UP = "MaxStepUp"
    MAX_STEP_DOWN = "MaxStepDown"
    SCALE_DOWN_COOLDOWN = "ScaleDownCooldown"
    BOUNDS_MIN = "BoundsMin"
    BOUNDS_MAX = "BoundsMax"
    RESOURCE_RATE_LIMIT = "ResourceRateLimit"
    ROLLOUT_IN_PROGRESS = "RolloutInProgress"
    CPU_LIMIT_BOUNDS = "CpuLimitBounds"
    MEMORY_LIMIT_BOUNDS = "MemoryLimitBounds"


class InvalidDecision(ValueError):
    """The policy's output cannot be a decision."""


@dataclass(frozen=True)
class History:
    """What the guard remembers of one service."""

    last_scale_up_at: float | None = None
    last_resource_change_at: float | None = None


@dataclass(frozen=True)
class Guarded:
    decision: Decision
    clamps: tuple[Clamp, ...]


def resources_of(item: Decision | ServiceState) -> tuple[float, float, float, float]:
    return item.cpu_request, item.cpu_limit, item.memory_request, item.memory_limit


def same_resources(a: Decision | ServiceState, b: Decision | ServiceState) -> bool:
    """Equal up to float noise (keeping a request-to-limit ratio leaves 1e-17s behind): no write for those."""
    return all(math.isclose(x, y, rel_tol=1e-6) for x, y in zip(resources_of(a), resources_of(b)))


def check(decision: object) -> Decision:
    """The decision, or `InvalidDecision` saying what is wrong with it."""
    if not isinstance(decision, Decision):
        raise InvalidDecision(f"not a Decision: {type(decision).__name__}")
    if decision.replicas is not None and (isinstance(decision.replicas, bool) or not isinstance(decision.replicas, int)
                                          or decision.replicas < 0):
        raise InvalidDecision(f"replicas must be a whole number >= 0, got {decision.replicas!r}")
    for field in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
        value = getattr(decision, field)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise InvalidDecision(f"{field} must be a positive finite number, got {value!r}")
    return decision


def guard(decision: Decision, state: ServiceState, history: History, settings: GuardSettings, now: float,
          rollout_in_progress: bool = False) -> Guarded:
    """What may be applied of `decision` for the service in `state`, and why anything changed."""
    check(decision)
    clamps: list[Clamp] = []
    replicas = decision.replicas
    if replicas is not None:
        current = state.replicas_desired
        most = max(current + 1, math.ceil(current * settings.max_scale_up))
        least = math.floor(current * settings.max_scale_down)
        if replicas > most:
            replicas = most
            clamps.append(Clamp.MAX_STEP_UP)
        if replicas < least:
            replicas = least
            clamps.append(Clamp.MAX_STEP_DOWN)
        cooling = history.last_scale_up_at is not None and now - history.last_scale_up_at < settings.scale_down_cooldown_s
        if replicas < current and cooling:
            replicas = current
            clamps.append(Clamp.SCALE_DOWN_COOLDOWN)
        bounds = state.bounds
        if replicas < bounds.min_replicas:
            replicas = bounds.min_replicas
            clamps.append(Clamp.BOUNDS_MIN)
        if replicas > bounds.max_replicas:
            replicas = bounds.max_replicas
            clamps.append(Clamp.BOUNDS_MAX)
    resources, current_resources = resources_of(decision), resources_of(state)
    if same_resources(decision, state):
        resources = current_resources
    else:
        recent = history.last_resource_change_at is not None and now - history.last_resource_change_at < settings.resource_change_interval_s
        if rollout_in_progress:
            resources = current_resources
            clamps.append(Clamp.ROLLOUT_IN_PROGRESS)
        elif recent:
            resources = current_resources
            clamps.append(Clamp.RESOURCE_RATE_LIMIT)
    cpu_request, cpu_limit, memory_request, memory_limit = resources
    guarded = dataclasses.replace(decision, replicas=replicas, cpu_request=cpu_request, cpu_limit=cpu_limit,
                                  memory_request=memory_request, memory_limit=memory_limit)  # the HPA fields (a floor) kept
    clipped = guarded.clipped(state.bounds)
    if clipped.cpu_limit != guarded.cpu_limit:
        clamps.append(Clamp.CPU_LIMIT_BOUNDS)
    if clipped.memory_limit != guarded.memory_limit:
        clamps.append(Clamp.MEMORY_LIMIT_BOUNDS)
    return Guarded(clipped, tuple(clamps))


def remember(history: History, state: ServiceState, applied: Decision, now: float) -> History:
    """The history after `applied` was actuated."""
    scaled_up = applied.replicas is not None and applied.replicas > state.replicas_desired
    changed = not same_resources(applied, state)
    return History(
        last_scale_up_at=now if scaled_up else history.last_scale_up_at,
        last_resource_change_at=now if changed else history.last_resource_change_at,
    )
