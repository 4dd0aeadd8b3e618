"""The learned policy's safety net: non-finite, out of distribution and runaway decisions go back to the HPA."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from rlscale.agent.learned import ExportedPolicy, LearnedPolicy, PolicyNetwork
from rlscale.agent.policy import EpisodeContext
from rlscale.agent.safety import OOD_MIN_STD, OOD_SIGMAS, RUNAWAY_HOLD_S, RUNAWAY_INTERVALS, SafetyNet
from rlscale.env import codec
from rlscale.env.scenario import load_scenario
from rlscale.env.state import Decision, ServiceState

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


TOP, LEAST = SPEC.bounds.max_replicas, SPEC.bounds.min_replicas
CROWDED = dict(replicas_desired=TOP, replicas_ready=TOP, cpu_usage=0.001)  # at the top, the CPU idle


def asks(replicas: int | None, cpu_request: float = SPEC.cpu_request, floor: bool = True, target: int | None = 80) -> Decision:
    return Decision(replicas, cpu_request, SPEC.cpu_limit, SPEC.memory_request, SPEC.memory_limit,
                    hpa_floor=floor, hpa_target_utilization=target)


def watched(net: SafetyNet, proposal: Decision, t0: float = 600.0, **changes) -> list[str | None]:
    """The safety net's verdicts on `RUNAWAY_INTERVALS` intervals of the same state and proposal."""
    size = codec.OBSERVATION_SIZE
    verdicts = []
    for i in range(RUNAWAY_INTERVALS):
        s = state(t0 + 30 * i, **changes)
        verdicts.append(net.check(s, np.zeros(size), np.zeros(sum(codec.ACTION_NVEC)), s.cpu_usage / s.cpu_limit, proposal))
    return verdicts


def calm_net() -> SafetyNet:
    return SafetyNet.from_statistics(np.zeros(codec.OBSERVATION_SIZE), np.full(codec.OBSERVATION_SIZE, 100.0))


@pytest.mark.parametrize(("changes", "proposal", "runaway"), [
    (CROWDED, asks(TOP), True),
    (CROWDED, asks(TOP, floor=False), True),  # pinned there
    (CROWDED, asks(LEAST, cpu_request=0.01, target=1), True),  # a floor at the minimum, and an HPA target that holds the top
    (CROWDED, asks(LEAST), False),  # the HPA's scale-down stabilization still holds the top: the network asks the least
    (CROWDED, asks(None), True),  # handed to the HPA, which sits at the top idle
    (dict(CROWDED, cpu_usage=0.09), asks(TOP), False),  # busy enough
    (dict(load_rps=0.0, cpu_usage=0.0), asks(2, cpu_request=SPEC.bounds.max_cpu_limit), True),  # hoarding while idle
    (dict(load_rps=0.0, cpu_usage=0.0), asks(LEAST, cpu_request=SPEC.bounds.max_cpu_limit), False),  # at the minimum
], ids=["floor-top", "pinned-top", "target-holds-top", "hpa-lingers", "hpa-idle-top", "busy", "hoarding", "hoarding-at-min"])
def test_a_runaway_is_what_the_network_holds_for_ten_intervals(changes: dict, proposal: Decision, runaway: bool) -> None:
    verdicts = watched(calm_net(), proposal, **changes)
    assert verdicts[:-1] == [None] * (RUNAWAY_INTERVALS - 1)
    assert verdicts[-1] == ("Runaway" if runaway else None)


def test_a_runaway_holds_the_hpa_in_charge_for_the_hold() -> None:
    net = calm_net()
    assert watched(net, asks(TOP), **CROWDED)[-1] == "Runaway"
    last = 600.0 + 30 * (RUNAWAY_INTERVALS - 1)
    sane = asks(3)
    assert watched(net, sane, t0=last + RUNAWAY_HOLD_S / 2)[0] == "Runaway"  # held back, even once things look normal
    assert watched(net, sane, t0=last + RUNAWAY_HOLD_S + 30) == [None] * RUNAWAY_INTERVALS
    assert net.fired[(SPEC.name, "Runaway")] == 1 + RUNAWAY_INTERVALS  # every held decision counts
