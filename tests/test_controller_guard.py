"""The safety guard: table-driven cases with their reasons, and a property over random inputs."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlscale.controller.config import GuardSettings
from rlscale.controller.guard import Clamp, History, InvalidDecision, guard, remember
from rlscale.controller.policy_check import refuse_non_finite
from rlscale.env.state import Bounds, Decision, ServiceState

MIB = 2.0**20
BOUNDS = Bounds(2, 12, 0.1, 2.0, 128 * MIB, 1024 * MIB)
SETTINGS = GuardSettings(max_scale_up=2.0, max_scale_down=0.5, scale_down_cooldown_s=120, resource_change_interval_s=600)


def state(replicas: int = 4, **changes) -> ServiceState:
    base = ServiceState(
        name="svc", time_s=1000.0, time_of_day_s=1000.0, load_rps=10.0, replicas_desired=replicas, replicas_ready=replicas,
        replicas_pending=0, cpu_request=0.25, cpu_limit=0.5, memory_request=256 * MIB, memory_limit=512 * MIB,
        cpu_usage=0.2, cpu_throttled_fraction=0.0, memory_working_set=200 * MIB, latency_quantile_s=0.1,
        slo_latency_s=0.3, slo_quantile=0.95, slow_request_fraction=0.0, drop_fraction=0.0,
        oom_kills=0, pool_cpu_headroom=4.0, pool_memory_headroom=0.0, bounds=BOUNDS,
    )
    return dataclasses.replace(base, **changes)


def decision(replicas: int | None, cpu_limit: float = 0.5, memory_limit: float = 512 * MIB) -> Decision:
    return Decision(replicas, cpu_limit / 2, cpu_limit, memory_limit / 2, memory_limit)


@pytest.mark.parametrize(
    ("current", "wanted", "history", "rollout", "expected", "reasons"),
    [
        (4, 5, History(), False, 5, ()),
        (4, 20, History(), False, 8, (Clamp.MAX_STEP_UP, )),
        (4, 1, History(), False, 2, (Clamp.MAX_STEP_DOWN,)),
        (10, 20, History(), False, 12, (Clamp.BOUNDS_MAX,)),
        (3, 1, History(), False, 2, (Clamp.BOUNDS_MIN,)),  # max step down gives 1; the bound wins
        (4, 3, History(last_scale_up_at=950.0), False, 4, (Clamp.SCALE_DOWN_COOLDOWN,)),
        (4, 3, History(last_scale_up_at=800.0), False, 3, ()),
        (1, 2, History(), False, 2, ()),  # from 1 the step up may always reach 2
        (4, None, History(), False, None, ()),  # handing back to the HPA needs no clamp
    ],
    ids=["within", "step-up", "step-down-then-bound", "bound-max", "bound-min", "cooldown", "cooldown-over",
         "from-one", "hand-back"],
)
def test_replicas(current, wanted, history, rollout, expected, reasons) -> None:
    guarded = guard(decision(wanted), state(current), history, SETTINGS, now=1000.0, rollout_in_progress=rollout)
    assert guarded.decision.replicas == expected
    assert tuple(guarded.clamps) == reasons


@pytest.mark.parametrize(
    ("wanted_cpu", "wanted_memory", "history", "rollout", "cpu", "memory", "reasons"),
    [
        (1.0, 512 * MIB, History(), False, 1.0, 512 * MIB, ()),
        (4.0, 512 * MIB, History(), False, 2.0, 512 * MIB, (Clamp.CPU_LIMIT_BOUNDS,)),
        (1.0, 4096 * MIB, History(), False, 1.0, 1024 * MIB, (Clamp.MEMORY_LIMIT_BOUNDS,)),
        (1.0, 512 * MIB, History(last_resource_change_at=700.0), False, 0.5, 512 * MIB, (Clamp.RESOURCE_RATE_LIMIT,)),
        (1.0, 512 * MIB, History(last_resource_change_at=100.0), False, 1.0, 512 * MIB, ()),
        (1.0, 512 * MIB, History(), True, 0.5, 512 * MIB, (Clamp.ROLLOUT_IN_PROGRESS,)),
    ],
    ids=["within", "cpu-bound", "memory-bound", "rate-limited", "rate-limit-over", "rollout-in-flight"],
)
def test_resources(wanted_cpu, wanted_memory, history, rollout, cpu, memory, reasons) -> None:
    guarded = guard(decision(4, wanted_cpu, wanted_memory), state(), history, SETTINGS, now=1000.0, rollout_in_progress=rollout)
    assert (guarded.decision.cpu_limit, guarded.decision.memory_limit) == (pytest.approx(cpu), pytest.approx(memory))
    assert guarded.decision.cpu_request == pytest.approx(guarded.decision.cpu_limit / 2)
    assert tuple(guarded.clamps) == reasons


@pytest.mark.parametrize(
    "bad",
    [Decision(-1, 0.1, 0.2, MIB, 2 * MIB), Decision(3, math.nan, 0.2, MIB, 2 * MIB), Decision(3, 0.1, math.inf, MIB, 2 * MIB),
     Decision(3, 0.1, 0.2, 0.0, 2 * MIB), "not a decision"],
    ids=["negative-replicas", "nan-request", "infinite-limit", "zero-memory", "not-a-decision"],
)
def test_invalid_policy_output_is_refused(bad) -> None:
    with pytest.raises(InvalidDecision):
        guard(bad, state(), History(), SETTINGS, now=0.0)


def test_history_remembers_scale_ups_and_resource_changes() -> None:
    history = remember(History(), state(4), decision(6), now=50.0)
    assert history == History(last_scale_up_at=50.0, last_resource_change_at=None)
    history = remember(history, state(6), decision(5, cpu_limit=1.0), now=80.0)
    assert history == History(last_scale_up_at=50.0, last_resource_change_at=80.0)


@settings(max_examples=500, deadline=None)
@given(
    current=st.integers(0, 40),
    wanted=st.integers(0, 200),
    low=st.integers(1, 10),
    span=st.integers(0, 30),
    cpu=st.floats(1e-3, 100.0),
    memory=st.floats(MIB, 1e12),
    up=st.floats(1.0, 4.0),
    down=st.floats(0.0, 1.0),
    since_up=st.one_of(st.none(), st.floats(0, 1000)),
    since_change=st.one_of(st.none(), st.floats(0, 1000)),
    rollout=st.booleans(),
)
def test_no_bound_is_ever_violated(current, wanted, low, span, cpu, memory, up, down, since_up, since_change, rollout) -> None:
    bounds = Bounds(low, low + span, 0.1, 2.0, 128 * MIB, 1024 * MIB)
    s = state(current, bounds=bounds)
    history = History(None if since_up is None else 1000.0 - since_up, None if since_change is None else 1000.0 - since_change)
    settings_ = GuardSettings(max_scale_up=up, max_scale_down=down, scale_down_cooldown_s=120, resource_change_interval_s=600)
    out = guard(Decision(wanted, cpu / 2, cpu, memory / 2, memory), s, history, settings_, 1000.0, rollout).decision
    assert bounds.min_replicas <= out.replicas <= bounds.max_replicas
    assert bounds.min_cpu_limit <= out.cpu_limit <= bounds.max_cpu_limit
    assert bounds.min_memory_limit <= out.memory_limit <= bounds.max_memory_limit
    assert 0 < out.cpu_request <= out.cpu_limit and 0 < out.memory_request <= out.memory_limit
    # the step limits hold whenever the bounds allow them
    if bounds.min_replicas <= current <= bounds.max_replicas:
        assert out.replicas <= max(current + 1, math.ceil(current * up))
        assert out.replicas >= math.floor(current * down)


@pytest.mark.parametrize(("changes", "reason"), [
    ({}, None),
    ({"latency_quantile_s": math.nan}, "latency_quantile_s is nan"),
    ({"cpu_usage": math.inf}, "cpu_usage is inf"),
])
def test_a_state_with_a_non_finite_field_is_never_shown_to_the_policy(changes: dict, reason: str | None) -> None:
    assert refuse_non_finite(state(**changes)) == reason
