"""Finite or nothing: a policy is checked before the controller starts, and every observation before it is used.

At load: an optional sha256 pin (of the policy's SHA256SUMS file, which covers every file),
then for a learned policy every array must be finite and the layers must chain (observation
size -> hidden layers -> one logit per action choice) with a known activation, and then a
self-test: canned observations (idle, busy, overloaded) must give finite decisions within
the bounds. Any failure is one `UserInputError` line, and the controller does not start.
At run time, a state with a non-finite field or observation is refused for that service only.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from rlscale.agent.learned import ACTIVATIONS, SUMS_FILE, LearnedPolicy, sha256_of
from rlscale.agent.policy import EpisodeContext, Policy
from rlscale.controller.guard import InvalidDecision, check
from rlscale.env import codec
from rlscale.env.state import Bounds, ServiceState
from rlscale.errors import UserInputError

MIB = 2.0**20


def verify_policy(policy: Policy, where: str, path: Path | None, pinned_sha256: str | None, scenario: object) -> None:
    """Refuse a policy that is not the pinned one, is not finite, or fails its self-test (one line each)."""
    if pinned_sha256 is not None:
        if path is None:
            raise UserInputError("policy_sha256", f"only a learned policy can be pinned, not {where!r}")
        found = sha256_of(path / SUMS_FILE)
        if found != pinned_sha256:
            raise UserInputError(str(path / SUMS_FILE), f"sha256 {found} is not the pinned policy_sha256 {pinned_sha256}")
    if isinstance(policy, LearnedPolicy):
        _verify_network(policy, str(path or where))
    self_test(policy, where, scenario)


def _verify_network(policy: LearnedPolicy, where: str) -> None:
    net = policy.exported.network
    if net.activation not in ACTIVATIONS:
        raise UserInputError(where, f"unknown activation {net.activation!r} (known: {', '.join(sorted(ACTIVATIONS))})")
    arrays = {"normalization mean": net.obs_mean, "normalization variance": net.obs_var, "action weight": net.action_weight,
              "action bias": net.action_bias}
    for i, (weight, bias) in enumerate(net.layers):
        arrays[f"layer {i} weight"], arrays[f"layer {i} bias"] = weight, bias
    for name, array in arrays.items():
        if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
            raise UserInputError(where, f"the {name} is not all finite numbers")
    if np.any(net.obs_var < 0) or not (math.isfinite(net.obs_epsilon) and net.obs_epsilon >= 0 and math.isfinite(net.obs_clip)):
        raise UserInputError(where, "the observation normalization is invalid (negative variance, epsilon or clip not finite)")
    width = codec.OBSERVATION_SIZE
    if net.obs_mean.shape != (width,) or net.obs_var.shape != (width,):
        raise UserInputError(where, f"the normalization has shape {net.obs_mean.shape}, the codec's observations have {width} features")
    for i, (weight, bias) in enumerate(net.layers):
        if weight.ndim != 2 or weight.shape[1] != width or bias.shape != (weight.shape[0],):
            raise UserInputError(where, f"layer {i} has weight {weight.shape} and bias {bias.shape}, but its input has {width} features")
        width = weight.shape[0]
    logits = sum(codec.ACTION_NVEC)
    if net.action_weight.shape != (logits, width) or net.action_bias.shape != (logits,):
        raise UserInputError(where, f"the action layer has weight {net.action_weight.shape}, expected {(logits, width)}")


def canned_states() -> dict[str, ServiceState]:
    """Three typical services (idle, busy, overloaded) for the self-test."""
    bounds = Bounds(1, 20, 0.05, 4.0, 64 * MIB, 4096 * MIB)
    base = ServiceState(
        name="self-test/idle", time_s=0.0, time_of_day_s=43_200.0, load_rps=1.0, replicas_desired=2, replicas_ready=2,
        replicas_pending=0, cpu_request=0.25, cpu_limit=0.5, memory_request=256 * MIB, memory_limit=512 * MIB, cpu_usage=0.02,
        cpu_throttled_fraction=0.0, memory_working_set=150 * MIB, latency_quantile_s=0.05, latency_mean_s=0.03, slo_latency_s=0.5,
        slo_quantile=0.95, slo_violation_fraction=0.0, drop_fraction=0.0, oom_kills=0, cluster_cpu_headroom=8.0,
        cluster_memory_headroom=0.0, bounds=bounds)
    return {
        "self-test/idle": base,
        "self-test/busy": dataclasses.replace(base, name="self-test/busy", load_rps=40.0, replicas_desired=4, replicas_ready=4,
                                              cpu_usage=0.35, latency_quantile_s=0.3, latency_mean_s=0.12),
        "self-test/overloaded": dataclasses.replace(base, name="self-test/overloaded", load_rps=200.0, cpu_usage=0.5,
                                                    cpu_throttled_fraction=0.6, latency_quantile_s=4.0, latency_mean_s=2.0,
                                                    slo_violation_fraction=0.8, drop_fraction=0.2),
    }


def self_test(policy: Policy, where: str, scenario: object) -> None:
    states = canned_states()
    try:
        policy.reset(EpisodeContext(scenario, tuple(states)))  # type: ignore[arg-type]
        decisions = policy.decide_all(states)
        for name, state in states.items():
            decision = check(decisions.get(name))
            if decision.replicas is not None and not state.bounds.min_replicas <= decision.replicas <= state.bounds.max_replicas:
                raise InvalidDecision(f"{decision.replicas} replicas is outside the bounds [1, 20]")
    except (InvalidDecision, ValueError, IndexError, TypeError, FloatingPointError) as exc:
        raise UserInputError(where, f"the policy fails its self-test on a canned observation ({exc})") from None


def refuse_non_finite(state: ServiceState) -> str | None:
    """Why `state` cannot be shown to a policy (a non-finite field or observation), or None."""
    for field in dataclasses.fields(ServiceState):
        value = getattr(state, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            return f"{field.name} is {value}"
    alone = codec.History()  # the observation of this state on its own: what the codec makes of it, whatever came before
    alone.record(state)
    if not np.all(np.isfinite(codec.encode(alone))):
        return "its observation is not finite"
    return None
