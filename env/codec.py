"""The one codec: `ServiceState` -> observation vector, and action -> `Decision`.

Used by the environments, the learned policies and the controller alike, so a policy trained
in the simulator reads live states the same way. A policy file records `CODEC_VERSION`; any
change to the features or the moves below must bump it.

Observation (one service, float32, every feature scale-free so one policy fits any service):

| #  | feature              | meaning                                                        | range   |
| -- | -------------------- | -------------------------------------------------------------- | ------- |
| 0  | cpu_util_limit       | CPU used per ready replica / CPU limit                          | [0, 1]  |
| 1  | cpu_util_request     | CPU used per ready replica / CPU request, / 4                   | [0, 1]  |
| 2  | throttled            | share of time replicas were CPU-throttled                       | [0, 1]  |
| 3  | memory_util_limit    | memory working set / memory limit                               | [0, 1.5]|
| 4  | latency_vs_slo       | log2(latency at the SLO quantile / SLO target), / 4             | [-1, 1] |
| 5  | slow_requests        | share of requests slower than the SLO target (drops included)   | [0, 1]  |
| 6  | drops                | share of requests dropped                                       | [0, 1]  |
| 7  | oom_kills            | OOM kills in the interval, / 4                                  | [0, 1]  |
| 8  | ready_share          | ready replicas / desired replicas                               | [0, 1]  |
| 9  | pending_share        | not-ready replicas / desired replicas, / 2                      | [0, 1]  |
| 10 | replicas_in_bounds   | (desired - min) / (max - min)                                   | [0, 1]  |
| 11 | cpu_limit_in_bounds  | CPU limit's place in its bounds, log scale                      | [0, 1]  |
| 12 | memory_in_bounds     | memory limit's place in its bounds, log scale                   | [0, 1]  |
| 13 | load_trend           | log2(load / previous interval's load), / 2                      | [-1, 1] |
| 14 | load_per_replica     | load / (desired x requests one replica served per core of limit) | [0, 2]  |
| 15 | headroom_replicas    | CPU left on the nodes, in replicas' requests, / 16              | [0, 1]  |
| 16 | time_of_day_sin      | sin(2 pi time of day / 1 day)                                   | [-1, 1] |
| 17 | time_of_day_cos      | cos(2 pi time of day / 1 day)                                   | [-1, 1] |

Action (one service): MultiDiscrete([9, 5, 5]) = (replica move, CPU-limit move, memory-limit move).

| part    | choices                                                                     |
| ------- | --------------------------------------------------------------------------- |
| replica | x0.5, x0.67, x0.8, x0.9, keep, x1.12, x1.25, x1.5, x2 (at least one replica when not "keep") |
| cpu     | x0.5, x0.8, keep, x1.25, x2 of the CPU limit                                |
| memory  | x0.5, x0.8, keep, x1.25, x2 of the memory limit                             |

Requests follow their limits at the ratio the service has now; the result is always clipped to
the service's bounds.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from rlscale.env.state import Decision, ServiceState

CODEC_VERSION = 1

FEATURES = (
    "cpu_util_limit",
    "cpu_util_request",
    "throttled",
    "memory_util_limit",
    "latency_vs_slo",
    "slow_requests",
    "drops",
    "oom_kills",
    "ready_share",
    "pending_share",
    "replicas_in_bounds",
    "cpu_limit_in_bounds",
    "memory_in_bounds",
    "load_trend",
    "load_per_replica",
    "headroom_replicas",
    "time_of_day_sin",
    "time_of_day_cos",
)
OBSERVATION_SIZE = len(FEATURES)
OBSERVATION_LOW = np.array([0, 0, 0, 0, -1, 0, 0, 0, 0, 0, 0, 0, 0, -1, 0, 0, -1, -1], dtype=np.float32)
OBSERVATION_HIGH = np.array([1, 1, 1, 1.5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1], dtype=np.float32)

REPLICA_FACTORS = (0.5, 0.67, 0.8, 0.9, 1.0, 1.12, 1.25, 1.5, 2.0)
CPU_FACTORS = (0.5, 0.8, 1.0, 1.25, 2.0)
MEMORY_FACTORS = (0.5, 0.8, 1.0, 1.25, 2.0)
ACTION_NVEC = (len(REPLICA_FACTORS), len(CPU_FACTORS), len(MEMORY_FACTORS))
KEEP_ACTION = (REPLICA_FACTORS.index(1.0), CPU_FACTORS.index(1.0), MEMORY_FACTORS.index(1.0))


def encode(state: ServiceState, previous: ServiceState | None = None) -> np.ndarray:
    """The observation vector of one service (see the module's table); `previous` gives the trend."""
    bounds = state.bounds
    desired = max(state.replicas_desired, 1)
    usage = state.cpu_usage
    load_trend = 0.0
    if previous is not None and previous.load_rps > 0 and state.load_rps > 0:
        load_trend = math.log2(state.load_rps / previous.load_rps) / 2
    # Requests one replica serves per core it uses, from this interval (when it served any).
    served_per_core = (state.load_rps * (1 - state.drop_fraction)) / (usage * state.replicas_ready) if usage > 0 and state.replicas_ready else 0.0
    capacity = served_per_core * state.cpu_limit * desired
    day = 2 * math.pi * state.time_of_day_s / 86_400
    latency_ratio = state.latency_quantile_s / state.slo_latency_s if state.latency_quantile_s > 0 else 2.0**-4
    values = (
        usage / state.cpu_limit,
        usage / state.cpu_request / 4,
        state.cpu_throttled_fraction,
        state.memory_working_set / state.memory_limit,
        math.log2(latency_ratio) / 4,
        state.slo_violation_fraction,
        state.drop_fraction,
        state.oom_kills / 4,
        state.replicas_ready / desired,
        state.replicas_pending / desired / 2,
        _position(state.replicas_desired, bounds.min_replicas, bounds.max_replicas),
        _log_position(state.cpu_limit, bounds.min_cpu_limit, bounds.max_cpu_limit),
        _log_position(state.memory_limit, bounds.min_memory_limit, bounds.max_memory_limit),
        load_trend,
        state.load_rps / capacity if capacity > 0 else (2.0 if state.load_rps > 0 else 0.0),
        state.cluster_cpu_headroom / state.cpu_request / 16,
        math.sin(day),
        math.cos(day),
    )
    return np.clip(np.array(values, dtype=np.float32), OBSERVATION_LOW, OBSERVATION_HIGH)


def decode(action: Sequence[int], state: ServiceState) -> Decision:
    """The decision an action asks for, from the service's current state, within its bounds."""
    replica_move, cpu_move, memory_move = (int(a) for a in action)
    replicas = scaled_replicas(state.replicas_desired, REPLICA_FACTORS[replica_move])
    cpu_limit = state.cpu_limit * CPU_FACTORS[cpu_move]
    memory_limit = state.memory_limit * MEMORY_FACTORS[memory_move]
    return Decision(
        replicas=replicas,
        cpu_request=cpu_limit * state.cpu_request / state.cpu_limit,
        cpu_limit=cpu_limit,
        memory_request=memory_limit * state.memory_request / state.memory_limit,
        memory_limit=memory_limit,
    ).clipped(state.bounds)


def scaled_replicas(replicas: int, factor: float) -> int:
    """`replicas` x `factor`, rounded, moving by at least one replica unless the factor is 1."""
    scaled = round(replicas * factor)
    if factor > 1.0:
        return max(scaled, replicas + 1)
    if factor < 1.0:
        return min(scaled, replicas - 1)
    return replicas


def _position(value: float, low: float, high: float) -> float:
    return (value - low) / (high - low) if high > low else 0.5


def _log_position(value: float, low: float, high: float) -> float:
    return math.log(value / low) / math.log(high / low) if high > low else 0.5

