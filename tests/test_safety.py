"""The learned policy's safety net: non-finite, out of distribution and runaway decisions go back to the HPA."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from rlscale.agent.learned import ExportedPolicy, LearnedPolicy, PolicyNetwork
from rlscale.agent.policy import EpisodeContext
from rlscale.agent.safety import OOD_MIN_STD, OOD_SIGMAS, RUNAWAY_HOLD_S, RUNAWAY_INTERVALS
from rlscale.env import codec
from rlscale.env.scenario import load_scenario
from rlscale.env.state import ServiceState

SCENARIO = load_scenario("image-classification")
SPEC = SCENARIO.services[0]


def network(prefer: tuple[int, ...] = (6, 2, 0, 1), mean: np.ndarray | None = None,
            var: np.ndarray | None = None, weight_nan: bool = False) -> PolicyNetwork:
    """A network whose logits always prefer one action (bias only), with chosen observation statistics."""
    size, width = codec.OBSERVATION_SIZE, sum(codec.ACTION_NVEC)
    bias = np.zeros(width)
    offsets = np.cumsum((0, *codec.ACTION_NVEC))[:-1]
    for offset, choice in zip(offsets, prefer):
        bias[offset + choice] = 5.0
    weight = np.zeros((width, 4))
    if weight_nan:
        weight[0, 0] = np.nan
    return PolicyNetwork(layers=((np.zeros((4, size)), np.zeros(4)),), action_weight=weight, action_bias=bias,
                         activation="tanh", obs_mean=np.full(size, 0.3) if mean is None else mean,
                         obs_var=np.full(size, 0.25) if var is None else var, obs_epsilon=1e-8, obs_clip=10.0,
                         action_nvec=codec.ACTION_NVEC)


def policy(net: PolicyNetwork) -> LearnedPolicy:
    p = LearnedPolicy(ExportedPolicy(net, {}, Path(".")))
    p.reset(EpisodeContext(SCENARIO, (SPEC.name,)))
    return p


def state(t: float, **changes) -> ServiceState:
    base = ServiceState(SPEC.name, t, t, 20.0, 3, 3, 0, SPEC.cpu_request, SPEC.cpu_limit, SPEC.memory_request,
                        SPEC.memory_limit, 0.03, 0.0, 50 * 2**20, 0.05, 0.02, SPEC.slo_latency_s, SPEC.slo_quantile, 0.0,
                        0.0, 0, 5.0, 2**33, SPEC.bounds)
    return dataclasses.replace(base, **changes)


def is_fallback(decision) -> bool:
    return decision.replicas is None and (decision.cpu_request, decision.cpu_limit) == (SPEC.cpu_request, SPEC.cpu_limit)


def test_a_sane_state_is_decided_by_the_network() -> None:
    p = policy(network())
    decision = p.decide(state(600.0))
    assert decision.replicas is not None and decision.hpa_floor
    assert p.fallbacks(SPEC.name) == {"NonFinite": 0, "OutOfDistribution": 0, "Runaway": 0}


def test_non_finite_weights_never_become_a_decision() -> None:
    p = policy(network(weight_nan=True))
    assert is_fallback(p.decide(state(600.0)))
    assert p.fallbacks(SPEC.name)["NonFinite"] == 1


def test_a_feature_far_outside_training_falls_back() -> None:
    history = codec.History()
    history.record(state(600.0))
    seen = codec.encode(history)  # training saw exactly this state, and little spread around it
    p = policy(network(mean=seen.astype(np.float64), var=np.full(codec.OBSERVATION_SIZE, 1e-4)))
    assert not is_fallback(p.decide(state(600.0)))
    far = state(630.0, latency_quantile_s=10.0)  # latency_vs_slo at the top of its range
    shift = codec.encode(_recorded(far))[3] - seen[3]
    assert shift > OOD_SIGMAS * OOD_MIN_STD  # beyond 8 standard deviations, at least 8 x the floor
    assert is_fallback(p.decide(far))
    assert p.fallbacks(SPEC.name)["OutOfDistribution"] == 1


def _recorded(s: ServiceState) -> codec.History:
    history = codec.History()
    history.record(s)
    return history


def test_replicas_at_the_bound_with_nothing_to_do_are_a_runaway() -> None:
    p = policy(network(var=np.full(codec.OBSERVATION_SIZE, 10.0)))
    top = SPEC.bounds.max_replicas
    crowded = [state(600.0 + 30 * i, replicas_desired=top, replicas_ready=top, cpu_usage=0.001) for i in range(RUNAWAY_INTERVALS)]
    decisions = [p.decide(s) for s in crowded]
    assert not any(is_fallback(d) for d in decisions[:-1]) and is_fallback(decisions[-1])
    later = state(crowded[-1].time_s + RUNAWAY_HOLD_S / 2)  # held back, even once things look normal
    assert is_fallback(p.decide(later))
    assert not is_fallback(p.decide(state(crowded[-1].time_s + RUNAWAY_HOLD_S + 30)))
    assert p.fallbacks(SPEC.name)["Runaway"] == 2
