"""The codec: observations in their declared box, decisions always within bounds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlscale.env import codec
from rlscale.env.state import Bounds, ServiceState

MIB = 2.0**20
BOUNDS = Bounds(1, 20, 0.05, 2.0, 64 * MIB, 1024 * MIB)


def state(**changes) -> ServiceState:
    base = ServiceState(
        name="svc", time_s=600.0, time_of_day_s=600.0, load_rps=20.0, replicas_desired=4, replicas_ready=4,
        replicas_pending=0, cpu_request=0.05, cpu_limit=0.1, memory_request=64 * MIB, memory_limit=128 * MIB,
        cpu_usage=0.04, cpu_throttled_fraction=0.1, memory_working_set=60 * MIB, latency_quantile_s=0.2,
        latency_mean_s=0.08, slo_latency_s=0.25, slo_quantile=0.95, slo_violation_fraction=0.02,
        drop_fraction=0.0, oom_kills=0, cluster_cpu_headroom=3.0, cluster_memory_headroom=4096 * MIB, bounds=BOUNDS,
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    ("action", "replicas", "cpu_limit", "memory_limit"),
    [
        (codec.KEEP_ACTION, 4, 0.1, 128 * MIB),
        ((codec.REPLICA_FACTORS.index(2.0), 2, 2), 8, 0.1, 128 * MIB),
        ((codec.REPLICA_FACTORS.index(0.9), 2, 2), 3, 0.1, 128 * MIB),  # at least one replica down
        ((codec.REPLICA_FACTORS.index(1.12), 2, 2), 5, 0.1, 128 * MIB),  # at least one replica up
        ((4, codec.CPU_FACTORS.index(2.0), codec.MEMORY_FACTORS.index(0.5)), 4, 0.2, 64 * MIB),
        ((4, codec.CPU_FACTORS.index(0.5), codec.MEMORY_FACTORS.index(0.5)), 4, 0.05, 64 * MIB),
    ],
    ids=["keep", "double", "small-step-down", "small-step-up", "cpu-up-memory-down", "cpu-down"],
)
def test_decode(action, replicas, cpu_limit, memory_limit) -> None:
    decision = codec.decode(action, state())
    assert decision.replicas == replicas
    assert decision.cpu_limit == pytest.approx(cpu_limit) and decision.memory_limit == pytest.approx(memory_limit)
    assert decision.cpu_request == pytest.approx(cpu_limit / 2)  # the request keeps its ratio to the limit
    assert decision.memory_request == pytest.approx(memory_limit / 2)


@settings(max_examples=300, deadline=None)
@given(
    replicas=st.integers(1, 20),
    cpu_limit=st.floats(0.05, 2.0),
    memory_limit=st.floats(64 * MIB, 1024 * MIB),
    action=st.tuples(*(st.integers(0, n - 1) for n in codec.ACTION_NVEC)),
)
def test_decode_always_stays_within_bounds(replicas, cpu_limit, memory_limit, action) -> None:
    s = state(replicas_desired=replicas, cpu_limit=cpu_limit, cpu_request=cpu_limit / 2,
              memory_limit=memory_limit, memory_request=memory_limit / 2)
    d = codec.decode(action, s)
    assert BOUNDS.min_replicas <= d.replicas <= BOUNDS.max_replicas
    assert BOUNDS.min_cpu_limit <= d.cpu_limit <= BOUNDS.max_cpu_limit
    assert BOUNDS.min_memory_limit <= d.memory_limit <= BOUNDS.max_memory_limit
    assert 0 < d.cpu_request <= d.cpu_limit and 0 < d.memory_request <= d.memory_limit


@settings(max_examples=300, deadline=None)
@given(
    load=st.floats(0, 1e5), usage=st.floats(0, 10), latency=st.floats(0, 100), ready=st.integers(0, 20),
    pending=st.integers(0, 20), ooms=st.integers(0, 100), headroom=st.floats(-5, 1e4), drop=st.floats(0, 1),
)
def test_observation_stays_in_its_box(load, usage, latency, ready, pending, ooms, headroom, drop) -> None:
    s = state(load_rps=load, cpu_usage=usage, latency_quantile_s=latency, replicas_ready=ready,
              replicas_pending=pending, oom_kills=ooms, cluster_cpu_headroom=headroom, drop_fraction=drop)
    observation = codec.encode(s, state(load_rps=load / 3 + 1))
    assert observation.shape == (codec.OBSERVATION_SIZE,) and observation.dtype == np.float32
    assert np.all(observation >= codec.OBSERVATION_LOW) and np.all(observation <= codec.OBSERVATION_HIGH)


def test_observation_features_mean_what_they_say() -> None:
    observation = dict(zip(codec.FEATURES, codec.encode(state(), state(load_rps=10.0))))
    assert observation["cpu_util_limit"] == pytest.approx(0.4)
    assert observation["cpu_util_request"] == pytest.approx(0.8 / 4)
    assert observation["latency_vs_slo"] == pytest.approx(np.log2(0.2 / 0.25) / 4)
    assert observation["load_trend"] == pytest.approx(0.5)  # doubled: log2(2) / 2
    assert observation["replicas_in_bounds"] == pytest.approx(3 / 19)
    # 20 rps on 4 replicas using 0.04 cores each: 125 requests per core, 12.5 rps per 0.1-core replica
    assert observation["load_per_replica"] == pytest.approx(20 / (125 * 0.1 * 4))


def test_clipping_at_a_bound_keeps_the_request_ratio() -> None:
    # Already at the lowest CPU limit: halving it again must not halve the request alone.
    at_floor = state(cpu_limit=0.05, cpu_request=0.025, memory_limit=64 * MIB, memory_request=32 * MIB)
    down = (codec.KEEP_ACTION[0], codec.CPU_FACTORS.index(0.5), codec.MEMORY_FACTORS.index(0.5))
    decision = codec.decode(down, at_floor)
    assert (decision.cpu_limit, decision.cpu_request) == (pytest.approx(0.05), pytest.approx(0.025))
    assert (decision.memory_limit, decision.memory_request) == (pytest.approx(64 * MIB), pytest.approx(32 * MIB))
