"""The codec: observations in their declared box, decisions from the load, always within bounds, never a ratchet."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlscale.env import codec
from rlscale.env.state import Bounds, ServiceState

MIB = 2.0**20
BOUNDS = Bounds(1, 20, 0.05, 2.0, 64 * MIB, 1024 * MIB)
U60, TOP, NOW = codec.UTILIZATIONS.index(0.6), codec.CPU_LEVELS - 1, codec.ANTICIPATIONS.index("now")
HALF = codec.REQUEST_SHARES.index(0.5)


def state(**changes) -> ServiceState:
    base = ServiceState(
        name="svc", time_s=600.0, time_of_day_s=600.0, load_rps=20.0, replicas_desired=4, replicas_ready=4,
        replicas_pending=0, cpu_request=0.05, cpu_limit=0.1, memory_request=64 * MIB, memory_limit=128 * MIB,
        cpu_usage=0.04, cpu_throttled_fraction=0.1, memory_working_set=60 * MIB, latency_quantile_s=0.2,
        latency_mean_s=0.08, slo_latency_s=0.25, slo_quantile=0.95, slo_violation_fraction=0.02,
        drop_fraction=0.0, oom_kills=0, cluster_cpu_headroom=3.0, cluster_memory_headroom=4096 * MIB, bounds=BOUNDS,
    )
    return dataclasses.replace(base, **changes)


def history(*states: ServiceState) -> codec.History:
    h = codec.History()
    for s in states:
        h.record(s)
    return h


def test_replicas_follow_the_load_at_the_chosen_utilization() -> None:
    # 20 req/s at 0.008 core-seconds (0.04 cores x 4 replicas / 20) = 0.16 cores of demand
    decision = codec.decode((U60, TOP, NOW, HALF), history(state()))
    assert decision.cpu_limit == pytest.approx(2.0)  # the top level: the bounds' maximum
    assert decision.replicas == 1  # 0.16 / (2.0 x 0.6)
    assert decision.hpa_floor and decision.cpu_request <= 0.16  # rounded down: below usage costs nothing more
    assert decision.hpa_target_utilization == round(100 * 2.0 * 0.6 / decision.cpu_request)
    low = codec.decode((codec.UTILIZATIONS.index(0.3), 0, NOW, HALF), history(state()))
    assert low.cpu_limit == pytest.approx(0.5)  # a quarter of the top
    assert low.replicas == math.ceil(0.16 / (0.5 * 0.3))


@pytest.mark.parametrize("replicas", [1, 5, 10, 20])
def test_idle_goes_to_the_minimum_whatever_the_action(replicas: int) -> None:
    idle = state(load_rps=0.0, cpu_usage=0.0, replicas_desired=replicas, replicas_ready=replicas)
    after_burst = history(state(load_rps=5000.0, cpu_usage=2.0), *[idle] * codec.HISTORY)  # the burst has left the history
    for action in np.ndindex(*codec.ACTION_NVEC):
        assert codec.decode(action, history(idle)).replicas == BOUNDS.min_replicas
        assert codec.decode(action, after_burst).replicas == BOUNDS.min_replicas


def test_anticipation_plans_for_the_trend_or_the_recent_peak() -> None:
    rising = history(state(load_rps=10.0, cpu_usage=0.02), state(load_rps=20.0))
    now, trend, peak = (codec.decode((U60, 0, codec.ANTICIPATIONS.index(a), HALF), rising).replicas for a in codec.ANTICIPATIONS)
    assert now < trend  # doubling over the last interval: planned for twice the load
    falling = history(state(load_rps=40.0, cpu_usage=0.08), state(load_rps=20.0))
    assert codec.decode((U60, 0, codec.ANTICIPATIONS.index("peak"), HALF), falling).replicas > \
        codec.decode((U60, 0, NOW, HALF), falling).replicas


def test_resources_hold_between_changes() -> None:
    h = history(state())
    first = codec.decode((U60, TOP, NOW, HALF), h)
    codec.applied(h, first)
    h.record(state(time_s=900.0, cpu_limit=first.cpu_limit, cpu_request=first.cpu_request))
    held = codec.decode((U60, 0, NOW, HALF), h)  # 5 minutes later: the limit stays
    assert held.cpu_limit == first.cpu_limit
    h.record(state(time_s=1300.0, cpu_limit=first.cpu_limit, cpu_request=first.cpu_request))
    assert codec.decode((U60, 0, NOW, HALF), h).cpu_limit == pytest.approx(0.5)  # 11.7 minutes later it may move
    rolling = history(state(in_place_resize=False))
    codec.applied(rolling, codec.decode((U60, TOP, NOW, HALF), rolling))
    rolling.record(state(time_s=1300.0, in_place_resize=False, cpu_limit=2.0))
    assert codec.decode((U60, 0, NOW, HALF), rolling).cpu_limit == 2.0  # a rolling update holds 30 minutes


def test_a_limit_too_small_for_the_load_at_the_replica_bound_goes_up_hold_or_not() -> None:
    busy = state(load_rps=2000.0, cpu_usage=1.6, cpu_limit=2.0)  # 6.4 cores of demand; 20 replicas of 0.5 at 60% serve 6
    decision = codec.decode((U60, 0, NOW, HALF), history(busy))
    assert decision.cpu_limit == pytest.approx(1.0) and decision.replicas == 11  # a level up, and the plan fits
    held = history(dataclasses.replace(busy, in_place_resize=False, cpu_limit=0.25))
    held.resources_changed_at = busy.time_s - 60.0  # a rolling update a minute ago: the hold would keep 0.25
    assert codec.decode((U60, 0, NOW, HALF), held).cpu_limit == pytest.approx(1.0)
    assert codec.decode((U60, TOP, NOW, HALF), history(busy)).cpu_limit == 2.0  # the top: nothing to raise


def test_a_rolling_service_keeps_its_request_unless_it_is_far_off() -> None:
    rolling = state(in_place_resize=False, cpu_limit=2.0, cpu_request=0.05)
    near = codec.decode((U60, TOP, NOW, HALF), history(rolling))  # half of 0.16 cores planned: 0.08, within 2x of 0.05
    assert near.cpu_request == 0.05
    far = codec.decode((U60, TOP, NOW, HALF), history(dataclasses.replace(rolling, load_rps=200.0, cpu_usage=0.4)))
    assert far.cpu_request > 0.1  # ten times the load: worth a rollout


def test_an_oom_kill_raises_the_memory_limit() -> None:
    decision = codec.decode((U60, TOP, NOW, HALF), history(state(oom_kills=1)))
    assert decision.memory_limit == pytest.approx(128 * MIB * codec.OOM_MEMORY_STEP)


@settings(max_examples=300, deadline=None)
@given(
    replicas=st.integers(1, 20), cpu_limit=st.floats(0.05, 2.0), memory_limit=st.floats(64 * MIB, 1024 * MIB),
    load=st.floats(0, 1e5), usage=st.floats(0, 2.0), ooms=st.integers(0, 3),
    action=st.tuples(*(st.integers(0, n - 1) for n in codec.ACTION_NVEC)),
)
def test_decode_always_stays_within_bounds(replicas, cpu_limit, memory_limit, load, usage, ooms, action) -> None:
    s = state(replicas_desired=replicas, cpu_limit=cpu_limit, cpu_request=cpu_limit / 2, memory_limit=memory_limit,
              memory_request=memory_limit / 2, load_rps=load, cpu_usage=usage, oom_kills=ooms)
    d = codec.decode(action, history(state(), s))
    assert BOUNDS.min_replicas <= d.replicas <= BOUNDS.max_replicas
    assert BOUNDS.min_cpu_limit <= d.cpu_limit <= BOUNDS.max_cpu_limit
    assert BOUNDS.min_memory_limit <= d.memory_limit <= BOUNDS.max_memory_limit
    assert 0 < d.cpu_request <= d.cpu_limit and 0 < d.memory_request <= d.memory_limit
    assert 1 <= d.hpa_target_utilization <= codec.MAX_HPA_TARGET


@settings(max_examples=300, deadline=None)
@given(
    load=st.floats(0, 1e5), usage=st.floats(0, 10), latency=st.floats(0, 100), ready=st.integers(0, 20),
    pending=st.integers(0, 20), ooms=st.integers(0, 100), headroom=st.floats(-5, 1e4), drop=st.floats(0, 1),
)
def test_observation_stays_in_its_box(load, usage, latency, ready, pending, ooms, headroom, drop) -> None:
    s = state(load_rps=load, cpu_usage=usage, latency_quantile_s=latency, replicas_ready=ready,
              replicas_pending=pending, oom_kills=ooms, cluster_cpu_headroom=headroom, drop_fraction=drop)
    observation = codec.encode(history(state(load_rps=load / 3 + 1), s))
    assert observation.shape == (codec.OBSERVATION_SIZE,) and observation.dtype == np.float32
    assert np.all(observation >= codec.OBSERVATION_LOW) and np.all(observation <= codec.OBSERVATION_HIGH)


def test_observation_features_mean_what_they_say() -> None:
    h = history(*(state(load_rps=10.0) for _ in range(3)), state(load_rps=40.0), state())
    observation = dict(zip(codec.FEATURES, codec.encode(h)))
    assert observation["cpu_util_limit"] == pytest.approx(0.4)
    assert observation["latency_vs_slo"] == pytest.approx(np.log2(0.2 / 0.25) / 4)
    assert observation["load_trend"] == pytest.approx(-0.5)  # halved from 40: log2(1/2) / 2
    assert observation["load_trend_long"] == pytest.approx(0.5)  # doubled from 10 four intervals ago
    assert observation["load_vs_recent_peak"] == pytest.approx(0.5)
    assert observation["replicas_in_bounds"] == pytest.approx(3 / 19)
    assert observation["idle"] == 0.0 and observation["in_place"] == 1.0
